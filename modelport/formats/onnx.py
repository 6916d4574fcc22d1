"""ONNX: the hub of the format graph. Read as a source (checked, run on onnxruntime) and written
as a target (checked with onnx.checker, run on onnxruntime's CPU provider)."""

from __future__ import annotations

from ..validators.compare import Tolerance
from .base import Detected, FormatSpec, Probe, Requirement, SourceSpec, TargetSpec

# fp16/dynamic/int8: an ONNX quantized by modelport (or made from a quantized TFLite file), judged
# against the float source.
QUANTIZED_TOLERANCES = {"none": Tolerance(1e-4, 1e-3), "fp16": Tolerance(1e-2, 1e-2),
                        "dynamic": Tolerance(5e-2, 5e-2, 0.99), "int8": Tolerance(1e-1, 1e-1, 0.98)}


def detect(probe: Probe) -> Detected | None:
    head = probe.head
    # A ModelProto starts with field 1 (ir_version, varint): tag byte 0x08, then a small version.
    if not probe.is_dir and len(head) >= 2 and head[0] == 0x08 and 0 < head[1] < 32:
        return Detected("onnx", "onnx", "protobuf starting with ir_version (ONNX)")
    return None


FORMAT = FormatSpec(
    name="onnx", description="ONNX model (.onnx)",
    requirement=Requirement("onnx", modules=("onnx", "onnxruntime")),
    detect="modelport.formats.onnx:detect",
    source=SourceSpec(loader="modelport.sources.onnx:load", framework="onnx"),
    target=TargetSpec(runner="modelport.targets.onnx:OnnxRuntimeRunner", file_name="model.onnx",
                      tolerances=QUANTIZED_TOLERANCES, precisions=("none", "fp16", "dynamic", "int8"),
                      quantizer="modelport.converters.onnx_quantize:quantize_artifact", bundle_runtime="onnxruntime",
                      layer_debugger="modelport.converters.onnx_layer_debug:open_debugger", layer_debug_from="onnx"),
    describe="modelport.sources.onnx:describe",
    packages=("onnx", "onnxruntime"),
)
