"""Source frameworks: detect, load safely, describe, and run for reference outputs.

One module per framework; the registry maps each format to its loader by import string so that
nothing heavy is imported until a model of that kind is loaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import BadInput
from ..formats import Format, detect
from .base import LoadOptions, SourceModel

LOADERS: dict[Format, str] = {
    Format.TORCHSCRIPT: "modelport.sources.torch:load",
    Format.TORCH_EXPORT: "modelport.sources.torch:load",
    Format.TORCH_PICKLE: "modelport.sources.torch:load",
    Format.ONNX: "modelport.sources.onnx:load",
    Format.SAVEDMODEL: "modelport.sources.tensorflow:load",
    Format.TFLITE: "modelport.sources.tflite:load",
    Format.KERAS: "modelport.sources.keras:load",
    Format.KERAS_H5: "modelport.sources.keras:load",
}

ENTRY_LOADERS: dict[str, str] = {
    "torch": "modelport.sources.torch:load_entry",
    "function": "modelport.sources.jax:load_entry",  # a plain function: read as JAX
    "keras": "modelport.sources.keras:load_entry",
}

# --framework NAME: which formats a file may be read as.
FRAMEWORK_FORMATS: dict[str, tuple[Format, ...]] = {
    "torch": (Format.TORCHSCRIPT, Format.TORCH_EXPORT, Format.TORCH_PICKLE),
    "onnx": (Format.ONNX,),
    "tensorflow": (Format.SAVEDMODEL,),
    "tflite": (Format.TFLITE,),
    "jax": (Format.JAX,),
    "keras": (Format.KERAS, Format.KERAS_H5),
}


def _call(import_string: str, *args):
    module, _, name = import_string.partition(":")
    return getattr(importlib.import_module(module), name)(*args)


def load_source(source: str, options: LoadOptions, framework: str | None = None) -> SourceModel:
    """Load SOURCE (a path or an entry point) as a reference model."""
    detected = detect(source)
    if detected.format == Format.PYTHON_ENTRY:
        from .entry import resolve

        entry, kind = resolve(source)
        if kind not in ENTRY_LOADERS:
            raise BadInput(f"'{source}' gave a {kind} model; this modelport reads {kind} entry points "
                           "not yet.", "Export it to ONNX or TorchScript and pass that file.")
        return _call(ENTRY_LOADERS[kind], entry, options)
    fmt = detected.format
    if framework:
        allowed = FRAMEWORK_FORMATS.get(framework, ())
        if fmt not in allowed:
            if not allowed:
                raise BadInput(f"--framework {framework} is not readable by this modelport yet.",
                               f"Readable: {', '.join(FRAMEWORK_FORMATS)}.")
            raise BadInput(f"--framework {framework} was given, but '{source}' looks like this by its content: {detected.evidence}.",
                           "Drop --framework to use what the content says.")
    if fmt not in LOADERS:
        raise BadInput(f"'{source}' ({detected.evidence}) is a {fmt.value} model, which modelport cannot read as a "
                       "source.",
                       "Convert it to ONNX with its own tools and pass the .onnx file.")
    model = _call(LOADERS[fmt], Path(source), fmt, options)
    model.details.setdefault("evidence", detected.evidence)
    return model
