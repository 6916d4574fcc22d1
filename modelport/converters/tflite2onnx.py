"""TFLite -> ONNX with tf2onnx's TFLite reader (`python -m tf2onnx.convert --tflite`, in a child
process like the SavedModel edge).

Left alone, tf2onnx names the ONNX inputs and outputs after graph tensors ("serving_default_x:0",
"StatefulPartitionedCall_1:1") in graph order, which is not the signature's order. Those names
also defeat onnx2tf downstream: it rewrites ':' to '__' before matching the input names it is
told to keep channel-last, so an NHWC input got transposed anyway. The flatbuffer says which
tensor each LiteRT name is, so tf2onnx is asked to give the ONNX the same names as the source
(`--rename-inputs/--rename-outputs`); where that is unsafe the tensor names are linked instead.

A fully int8 file keeps its int8 inputs and outputs (QuantizeLinear/DequantizeLinear inside): the
links carry scale and zero point, so the float sample data is quantized exactly as LiteRT does.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..artifact import Artifact, IOMapping, TensorLink
from ..errors import ConversionFailed
from ..sources.tflite import IOTensor, TfliteFacts, read_flatbuffer
from ..spec import TensorSpec
from ..formats.base import Edge, Requirement
from .base import EdgeContext
from .savedmodel2onnx import DEFAULT_OPSET, link_by_name_or_position, onnx_io, run_tf2onnx


def _rename_args(facts: TfliteFacts) -> list[str]:
    """tf2onnx arguments giving the ONNX I/O the LiteRT names, or none where that is unsafe:
    the lists are comma-separated, and a new name must not collide with another tensor."""
    if not facts.readable or not facts.inputs or not facts.outputs:
        return []
    io = (*facts.inputs, *facts.outputs)
    new = [t.name for t in io]
    others = facts.tensors - {t.tensor for t in io}
    if (any("," in t.name or "," in t.tensor for t in io) or len(set(new)) != len(new)
            or any(name in others for name in new)):
        return []
    if all(t.name == t.tensor for t in io):
        return []
    return ["--inputs", ",".join(t.tensor for t in facts.inputs),
            "--outputs", ",".join(t.tensor for t in facts.outputs),
            "--rename-inputs", ",".join(t.name for t in facts.inputs),
            "--rename-outputs", ",".join(t.name for t in facts.outputs)]


def _links(previous: list[TensorSpec], produced: list[TensorSpec],
           known: tuple[IOTensor, ...]) -> tuple[TensorLink, ...]:
    """By name (the LiteRT name, or the tensor it is), else by position; with quantization."""
    by_tensor = {t.tensor: t for t in known}
    names = {s.name for s in previous}
    fallback = {link.name: link for link in link_by_name_or_position(previous, produced)}
    links = []
    for spec in produced:
        tensor = by_tensor.get(spec.name)
        if spec.name in names:
            link = TensorLink(spec.name, spec.name)
        elif tensor is not None and tensor.name in names:
            link = TensorLink(spec.name, tensor.name)
        elif spec.name in fallback:
            link = fallback[spec.name]
        else:
            continue
        source = next((t for t in known if t.name == link.source_name), None)
        if source is not None and source.scale and spec.dtype.startswith(("int", "uint")):
            link = TensorLink(link.name, link.source_name, None, source.scale, source.zero_point)
        links.append(link)
    return tuple(links)


def _check_int16(onnx_path: Path) -> None:
    """16x8-quantized files (int16 activations) come out of tf2onnx with int16/int64
    QuantizeLinear/DequantizeLinear, which ONNX does not allow at the opsets tf2onnx writes
    (<= 18): say so, rather than quote the checker."""
    from ..targets.onnx import check_model

    try:
        check_model(onnx_path)
    except ConversionFailed as exc:
        op = re.search(r"op_type:\s*(\w+)", exc.message)
        kind = re.search(r"unsupported type:\s*(tensor\(\w+\))", exc.message)
        what = f"{op.group(1)} on {kind.group(1)}" if op and kind else exc.message[:160]
        raise ConversionFailed(
            f"tf2onnx cannot convert this 16x8-quantized TFLite model (int16 activations): it writes {what}, "
            "which ONNX does not allow at the opsets tf2onnx supports (<= 18).",
            "Convert the float32 or the int8 variant of the model instead.") from None


def convert(tflite: Artifact, workdir: Path, ctx: EdgeContext) -> Artifact:
    facts = read_flatbuffer(tflite.path)
    out = workdir / "model.onnx"
    rename = _rename_args(facts)
    run_tf2onnx(["--tflite", str(tflite.path), *rename], out, ctx, "TFLite model")
    if facts.precision == "int16":
        _check_int16(out)
    portable = {}
    if facts.precision == "int8":
        # int8 QDQ saturates in onnxruntime's default kernels on x86-64 CPUs without VNNI; the
        # same graph in uint8 is exact there (see qdq_portable.py).
        from .qdq_portable import make_portable

        portable = make_portable(out)
    inputs, outputs = onnx_io(out)
    io = IOMapping(_links(list(tflite.inputs), inputs, facts.inputs),
                   _links(list(tflite.outputs), outputs, facts.outputs))
    # A TFLite graph is channel-last, and so is the ONNX made from it: onnx2tf must keep it so.
    return Artifact(path=out, format="onnx", inputs=tuple(inputs), outputs=tuple(outputs),
                    io=tflite.io.then(io), path_taken=(*tflite.path_taken, "onnx"), layout="nhwc",
                    quantization=facts.precision,
                    extra={"converter": "tf2onnx", "opset": ctx.opset or DEFAULT_OPSET, "renamed_io": bool(rename),
                           **({"qdq": portable} if portable else {})})


EDGES = (Edge("tflite2onnx", "tflite", "onnx", "modelport.converters.tflite2onnx:convert",
              Requirement("tf", modules=("tf2onnx", "tensorflow", "onnx")), packages=("tf2onnx",)),)
