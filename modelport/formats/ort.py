"""ONNX Runtime's ORT format: the flatbuffer that onnxruntime's mobile and minimal builds load.

Made from ONNX by the converter that ships inside the onnxruntime wheel
(`onnxruntime.tools.convert_onnx_models_to_ort`, Fixed optimizations, with the host's kernels in
mind; called in this process with its output captured: a child process re-importing onnxruntime
cost ~2 s a conversion), validated by onnxruntime loading the `.ort` file.
The `required_operators.config` it writes travels beside the model: it is what a minimal
onnxruntime build (`--include_ops_by_config`) needs to contain exactly these operators.
"""

from __future__ import annotations

import shutil
import traceback
from pathlib import Path

from .._lazy import captured_output, require
from ..artifact import Artifact, IOMapping
from ..converters.base import EdgeContext
from ..errors import ConversionFailed
from ..targets.base import Runner
from ..targets.onnx import OnnxRuntimeRunner
from .base import Detected, Edge, FormatSpec, Probe, Requirement, TargetSpec
from .onnx import QUANTIZED_TOLERANCES

CONFIG_NAME = "model.required_operators.config"


class OrtFormatRunner(OnnxRuntimeRunner):
    runtime = "onnxruntime (ORT format)"
    # Recognised by content, so a renamed file (no .ort suffix) must still load as ORT format.
    session_config = {"session.load_model_format": "ORT"}
    reads_external_data = False  # a flatbuffer holds its weights

    def tap(self, feeds: dict) -> list:
        return Runner.tap(self, feeds)  # an ORT flatbuffer cannot be re-written with extra outputs


def detect(probe: Probe) -> Detected | None:
    if not probe.is_dir and len(probe.head) >= 8 and probe.head[4:8] == b"ORTM":
        return Detected("ort", "ort", "flatbuffer with identifier ORTM (ONNX Runtime ORT format)")
    return None


def _reason(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln or "FAIL" in ln or "Fail" in ln]
    return (errors or lines or ["no output"])[-1][:300]


def convert(onnx_artifact: Artifact, workdir: Path, ctx: EdgeContext) -> Artifact:
    """ONNX -> .ort (fixed optimizations), with its required-operators config beside it; with
    --quantize, the ONNX is quantized first (as the onnx target is)."""
    if ctx.quantize != "none":
        from ..converters.onnx_quantize import quantize_artifact

        onnx_artifact = quantize_artifact(onnx_artifact, workdir, ctx)
    staging = workdir / "in"
    staging.mkdir(exist_ok=True)
    model = staging / "model.onnx"  # the tool converts every .onnx under the path it is given
    shutil.copyfile(onnx_artifact.path, model)
    onnx_artifact.copy_beside(model)  # external data travels with the model
    out = workdir / "out"
    tool = require("onnxruntime.tools.convert_onnx_models_to_ort", purpose="to write ORT format")
    with captured_output(ctx.verbose) as log:
        try:
            tool.convert_onnx_models_to_ort(model, output_dir=out, optimization_styles=[tool.OptimizationStyle.Fixed])
            error = ""
        except Exception as exc:  # the tool raises many types; all mean "it failed"
            error = "".join(traceback.format_exception_only(exc))
    produced, config = out / "model.ort", out / CONFIG_NAME
    if error or not produced.is_file() or not config.is_file():
        raise ConversionFailed(f"onnxruntime could not convert the model to ORT format: "
                               f"{_reason(log.getvalue() + error)}.",
                               "Run with --verbose for the converter's log.")
    # The config names the scratch path it was made from; name the shipped file instead.
    config.write_text("".join(f"# - model.ort\n" if line.startswith("# - ") else line
                              for line in config.read_text().splitlines(keepends=True)))
    target = workdir / "model.ort"
    shutil.move(str(produced), target)
    shutil.move(str(config), workdir / CONFIG_NAME)
    io = IOMapping.identity(list(onnx_artifact.inputs), list(onnx_artifact.outputs))
    return Artifact(path=target, format="ort", inputs=onnx_artifact.inputs, outputs=onnx_artifact.outputs,
                    io=onnx_artifact.io.then(io), path_taken=(*onnx_artifact.path_taken, "ort"),
                    layout=onnx_artifact.layout, quantization=onnx_artifact.quantization,
                    companions=(workdir / CONFIG_NAME,),
                    extra={"converter": "onnxruntime.tools.convert_onnx_models_to_ort",
                           "optimization_style": "Fixed",
                           **{key: onnx_artifact.extra[key] for key in ("quantizer", "float_artifact")
                              if key in onnx_artifact.extra}})


FORMAT = FormatSpec(
    name="ort", description="ONNX Runtime ORT format (.ort)",
    requirement=Requirement("onnx", modules=("onnxruntime",)),
    detect="modelport.formats.ort:detect",
    target=TargetSpec(runner="modelport.formats.ort:OrtFormatRunner", file_name="model.ort",
                      tolerances=QUANTIZED_TOLERANCES, precisions=("none", "fp16", "dynamic", "int8"),
                      bundle_runtime="onnxruntime"),
    packages=("onnxruntime",),
)

EDGES = (Edge("onnx2ort", "onnx", "ort", "modelport.formats.ort:convert",
              Requirement("onnx", modules=("onnxruntime", "onnx"))),)
