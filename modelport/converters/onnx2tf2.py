"""ONNX -> TFLite with onnx2tf 2.x's TensorFlow-free `flatbuffer_direct` writer, in its own
toolchain (Python 3.12, numpy 2: it cannot share modelport's environment; see docs/toolchains.md).

Preferred over onnx2tf 1.29 where the toolchain is installed (a lower cost); 1.29 and the other
paths remain the fallbacks. Wrapped sharp edges: when lowering fails onnx2tf 2.x retries with
CUSTOM `ONNX_*` ops and exits 0 with a file LiteRT refuses (here: a failed conversion naming
those ops); it rewrites its input (it gets a copy); it runs `onnxsim` by command name (the
toolchain's bin leads PATH); it writes schema files, a float16 model and a correspondence report
beside the model (only the float32 .tflite leaves the scratch folder); it prints progress bars
(the log is kept unless --verbose). It turns rank 3-5 inputs channel-last, recorded in the I/O
mapping as for 1.29.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..artifact import Artifact
from ..errors import ConversionFailed
from ..formats.base import Edge, Requirement
from .base import EdgeContext
from .onnx2tf import disagreement, mapping, prepared
from .onnx_prepare import all_failed

TOOLCHAIN = "onnx2tf2"


def to_tflite(onnx_artifact: Artifact, workdir: Path, ctx: EdgeContext) -> Artifact:
    from ..targets.isolated import IsolatedRunner
    from ..targets.tflite import LiteRTRunner

    if ctx.quantize != "none":  # the planner does not send it quantized work (Edge.precisions)
        raise ConversionFailed(f"modelport runs onnx2tf 2.x for float32 only (asked: {ctx.quantize}).",
                               "The onnx2tf 1.29 path quantizes.")
    workarounds: list[str] = []
    try:
        produced, out, version = _run(onnx_artifact, workdir, ctx)
    except ConversionFailed as first:
        # the retry path: the graph folded, its function ops (Attention, RMSNormalization...) expanded
        try:
            ready, what = prepared(onnx_artifact, ctx, expand=True)
        except ConversionFailed:
            raise first from None
        try:
            produced, out, version = _run(ready, workdir, ctx)
        except ConversionFailed as second:
            raise all_failed([("graph as given", first), ("expanded graph", second)]) from None
        workarounds.append(f"{what}: onnx2tf 2.x failed on the graph as given")
        onnx_artifact = onnx_artifact.with_(path=ready.path)  # the correspondence reads its names
    target = workdir / "model.tflite"
    shutil.copyfile(produced, target)
    with LiteRTRunner(target) as runner:  # specs only; it runs isolated during validation
        produced_in, produced_out = runner.inputs, runner.outputs
    io, layout = mapping(onnx_artifact, produced_in, produced_out, ctx,
                         lambda: IsolatedRunner("modelport.targets.tflite:LiteRTRunner", target))
    with IsolatedRunner("modelport.targets.tflite:LiteRTRunner", target) as runner:
        wrong = disagreement(onnx_artifact, io, runner, ctx)
    if wrong:  # (seen: its ELU and linear Resize) the onnx2tf 1.29 path gets its turn
        raise ConversionFailed(f"onnx2tf 2.x wrote a TFLite model whose {wrong}.", "The onnx2tf 1.29 path is tried next.")
    tensors = tensor_correspondence(onnx_artifact.path, out)
    return Artifact(path=target, format="tflite", inputs=tuple(produced_in), outputs=tuple(produced_out),
                    io=onnx_artifact.io.then(io), path_taken=(*onnx_artifact.path_taken, "tflite"), layout=layout,
                    extra={"converter": f"onnx2tf {version} (flatbuffer_direct, toolchain {TOOLCHAIN})",
                           "workarounds": workarounds, "tensors": tensors})


def _run(onnx_artifact: Artifact, workdir: Path, ctx: EdgeContext) -> tuple[Path, Path, str]:
    """onnx2tf 2.x once: the float32 .tflite it wrote, its output folder and its version."""
    from .. import toolchains
    from ..sources.tflite import read_flatbuffer

    copy = workdir / "input" / "model.onnx"  # onnx2tf rewrites the file it is given
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_artifact.path, copy)
    onnx_artifact.copy_beside(copy)  # external data travels with the model
    out = workdir / "onnx2tf2-out"
    shutil.rmtree(out, ignore_errors=True)
    spatial = [s.name for s in onnx_artifact.inputs if len(s.shape or ()) in (3, 4, 5)]
    keep_nhwc = spatial if onnx_artifact.layout == "nhwc" else []  # already channel-last (from TF)
    keep_nchw = spatial if ctx.keep_layout and not keep_nhwc else []
    ctx.count("onnx2tf2.convert")
    result = toolchains.run(TOOLCHAIN, "convert.py", {
        "model": str(copy), "output_dir": str(out), "keep_nchw": keep_nchw, "keep_nhwc": keep_nhwc,
        "seed": ctx.seed}, verbose=ctx.verbose)
    produced = Path(result.data["tflite"])
    custom = read_flatbuffer(produced).custom_ops
    if custom:
        raise ConversionFailed(f"onnx2tf 2.x could not lower {', '.join(sorted(custom))} to TFLite builtin ops "
                               "(it wrote CUSTOM ops, which LiteRT cannot run).",
                               "The onnx2tf 1.29 path is tried next.")
    return produced, out, str(result.data.get("onnx2tf", "2.x"))


def onnx2tf_name(name: str) -> str:
    """onnx2tf's renaming of an ONNX tensor (':' -> '__', a leading '/' -> 'wa/')."""
    import re

    return re.sub(r"^/", "wa/", name.replace(":", "__"))


def tensor_correspondence(onnx_path: Path, out: Path) -> list[dict]:
    """Which TFLite tensor holds which ONNX tensor, from the report onnx2tf 2.x writes beside the
    model (`modelport debug` matches layers by it). onnx2tf renames tensors (':' -> '__', a leading
    '/' -> 'wa/'); the report's names are mapped back to the ONNX model's own. Where it fused ops
    (a Conv and its Relu), one TFLite tensor holds the last of them: all are listed, graph order."""
    import json

    import onnx

    reports = sorted(out.glob("*_tensor_correspondence_report.json"))
    if not reports:
        return []
    try:
        records = json.loads(reports[0].read_text()).get("records", [])
    except (OSError, ValueError):
        return []
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    original = {onnx2tf_name(name): name
                for node in graph.node for name in node.output if name}
    held: dict[str, list[str]] = {}
    for record in sorted(records, key=lambda r: r.get("identifier", 0)):
        tflite_name, onnx_name = record.get("resolved_tflite_tensor_name"), record.get("onnx_output_name")
        if not record.get("exists_in_final_model") or not tflite_name or onnx_name not in original:
            continue
        held.setdefault(tflite_name, []).append(original[onnx_name])
    return [{"name": name, "source": sources} for name, sources in held.items()]


EDGES = (Edge("onnx2tf2", "onnx", "tflite", "modelport.converters.onnx2tf2:to_tflite",
              Requirement("tf", toolchain=TOOLCHAIN), cost=0.9, precisions=("none",)),)
