"""Keras sources: `.keras` archives (Keras 3), legacy `.h5` (tf_keras), and keras.Model entry points.

Loading is safe by default: the saved config is read as data first, and a model that would
run stored Python code when rebuilt (a Lambda layer) is refused unless --trust-remote-code.
Custom classes cannot be rebuilt from a file at all: the user's own code must build them.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator

from .._lazy import captured_output, require
from ..errors import BadInput, first_line
from ..spec import TensorSpec, merge_specs
from .base import EntryPoint, LoadOptions, SourceModel

_CODE_LAYERS = {"Lambda"}
_TRUSTED_MODULE_PREFIXES = ("keras", "tf_keras", "builtins", "tensorflow")


def _walk(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        if "class_name" in node:
            yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _saved_config(path: Path, fmt: str) -> dict:
    """The model's config as stored, read as JSON: nothing in the file runs."""
    try:
        if fmt == "keras":
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
                if not isinstance(config, dict):
                    raise ValueError("config.json is not an object")
                return config
        h5py = require("h5py", "tf", purpose="to read .h5 models")
        with h5py.File(path, "r") as h5:
            raw = h5.attrs.get("model_config")
    except (KeyError, OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:  # (JSON errors too)
        raise BadInput(f"'{path}' is not a readable Keras model: {exc}.",
                       "The file is probably truncated or corrupt; save it again.") from None
    if raw is None:
        raise BadInput(f"'{path}' is an HDF5 file with weights only (no model_config).",
                       "Save the whole model (model.save), or pass an entry point that builds it, e.g. model.py:build.")
    try:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (ValueError, TypeError, AttributeError) as exc:  # JSONDecodeError, UnicodeDecodeError, odd attr types
        raise BadInput(f"'{path}' has an unreadable model_config: {first_line(exc)}.",
                       "The file is probably truncated or corrupt; save it again.") from None
    if not isinstance(config, dict):
        raise BadInput(f"'{path}' has a model_config that is not a model description.", "Save the model again.")
    return config


def check_config_safety(path: Path, config: dict, trust: bool) -> None:
    for layer in _walk(config):
        class_name = layer.get("class_name", "")
        module = layer.get("module") or ""
        registered = layer.get("registered_name") or ""
        if class_name in _CODE_LAYERS and not trust:
            raise BadInput(f"'{path}' has a {class_name} layer ('{layer.get('config', {}).get('name', '?')}'): "
                           "rebuilding it would run Python code stored in the file.",
                           "If you trust its author, re-run with --trust-remote-code.")
        custom = (module and not module.startswith(_TRUSTED_MODULE_PREFIXES)) or ">" in registered
        if custom and not class_name.startswith("__"):
            raise BadInput(f"'{path}' uses the custom class '{registered or class_name}'"
                           f"{f' from {module}' if module else ''}, whose code is not in the file.",
                           "Pass an entry point that imports it and builds the model, e.g. model.py:build "
                           "(--trust-remote-code does not supply missing code).")


@contextlib.contextmanager
def _as_keras_suffix(path: Path) -> Iterator[Path]:
    """Keras picks its reader by extension; we detected the format by content, so lend it the name."""
    if path.suffix == ".keras":
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="modelport-keras-") as folder:
        named = Path(folder) / "model.keras"
        named.symlink_to(path.resolve())
        yield named


def _keras_flavour(model: Any) -> str:
    return "tf_keras" if any(k.__module__.startswith("tf_keras") for k in type(model).__mro__) else "keras"


def _dims(shape: Any, name: str) -> tuple:
    return tuple(int(d) if d is not None else ("batch" if i == 0 else f"{name}_d{i}") for i, d in enumerate(shape))


class KerasModel(SourceModel):
    framework = "keras"
    runtime = "keras"

    def __init__(self, path: Path | str, handle: Any, fmt: str, display: str | None = None) -> None:
        super().__init__(path, handle, display)
        self.format = fmt
        self.flavour = _keras_flavour(handle)

    def _load(self) -> None:
        pass

    def _run(self, feeds):
        import numpy as np

        args = [feeds[s.name] for s in self.inputs]
        result = self.handle(args if len(args) > 1 else args[0], training=False)
        if isinstance(result, dict):
            values = [result[s.name] for s in self.outputs]
        elif isinstance(result, (list, tuple)):
            values = list(result)
        else:
            values = [result]
        return {s.name: np.asarray(v) for s, v in zip(self.outputs, values)}

    def summary(self) -> dict:
        counts: dict[str, int] = {}
        for layer in getattr(self.handle, "layers", []):
            name = type(layer).__name__
            counts[name] = counts.get(name, 0) + 1
        return {"parameters": int(self.handle.count_params()), "keras": self.flavour,
                "ops": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))}


def describe(model: KerasModel, options: LoadOptions) -> KerasModel:
    keras_model = model.handle
    if not getattr(keras_model, "inputs", None):
        raise BadInput(f"The Keras model from '{model.display}' has no defined inputs (a subclassed model "
                       "that was never built).", "Build it (call it once on data) or make it a functional model.")
    inputs = []
    for index, tensor in enumerate(keras_model.inputs):
        name = getattr(tensor, "name", None) or f"input_{index}"
        name = name.split(":")[0]
        dtype = getattr(tensor, "dtype", "float32")
        dtype = dtype if isinstance(dtype, str) else getattr(dtype, "name", "float32")
        inputs.append(TensorSpec(name, _dims(tuple(tensor.shape), name), dtype))
    names = list(getattr(keras_model, "output_names", None) or [])
    outputs = []
    for index, tensor in enumerate(keras_model.outputs):
        name = names[index] if index < len(names) else f"output_{index}"
        dtype = getattr(tensor, "dtype", "float32")
        outputs.append(TensorSpec(name, _dims(tuple(tensor.shape), name),
                                  dtype if isinstance(dtype, str) else getattr(dtype, "name", "float32")))
    model.inputs = merge_specs(inputs, list(options.inputs))
    model.outputs = outputs
    model._loaded = True
    return model


def load(path: Path, fmt: str, options: LoadOptions) -> KerasModel:
    check_config_safety(path, _saved_config(path, fmt), options.trust_remote_code)
    with captured_output(options.verbose):
        try:
            if fmt == "keras":
                keras = require("keras", purpose="to read .keras models")
                with _as_keras_suffix(path) as named:
                    handle = keras.saving.load_model(str(named), compile=False,
                                                     safe_mode=not options.trust_remote_code)
            else:
                tf_keras = require("tf_keras", "tf", purpose="to read legacy .h5 models")
                handle = tf_keras.models.load_model(str(path), compile=False)
        except BadInput:
            raise
        except Exception as exc:  # Keras raises ValueError/TypeError with long configs inside
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "safe_mode" in text:
                raise BadInput(f"'{path}' holds Python code that Keras would run when loading it.",
                               "If you trust its author, re-run with --trust-remote-code.") from None
            raise BadInput(f"Keras cannot load '{path}': {text[:300]}",
                           "Save it again with model.save, or pass an entry point that builds it.") from None
    return describe(KerasModel(path, handle, fmt), options)


def load_entry(entry: EntryPoint, options: LoadOptions) -> KerasModel:
    return describe(KerasModel(Path(entry.display.rpartition(":")[0]), entry.obj, "keras", entry.display),
                    options)
