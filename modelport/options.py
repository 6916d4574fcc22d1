"""Frozen options for every API call. One shared validation-options type; each command's options
extend it with what only that command has."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .sources.base import LoadOptions
from .spec import InputRange, TensorSpec

Progress = Callable[[str, str], None]  # (event: "start"|"done", message)


@dataclass(frozen=True)
class ModelOptions:
    """How a model is loaded: shapes it lacks, which signature, whether its code may run."""

    inputs: tuple[TensorSpec, ...] = ()
    signature: str | None = None
    trust_remote_code: bool = False
    verbose: bool = False
    threads: int = 1
    max_memory: int | None = None   # bytes a model's runs may use; None: a fraction of the machine's RAM
    timeout: float | None = None    # seconds the whole call may take (the worker is stopped past it); None: no limit

    def load_options(self, describe_only: bool = False) -> LoadOptions:
        return LoadOptions(inputs=self.inputs, trust_remote_code=self.trust_remote_code,
                           signature=self.signature, verbose=self.verbose, describe_only=describe_only)


@dataclass(frozen=True)
class ValidationOptions(ModelOptions):
    """How two models are compared: sample data, tolerances, latency runs."""

    input_ranges: tuple[InputRange, ...] = ()
    sample_inputs: Path | None = None
    samples: int = 3
    seed: int = 0
    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None
    top_k: int | None = None
    output_tolerances: dict[str, dict[str, Any]] | None = None  # per output name: {"atol": .., "min_cosine": ..}
    latency: bool = True
    latency_runs: int = 20
    latency_warmup: int = 3


@dataclass(frozen=True)
class ConvertOptions(ValidationOptions):
    targets: tuple[str, ...] = ("onnx",)
    output_dir: Path | None = None
    framework: str | None = None
    opset: int | None = None
    via: tuple[str, ...] = ()
    converters: tuple[str, ...] = ()   # --converter: only paths through these edges (where a path has one)
    keep_layout: bool = False
    simplify: bool = False
    quantize: str = "none"                    # none | fp16 | dynamic | int8
    calibration_data: Path | str | None = None  # int8: representative inputs (see calibration.py), or "random"
    preprocess: str | None = None             # how calibration images become inputs (calibration.Preprocess)
    calibration_samples: int = 32             # seeded samples when calibration_data is "random"
    validate: bool = True


@dataclass(frozen=True)
class PackageOptions(ConvertOptions):
    """`package`: convert to one target (targets[0]), then bundle it with its proof."""

    bundle: Path | None = None                   # a folder, or a .zip / .tar.gz by suffix
    labels: Path | None = None                   # a labels file to ship beside the model
    metadata: tuple[tuple[str, str], ...] = ()   # --metadata KEY=VALUE, into the manifest


@dataclass(frozen=True)
class ValidateOptions(ValidationOptions):
    maps: tuple[str, ...] = ()               # --map REF=CAND[:PERM]
    latency: bool = False
    latency_runs: int = 50
    latency_warmup: int = 5


@dataclass(frozen=True)
class BenchOptions(ModelOptions):
    runs: int = 50
    warmup: int = 5
    against: str | None = None
    seed: int = 0
