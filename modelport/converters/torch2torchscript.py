"""torch -> TorchScript directly (no trip through ONNX): trace, checked against a second input so
a trace that diverges is caught; where tracing fails, script. Tracer warnings are kept in the
artifact's notes; the validator's comparison on several samples decides whether it is right."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from .._lazy import captured_output, require
from ..artifact import Artifact, IOMapping
from ..errors import ConversionFailed
from ..validators.data import make_feeds
from ..formats.base import Edge, Requirement
from ..sources.torch import TorchModel
from .base import EdgeContext


def convert(source: Artifact, workdir: Path, ctx: EdgeContext) -> Artifact:
    torch = require("torch", purpose="to write TorchScript")
    model = ctx.source
    assert isinstance(model, TorchModel), "this edge converts a loaded torch source"
    out = workdir / "model.pt"
    inputs, outputs = list(source.inputs), list(source.outputs)
    io = IOMapping.identity(inputs, outputs)
    if model.format == "torchscript":  # already TorchScript: the artifact is the file itself
        shutil.copyfile(model.path, out)
        return Artifact(path=out, format="torchscript", inputs=tuple(inputs), outputs=tuple(outputs), io=io,
                        path_taken=(*source.path_taken, "torchscript"), extra={"method": "copy"})
    module = model.callable_module()
    first = tuple(torch.from_numpy(v) for v in make_feeds(inputs, seed=ctx.seed).values())
    second = tuple(torch.from_numpy(v) for v in make_feeds(inputs, seed=ctx.seed, sample=1).values())
    errors: list[str] = []
    notes: list[str] = []
    scripted = None
    for method in ("trace", "script"):
        with captured_output(ctx.verbose), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", torch.jit.TracerWarning)
            try:
                if method == "trace":
                    # check_inputs re-runs the trace on a second input: a divergent trace fails here.
                    scripted = torch.jit.trace(module, first, check_inputs=[second], strict=False)
                else:
                    scripted = torch.jit.script(module)
                notes = sorted({str(w.message).splitlines()[0][:160] for w in caught
                                if issubclass(w.category, torch.jit.TracerWarning)})
                break
            except Exception as exc:  # TracingCheckError, script frontend errors
                errors.append(f"{method}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__}")
    else:
        raise ConversionFailed(f"Neither tracing nor scripting worked: {'; '.join(errors)}.",
                               "Make forward() traceable (no data-dependent Python control flow) or scriptable.")
    torch.jit.save(scripted, str(out))
    return Artifact(path=out, format="torchscript", inputs=tuple(inputs), outputs=tuple(outputs), io=io,
                    path_taken=(*source.path_taken, "torchscript"),
                    extra={"method": method, "fallback_reason": errors[0] if errors else None,
                           "tracer_warnings": notes})


# Direct edges are cheaper than a trip through ONNX, so the planner prefers them.
EDGES = (Edge("torch2torchscript", "torch", "torchscript", "modelport.converters.torch2torchscript:convert",
              Requirement("torch", modules=("torch",)), cost=0.5),)
