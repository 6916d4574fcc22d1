"""TFLite / LiteRT flatbuffers: a source (tf2onnx reads them) and a target, run on the LiteRT
interpreter in a child process that never imported TensorFlow (as on a device)."""

from __future__ import annotations

from .base import Detected, FormatSpec, Probe, Requirement, SourceSpec, TargetSpec
from .onnx import QUANTIZED_TOLERANCES


def detect(probe: Probe) -> Detected | None:
    if not probe.is_dir and len(probe.head) >= 8 and probe.head[4:8] == b"TFL3":
        return Detected("tflite", "tflite", "flatbuffer with identifier TFL3")
    return None


FORMAT = FormatSpec(
    name="tflite", description="TFLite / LiteRT flatbuffer (.tflite)",
    requirement=Requirement("tflite", any_of=("ai_edge_litert", "tflite_runtime")),
    detect="modelport.formats.tflite:detect",
    source=SourceSpec(loader="modelport.sources.tflite:load", framework="tflite"),
    describe="modelport.sources.tflite:describe",
    target=TargetSpec(runner="modelport.targets.tflite:LiteRTRunner", file_name="model.tflite",
                      tolerances=QUANTIZED_TOLERANCES, isolate=True,
                      precisions=("none", "fp16", "dynamic", "int8"), bundle_runtime="litert",
                      layer_debugger="modelport.converters.tflite_layer_debug:open_debugger",
                      layer_debug_from="savedmodel"),
    packages=("ai-edge-litert", "tflite-runtime"),
)
