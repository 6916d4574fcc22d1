"""SavedModel -> TF.js graph model with the tensorflowjs converter, in a child process.

Wrapped sharp edges: tensorflowjs imports tensorflow_decision_forests only to register TF-DF ops
(it cannot be installed beside onnx2tf's TF pins), so an empty stand-in is put in its place when
the real one is absent; and it fails on oneDNN's fused `_MklLayerNorm` unless oneDNN rewrites are
off, so the child runs with TF_ENABLE_ONEDNN_OPTS=0.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path

from .._lazy import require_installed
from ..artifact import Artifact, IOMapping, TensorLink
from ..errors import ConversionFailed
from ..sources.tensorflow import signature_of
from ..formats.base import Edge, Requirement
from .base import EdgeContext


def convert(saved: Artifact, workdir: Path, ctx: EdgeContext) -> Artifact:
    require_installed("tensorflowjs", purpose="to convert SavedModels to TF.js")
    out = workdir / "tfjs"
    signature = signature_of(saved, ctx.source, ctx.signature)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "CUDA_VISIBLE_DEVICES": "-1"}
    process = subprocess.run([sys.executable, "-m", "modelport.converters.savedmodel2tfjs", str(saved.path), str(out),
                              signature], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if ctx.verbose:
        sys.stderr.write(process.stdout + process.stderr)
    if process.returncode != 0 or not (out / "model.json").is_file():
        raise ConversionFailed(f"tensorflowjs could not convert the SavedModel: {_reason(process.stderr)}.",
                               "Run with --verbose for the converter's log.")
    # The graph model's signature keys are the SavedModel's: names carry over unchanged.
    io = IOMapping(tuple(TensorLink(s.name, s.name) for s in saved.inputs),
                   tuple(TensorLink(s.name, s.name) for s in saved.outputs))
    return Artifact(path=out, format="tfjs", inputs=saved.inputs, outputs=saved.outputs, io=saved.io.then(io),
                    path_taken=(*saved.path_taken, "tfjs"), layout=saved.layout,
                    extra={"converter": "tensorflowjs", "signature": signature})


def _reason(log: str) -> str:
    unsupported = re.findall(r"Unsupported Ops in the model[^\n]*\n?([^\n]*)", log)
    if unsupported:
        return f"ops TF.js does not support: {unsupported[-1].strip()[:200]}"
    errors = re.findall(r"^(\w+(?:Error|Exception)): (.*)$", log, flags=re.MULTILINE)
    if errors:
        return f"{errors[-1][0]}: {errors[-1][1][:250]}"
    lines = [ln for ln in log.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def _main(saved_model_dir: str, output_dir: str, signature: str) -> None:
    try:
        import tensorflow_decision_forests  # noqa: F401
    except ImportError:
        sys.modules["tensorflow_decision_forests"] = types.ModuleType("tensorflow_decision_forests")
    from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs_convert

    tfjs_convert.convert_tf_saved_model(saved_model_dir, output_dir, signature_def=signature,
                                        use_structured_outputs_names=True)



EDGES = (Edge("savedmodel2tfjs", "savedmodel", "tfjs", "modelport.converters.savedmodel2tfjs:convert",
              Requirement("tfjs", modules=("tensorflowjs", "tensorflow"))),)


if __name__ == "__main__":
    _main(*sys.argv[1:4])
