"""Keras sources: `.keras` archives (Keras 3), legacy `.h5` (tf_keras), keras.Model entry points."""

from __future__ import annotations

from .base import Detected, FormatSpec, Probe, Requirement, SourceSpec


def detect(probe: Probe) -> Detected | None:
    if probe.is_zip:
        names = probe.zip_names()
        if "config.json" in names and ("metadata.json" in names or "model.weights.h5" in names):
            return Detected("keras", "keras", "zip with config.json (Keras 3 archive)")
    elif probe.head.startswith(b"\x89HDF\r\n\x1a\n"):
        return Detected("h5", "keras", "HDF5 signature (legacy Keras .h5)")
    return None


FORMAT = FormatSpec(
    name="keras", description="Keras: .keras (Keras 3), legacy .h5, or file.py:name returning a keras.Model",
    requirement=Requirement("tf", modules=("tensorflow",), any_of=("keras", "tf_keras")),
    kinds=("keras", "h5"),
    detect="modelport.formats.keras:detect",
    source=SourceSpec(loader="modelport.sources.keras:load", framework="keras",
                      entry_loader="modelport.sources.keras:load_entry",
                      entry_modules=("keras", "tf_keras", "tensorflow.python.keras")),
    packages=("keras", "tf-keras"),
)
