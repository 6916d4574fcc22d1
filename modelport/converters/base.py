"""What every edge receives besides its input artifact."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..sources.base import SourceModel


@dataclass
class EdgeContext:
    opset: int | None = None
    verbose: bool = False
    seed: int = 0
    keep_layout: bool = False
    quantize: str = "none"                    # none | fp16 | dynamic | int8 (TFLite only)
    # Representative inputs for int8 calibration, keyed by the SOURCE's input names.
    calibration: list[dict[str, Any]] = field(default_factory=list)
    signature: str | None = None
    # The user's sample inputs (--inputs), keyed by the SOURCE's input names; edges that trace use them.
    examples: list[dict[str, Any]] = field(default_factory=list)
    # The loaded source model, for edges that convert from it in memory (torch.onnx, jax2tf...).
    source: SourceModel | None = None
    # Results shared between edges of one run (e.g. one onnx2tf run serves tflite and savedmodel).
    cache: dict[str, Any] = field(default_factory=dict)
    scratch: Path | None = None
    # How many times each converter really ran in this run (cached intermediates are not re-made).
    runs: dict[str, int] = field(default_factory=dict)

    def count(self, name: str) -> None:
        self.runs[name] = self.runs.get(name, 0) + 1
