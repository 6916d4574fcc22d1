"""What every source module provides: load safely, describe I/O, run for reference outputs."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifact import Artifact, IOMapping
from ..spec import TensorSpec
from ..targets.base import Runner


@dataclass(frozen=True)
class LoadOptions:
    inputs: tuple[TensorSpec, ...] = ()      # from --input; win over what the model says
    trust_remote_code: bool = False
    signature: str | None = None
    verbose: bool = False
    describe_only: bool = False              # inspect: unknown shapes are shown, not an error


class SourceModel(Runner):
    """A loaded source model: a Runner for reference outputs plus the in-memory handle edges use."""

    format: str = "onnx"
    framework: str = "?"

    def __init__(self, path: Path | str, handle: Any = None, display: str | None = None) -> None:
        super().__init__(path)
        self.handle = handle
        self.display = display or str(path)
        self.details: dict[str, Any] = {}
        # Modules an entry point registered to run; dropped from sys.modules when the model closes,
        # so one process can load model after model without the last one's code lingering.
        self.entry_modules: tuple[str, ...] = ()

    def close(self) -> None:
        super().close()
        for name in self.entry_modules:
            sys.modules.pop(name, None)
        self.entry_modules = ()

    def summary(self) -> dict[str, Any]:
        """What `inspect` shows beyond I/O: parameter count and ops (with counts) where known."""
        return {"parameters": None, "ops": {}}

    def artifact(self) -> Artifact:
        return Artifact(path=self.path, format=self.format, inputs=tuple(self.inputs),
                        outputs=tuple(self.outputs), io=IOMapping.identity(self.inputs, self.outputs),
                        path_taken=(self.format,))


@dataclass
class EntryPoint:
    """What a Python entry point returned, before we know its framework."""

    obj: Any
    example_inputs: Any = None
    display: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
