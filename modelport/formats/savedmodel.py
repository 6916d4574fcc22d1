"""TensorFlow SavedModel folders: a source (a signature of tf.saved_model.load) and a target."""

from __future__ import annotations

from ..validators.compare import Tolerance
from .base import Detected, FormatSpec, Probe, Requirement, SourceSpec, TargetSpec


def detect(probe: Probe) -> Detected | None:
    if probe.is_dir and ((probe.path / "saved_model.pb").is_file() or (probe.path / "saved_model.pbtxt").is_file()):
        return Detected("savedmodel", "savedmodel", "directory with saved_model.pb")
    return None


FORMAT = FormatSpec(
    name="savedmodel", description="TensorFlow SavedModel directory",
    requirement=Requirement("tf", modules=("tensorflow",)),
    detect="modelport.formats.savedmodel:detect",
    # tf.Module objects from entry points are recognised, and refused with advice: none is read yet.
    source=SourceSpec(loader="modelport.sources.tensorflow:load", framework="tensorflow",
                      entry_modules=("tensorflow",)),
    target=TargetSpec(runner="modelport.targets.savedmodel:SavedModelRunner", file_name="savedmodel",
                      tolerances={"none": Tolerance(1e-4, 1e-3)}),
    packages=("tensorflow",),
)
