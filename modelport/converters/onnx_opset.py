"""Re-target an ONNX file to another opset (onnx.version_converter), for `--opset` on ONNX sources."""

from __future__ import annotations

from pathlib import Path

from .._lazy import require
from ..artifact import Artifact
from ..errors import ConversionFailed


def current_opset(path: Path) -> int:
    onnx = require("onnx")
    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def convert_opset(artifact: Artifact, opset: int, workdir: Path) -> Artifact:
    onnx = require("onnx")
    if current_opset(artifact.path) == opset:
        return artifact
    out = workdir / f"model.opset{opset}.onnx"
    try:
        converted = onnx.version_converter.convert_version(onnx.load(str(artifact.path)), opset)
        onnx.checker.check_model(converted)
        onnx.save(converted, str(out))
    except Exception as exc:  # the converter raises RuntimeError/ValidationError with C++ text
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionFailed(f"onnx.version_converter cannot move this model to opset {opset}: {first[:300]}",
                               "Pick another --opset, or re-export the model at that opset.") from None
    return artifact.with_(path=out, extra={**artifact.extra, "opset": opset}, companions=())  # data inlined
