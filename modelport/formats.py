"""Formats, and detection by content (magic bytes, zip members, directory layout), not by extension."""

from __future__ import annotations

import enum
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInput


class Format(str, enum.Enum):
    TORCH_MODULE = "torch"            # an nn.Module from a Python entry point
    TORCHSCRIPT = "torchscript"
    TORCH_EXPORT = "pt2"              # torch.export ExportedProgram archive
    TORCH_PICKLE = "torch-pickle"     # torch.save of a whole module or a state_dict
    ONNX = "onnx"
    TFLITE = "tflite"
    SAVEDMODEL = "savedmodel"
    KERAS = "keras"
    KERAS_H5 = "h5"
    TFJS = "tfjs"
    JAX = "jax"                       # a JAX function (params bound) from a Python entry point
    PYTHON_ENTRY = "python-entry"     # file.py:name or package.module:name, resolved when loaded

    def __str__(self) -> str:
        return self.value


FRAMEWORK_OF: dict[Format, str] = {
    Format.TORCH_MODULE: "torch", Format.TORCHSCRIPT: "torch", Format.TORCH_EXPORT: "torch",
    Format.TORCH_PICKLE: "torch", Format.ONNX: "onnx", Format.TFLITE: "tflite",
    Format.SAVEDMODEL: "tensorflow", Format.KERAS: "keras", Format.KERAS_H5: "keras",
    Format.TFJS: "tfjs", Format.PYTHON_ENTRY: "python",
    Format.JAX: "jax",
}

# --framework NAME -> the formats it may mean
FRAMEWORK_CHOICES = ("torch", "tensorflow", "keras", "jax", "onnx", "tflite")

_ENTRY = re.compile(r"^(?P<target>.+?\.py|[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*):(?P<attr>[A-Za-z_]\w*)$")


@dataclass(frozen=True)
class Detected:
    format: Format
    evidence: str  # what content told us, for messages and `inspect`


def is_entry_point(source: str) -> bool:
    match = _ENTRY.match(source)
    if not match:
        return False
    target = match.group("target")
    return target.endswith(".py") or not Path(source).exists()


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadInput(f"'{path}' looks like a zip archive but cannot be read ({exc}).",
                       "The file is probably truncated or corrupt; export it again.") from None


def _detect_zip(path: Path, names: list[str]) -> Detected | None:
    tails = {n.split("/", 1)[1] if "/" in n else n for n in names}
    if "config.json" in names and ("metadata.json" in names or "model.weights.h5" in names):
        return Detected(Format.KERAS, "zip with config.json (Keras 3 archive)")
    if any(t.startswith("code/") for t in tails) or "constants.pkl" in tails:
        return Detected(Format.TORCHSCRIPT, "zip with code/ and constants.pkl (TorchScript archive)")
    if any(t.startswith("models/") or t == "archive_format" for t in tails) and any(
            "serialized_exported_program" in t or t.startswith("models/") for t in tails):
        return Detected(Format.TORCH_EXPORT, "zip with models/ (torch.export archive)")
    if "data.pkl" in tails:
        return Detected(Format.TORCH_PICKLE, "zip with data.pkl (torch.save pickle)")
    return None


def _looks_like_onnx(head: bytes) -> bool:
    # ModelProto starts with field 1 (ir_version, varint): tag byte 0x08, then a small version.
    return len(head) >= 2 and head[0] == 0x08 and 0 < head[1] < 32


def detect(source: str | Path) -> Detected:
    """What kind of model `source` is, from its content."""
    text = str(source)
    path = Path(text)
    if not path.exists():
        if is_entry_point(text):
            return Detected(Format.PYTHON_ENTRY, "Python entry point")
        raise BadInput(f"'{text}' does not exist.",
                       "Pass a model file, a SavedModel directory or an entry point such as model.py:build.")
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            return Detected(Format.SAVEDMODEL, "directory with saved_model.pb")
        if (path / "model.json").is_file():
            return Detected(Format.TFJS, "directory with model.json")
        raise BadInput(f"Directory '{text}' is not a model: it has neither saved_model.pb nor model.json.",
                       "Pass a SavedModel or TF.js directory, or a model file.")
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise BadInput(f"Cannot read '{text}': {exc.strerror}.", "Check the path and its permissions.") from None
    if size == 0:
        raise BadInput(f"'{text}' is empty (0 bytes).", "Export the model again; the file was not written.")
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return Detected(Format.TFLITE, "flatbuffer with identifier TFL3")
    if head.startswith(b"PK\x03\x04"):
        found = _detect_zip(path, _zip_names(path))
        if found:
            return found
        raise BadInput(f"'{text}' is a zip archive of no known model kind.",
                       "Expected a TorchScript, torch.export (.pt2), torch.save or .keras archive.")
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return Detected(Format.KERAS_H5, "HDF5 signature (legacy Keras .h5)")
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return Detected(Format.TORCH_PICKLE, f"pickle protocol {head[1]} stream (legacy torch.save)")
    if path.name == "model.json" and head.lstrip().startswith(b"{"):
        return Detected(Format.TFJS, "model.json")
    if text.endswith(".py") and head:
        raise BadInput(f"'{text}' is a Python file; name the function or object to load.",
                       f"Pass it as {text}:build (the name of a function returning the model).")
    if _looks_like_onnx(head):
        return Detected(Format.ONNX, "protobuf starting with ir_version (ONNX)")
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head) / max(len(head), 1)
    looked = "text" if printable > 0.9 else f"binary starting with {head[:8].hex(' ')}"
    raise BadInput(f"'{text}' is not a model format modelport knows (it looks like {looked}).",
                   "Supported: ONNX, TFLite, TorchScript, .pt2, SavedModel, .keras/.h5, TF.js, or file.py:name. "
                   "If the format is right but the file damaged, export it again; --framework forces a reader.")
