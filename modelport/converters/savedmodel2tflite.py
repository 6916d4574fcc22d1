"""SavedModel -> TFLite with TensorFlow's own TFLiteConverter, builtin ops only.

For graphs that came from TensorFlow (Keras, SavedModel, JAX via jax2tf) this is the faithful
path: no ONNX round trip and no layout guessing by onnx2tf (which was seen to transpose inputs
wrongly where channels equal the side length). Builtin ops only, so the result runs on any LiteRT
interpreter; a graph that would need Flex ops fails here and the planner tries the ONNX path.
"""

from __future__ import annotations

import re
from pathlib import Path

from .._lazy import captured_output, require
from ..artifact import Artifact, IOMapping, TensorLink
from ..errors import ConversionFailed
from ..sources.tensorflow import signature_of
from ..formats.base import Edge, Requirement
from .base import EdgeContext


def convert(saved: Artifact, workdir: Path, ctx: EdgeContext) -> Artifact:
    from ..targets.tflite import LiteRTRunner

    signature = signature_of(saved, ctx.source, ctx.signature)
    out = workdir / "model.tflite"
    with captured_output(ctx.verbose) as log:
        tf = require("tensorflow", purpose="to convert SavedModels to TFLite")
        try:
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved.path), signature_keys=[signature])
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            if ctx.quantize != "none":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]  # alone: dynamic-range weights
            if ctx.quantize == "fp16":
                converter.target_spec.supported_types = [tf.float16]
            elif ctx.quantize == "int8":
                if not ctx.calibration:
                    raise ConversionFailed("int8 quantization needs calibration data.",
                                           "Pass --calibration-data FILE.npz.")
                names = {link.source_name: link.name for link in saved.io.inputs}
                converter.representative_dataset = lambda: (
                    {names[k]: v for k, v in sample.items() if k in names} for sample in ctx.calibration)
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
            out.write_bytes(converter.convert())
            error = None
        except ConversionFailed:
            raise
        except Exception as exc:  # ConverterError carries the MLIR diagnostics
            error = exc
    if error is not None:
        text = f"{error}\n{log.getvalue()}"
        ops = sorted(set(re.findall(r"'tf\.(\w+)'", text)))
        what = (f"TF ops with no TFLite builtin kernel: {', '.join(ops)}" if ops else
                (str(error).strip().splitlines() or [type(error).__name__])[0][:250])
        raise ConversionFailed(f"TFLiteConverter could not convert the SavedModel: {what}.",
                               "Run with --verbose for its log.")
    with LiteRTRunner(out) as runner:  # specs only; it runs isolated during validation
        produced_in, produced_out = runner.inputs, runner.outputs
    by_name_in = {s.name for s in produced_in}
    by_name_out = {s.name for s in produced_out}
    io = IOMapping(tuple(TensorLink(s.name, s.name) for s in saved.inputs if s.name in by_name_in),
                   tuple(TensorLink(s.name, s.name) for s in saved.outputs if s.name in by_name_out))
    if len(io.inputs) != len(saved.inputs) or len(io.outputs) != len(saved.outputs):
        raise ConversionFailed("The TFLite signature does not keep the SavedModel's tensor names.",
                               "Run with --verbose.")
    return Artifact(path=out, format="tflite", inputs=tuple(produced_in), outputs=tuple(produced_out),
                    io=saved.io.then(io), path_taken=(*saved.path_taken, "tflite"), layout=saved.layout,
                    quantization=ctx.quantize,
                    extra={"converter": "tf.lite.TFLiteConverter (builtin ops)", "signature": signature})


EDGES = (Edge("savedmodel2tflite", "savedmodel", "tflite", "modelport.converters.savedmodel2tflite:convert",
              Requirement("tf", modules=("tensorflow",))),)
