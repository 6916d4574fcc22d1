"""`--simplify`: onnxsim on the ONNX target, kept only if onnxsim says the result is equivalent."""

from __future__ import annotations

from pathlib import Path

from .._lazy import captured_output, require
from ..artifact import Artifact
from ..errors import ConversionFailed


def simplify(artifact: Artifact, workdir: Path, verbose: bool = False) -> Artifact:
    onnx = require("onnx")
    onnxsim = require("onnxsim", "tf", purpose="for --simplify")
    out = workdir / "model.simplified.onnx"
    with captured_output(verbose):
        try:
            simplified, equivalent = onnxsim.simplify(onnx.load(str(artifact.path)))
        except Exception as exc:  # onnxsim raises RuntimeError/ValidationError from C++
            raise ConversionFailed(f"onnxsim could not simplify the model: {str(exc).splitlines()[0][:200]}",
                                   "Drop --simplify.") from None
    if not equivalent:
        raise ConversionFailed("onnxsim's check found the simplified model differs from the original.",
                               "Drop --simplify.")
    onnx.save(simplified, str(out))
    return artifact.with_(path=out, extra={**artifact.extra, "simplified": "onnxsim"}, companions=())
