"""torch -> ONNX with torch.onnx.

nn.Modules and TorchScript go through the TorchScript-based exporter at opset 17 (exact, and
readable by onnx2torch); if it fails, the dynamo exporter is tried. torch.export programs only
go through the dynamo exporter (the legacy one cannot take them), at opset 18 unless --opset says
otherwise: its own down-conversion to 17 was seen to write graphs onnx.checker rejects.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from .._lazy import captured_output, require
from ..artifact import Artifact, IOMapping
from ..errors import ConversionFailed
from ..validators.data import make_feeds
from ..formats.base import Edge, Requirement
from ..sources.torch import TorchModel
from .base import EdgeContext

if TYPE_CHECKING:
    from ..spec import TensorSpec

DEFAULT_OPSET = 17

_OP_PATTERNS = (
    r"operator '?([\w:.]+)'? to ONNX",
    r"Unsupported: ONNX export of operator ([\w:.]+)",
    r"(aten::\w+)",
    r"(aten\.\w+(?:\.\w+)?)",
    r"No decompositions registered for[^\w]*([\w.:]+)",
)


def unsupported_op(message: str) -> str | None:
    for pattern in _OP_PATTERNS:
        match = re.search(pattern, message)
        if match:
            return match.group(1)
    return None


def _dynamic_axes(inputs: list[TensorSpec], outputs: list[TensorSpec]) -> dict[str, dict[int, str]]:
    axes = {}
    for spec in [*inputs]:
        named = {i: d for i, d in enumerate(spec.shape or ()) if isinstance(d, str)}
        if named:
            axes[spec.name] = named
    return axes


def convert(source: Artifact, workdir: Path, ctx: EdgeContext) -> Artifact:
    torch = require("torch", purpose="to export PyTorch models")
    model = ctx.source
    assert isinstance(model, TorchModel), "this edge converts a loaded torch source"
    out = workdir / "model.onnx"
    inputs, outputs = list(source.inputs), list(source.outputs)
    feeds = make_feeds(inputs, seed=ctx.seed)
    args = tuple(torch.from_numpy(feeds[s.name]) for s in inputs)
    names_in = [s.name for s in inputs]
    names_out = [s.name for s in outputs]
    opset = ctx.opset or DEFAULT_OPSET
    attempts = []
    if model.format != "pt2":
        attempts.append("torchscript")
    attempts.append("dynamo")
    errors: list[str] = []
    for exporter in attempts:
        with captured_output(ctx.verbose) as log, warnings.catch_warnings():
            if not ctx.verbose:
                warnings.simplefilter("ignore")
            try:
                if exporter == "torchscript":
                    torch.onnx.export(model.handle, args, str(out), input_names=names_in, output_names=names_out,
                                      dynamic_axes=_dynamic_axes(inputs, outputs) or None,
                                      opset_version=opset, dynamo=False)
                else:
                    program = model.handle if model.format == "pt2" else model.callable_module()
                    kwargs = {} if model.format == "pt2" else {
                        "dynamic_axes": _dynamic_axes(inputs, outputs) or None}
                    exported = torch.onnx.export(program, args, input_names=names_in, output_names=names_out,
                                                 opset_version=max(opset, 18) if ctx.opset is None else opset,
                                                 dynamo=True, verbose=False, **kwargs)
                    exported.save(str(out))
                break
            except Exception as exc:  # exporters raise many types; all mean "this exporter failed"
                errors.append(f"{exporter}: {type(exc).__name__}: {exc}\n{log.getvalue()[-2000:]}")
                out.unlink(missing_ok=True)
    else:
        text = "\n".join(errors)
        op = unsupported_op(text)
        first = next((ln.strip() for e in errors for ln in e.splitlines()[:1]), "unknown error")
        what = f"the operator '{op}' is not supported by the ONNX exporter" if op else first[:300]
        raise ConversionFailed(f"torch -> ONNX failed: {what}.",
                               "Try another --opset, or replace that operation in the model; --verbose shows the "
                               "exporter's log.")
    return Artifact(path=out, format="onnx", inputs=tuple(inputs), outputs=tuple(outputs),
                    io=IOMapping.identity(inputs, outputs), path_taken=(*source.path_taken, "onnx"),
                    extra={"exporter": f"torch.onnx ({exporter})", "opset": opset})


EDGES = (Edge("torch2onnx", "torch", "onnx", "modelport.converters.torch2onnx:convert",
              Requirement("torch", modules=("torch", "onnx", "onnxscript")), packages=("onnxscript",)),)
