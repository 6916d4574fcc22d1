"""SavedModel -> ONNX with tf2onnx (`python -m tf2onnx.convert`, in a child process: as a library
call tf2onnx mutates global TF state, and a child keeps its logs and crashes away from us)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from .._lazy import require
from ..artifact import Artifact, IOMapping, TensorLink
from ..errors import ConversionFailed
from ..spec import TensorSpec
from ..sources.tensorflow import signature_of
from ..formats.base import Edge, Requirement
from .base import EdgeContext

DEFAULT_OPSET = 17


def run_tf2onnx(args: list[str], out: Path, ctx: EdgeContext, what: str) -> None:
    if importlib.util.find_spec("tf2onnx") is None:  # importing it here would load TensorFlow for nothing (~4 s)
        require("tf2onnx", purpose=f"to convert {what} to ONNX")
    opset = ctx.opset or DEFAULT_OPSET
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "CUDA_VISIBLE_DEVICES": "-1"}
    command = [sys.executable, "-m", "tf2onnx.convert", *args, "--output", str(out), "--opset", str(opset)]
    process = subprocess.run(command, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if ctx.verbose:
        sys.stderr.write(process.stdout + process.stderr)
    if process.returncode != 0 or not out.exists():
        raise ConversionFailed(f"tf2onnx could not convert the {what}: {_reason(process.stderr)}.",
                               "Run with --verbose for tf2onnx's log; another --opset may help.")


def _reason(log: str) -> str:
    unsupported = re.findall(r"Unsupported ops: Counter\(\{([^}]*)\}\)", log)
    if unsupported:
        return f"unsupported TF ops {unsupported[-1]}"
    missing = re.findall(r"(?:No conversion|Tensorflow op \[[^\]]*\] is not supported)[^\n]*", log)
    if missing:
        return missing[-1].strip()[:300]
    errors = re.findall(r"^(\w+(?:Error|Exception)): (.*)$", log, flags=re.MULTILINE)
    if errors:
        return f"{errors[-1][0]}: {errors[-1][1][:250]}"
    lines = [ln for ln in log.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def onnx_io(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an ONNX file, symbolic dims kept as names."""
    onnx = require("onnx")
    from onnx import helper

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def spec(value: Any) -> TensorSpec:
        tensor = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim)
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else "float32"
        return TensorSpec(value.name, shape if tensor.HasField("shape") else None, dtype)

    return [spec(v) for v in graph.input if v.name not in initializers], [spec(v) for v in graph.output]


def link_by_name_or_position(previous: list[TensorSpec], produced: list[TensorSpec]) -> tuple[TensorLink, ...]:
    names = {s.name for s in previous}
    links = []
    for index, spec in enumerate(produced):
        clean = spec.name.split(":")[0]
        if clean in names:
            links.append(TensorLink(spec.name, clean))
        elif index < len(previous):
            links.append(TensorLink(spec.name, previous[index].name))
    return tuple(links)


def convert(saved: Artifact, workdir: Path, ctx: EdgeContext) -> Artifact:
    out = workdir / "model.onnx"
    signature = signature_of(saved, ctx.source, ctx.signature)
    run_tf2onnx(["--saved-model", str(saved.path), "--signature_def", signature], out, ctx, "SavedModel")
    inputs, outputs = onnx_io(out)
    io = IOMapping(link_by_name_or_position(list(saved.inputs), inputs),
                   link_by_name_or_position(list(saved.outputs), outputs))
    return Artifact(path=out, format="onnx", inputs=tuple(inputs), outputs=tuple(outputs),
                    io=saved.io.then(io), path_taken=(*saved.path_taken, "onnx"), layout="nhwc",
                    extra={"converter": "tf2onnx", "opset": ctx.opset or DEFAULT_OPSET, "signature": signature})


EDGES = (Edge("savedmodel2onnx", "savedmodel", "onnx", "modelport.converters.savedmodel2onnx:convert",
              Requirement("tf", modules=("tf2onnx", "tensorflow", "onnx")), packages=("tf2onnx",)),)
