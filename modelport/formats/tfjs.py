"""TF.js graph models (model.json + shards): a target run by `@tensorflow/tfjs` in Node on its wasm
backend (the pure-JS CPU backend where wasm lacks a kernel). Described for `inspect` from
model.json; not read as a source."""

from __future__ import annotations

from ..validators.compare import Tolerance
from .base import Detected, FormatSpec, Probe, Requirement, TargetSpec


def detect(probe: Probe) -> Detected | None:
    if probe.is_dir and (probe.path / "model.json").is_file():
        return Detected("tfjs", "tfjs", "directory with model.json")
    if not probe.is_dir and probe.path.name == "model.json" and probe.head.lstrip().startswith(b"{"):
        return Detected("tfjs", "tfjs", "model.json")
    return None


FORMAT = FormatSpec(
    name="tfjs", description="TF.js graph model (folder with model.json)",
    requirement=Requirement("tfjs", check="modelport.targets.tfjs:runtime_problem",
                            versions="modelport.targets.tfjs:runtime_versions"),
    detect="modelport.formats.tfjs:detect",
    target=TargetSpec(runner="modelport.targets.tfjs:TfjsRunner", file_name="tfjs",
                      tolerances={"none": Tolerance(1e-4, 1e-3), "fp16": Tolerance(1e-2, 1e-2)},
                      bundle_runtime="tfjs"),
    describe="modelport.describe:describe_tfjs",
    packages=("tensorflowjs",),
)
