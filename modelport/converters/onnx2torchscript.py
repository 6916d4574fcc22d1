"""ONNX -> torch (onnx2torch) -> TorchScript (trace), for sources that are not torch.

Wrapped sharp edges: onnx2torch imports torchvision only for NMS and RoIAlign, and torchvision
cannot be imported beside this torch: a stand-in whose ops raise "this model needs torchvision"
lets every other op convert. onnx2torch has no converters for opset >= 19 versions of several
ops: graphs above opset 18 are first lowered with onnx.version_converter.
"""

from __future__ import annotations

import re
import sys
import types
import warnings
from pathlib import Path
from typing import Any

from .._lazy import captured_output, require, restore_entries
from ..artifact import Artifact, IOMapping, TensorLink
from ..errors import ConversionFailed
from ..validators.data import make_feeds
from ..formats.base import Edge, Requirement
from .base import EdgeContext

MAX_OPSET = 18


def _import_onnx2torch() -> Any:
    """onnx2torch, imported with a torchvision stand-in where the real one cannot be imported.

    onnx2torch binds torchvision's ops when it is imported; the stand-in is in sys.modules only
    for that import, so nothing else in this process ever sees a fake torchvision."""
    if "onnx2torch" in sys.modules:
        return sys.modules["onnx2torch"]
    try:
        import torchvision  # noqa: F401
        return require("onnx2torch", "torch", purpose="to convert ONNX to torch")
    except Exception:  # ImportError, or the RuntimeError of a torchvision built for another torch
        pass

    def missing(*_args: Any, **_kwargs: Any) -> Any:
        raise ConversionFailed("This model uses NMS/RoIAlign, which needs torchvision.",
                               "Install a torchvision matching your torch.")

    vision = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = ops.batched_nms = missing  # type: ignore[attr-defined]
    vision.ops = ops  # type: ignore[attr-defined]
    saved = {name: sys.modules.get(name) for name in ("torchvision", "torchvision.ops")}
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = vision, ops
    try:
        return require("onnx2torch", "torch", purpose="to convert ONNX to torch")
    finally:
        restore_entries(sys.modules, saved)


def convert(onnx_artifact: Artifact, workdir: Path, ctx: EdgeContext) -> Artifact:
    torch = require("torch", purpose="to write TorchScript")
    onnx = require("onnx")
    onnx2torch = _import_onnx2torch()
    from .onnx2torch_ops import own_newer_ops, register

    register()  # the ops onnx2torch lacks, through its own add_converter
    model = own_newer_ops(onnx.load(str(onnx_artifact.path)))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    lowered = None
    if opset > MAX_OPSET:
        from .onnx_opset import lower_opset

        try:
            model, lowered = lower_opset(model, MAX_OPSET)
        except ConversionFailed as exc:
            raise ConversionFailed(f"onnx2torch reads opset <= {MAX_OPSET}, and {exc.message}", exc.hint) from None
    inputs, outputs = list(onnx_artifact.inputs), list(onnx_artifact.outputs)
    with captured_output(ctx.verbose), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            graph_module = onnx2torch.convert(model).eval()
        except NotImplementedError as exc:
            found = re.search(r"operation_type='(\w+)', version=(\d+)", str(exc))
            what = f"the ONNX op {found.group(1)} (opset {found.group(2)})" if found else str(exc)[:200]
            raise ConversionFailed(f"onnx2torch has no converter for {what}.",
                                   "Use a torch source for TorchScript, or replace that op.") from None
        except Exception as exc:
            raise ConversionFailed(f"onnx2torch failed: {type(exc).__name__}: {str(exc)[:200]}",
                                   "Run with --verbose.") from None
        # The trace records one run: the user's own inputs (--inputs) where given, since inputs that
        # drive shapes or scales (a Resize's scales) must hold real values; seeded data otherwise.
        given = ctx.examples[0] if ctx.examples else {}
        feeds = given if all(s.name in given for s in inputs) else make_feeds(inputs, seed=ctx.seed)
        args = tuple(torch.from_numpy(feeds[s.name]) for s in inputs)
        try:
            traced = torch.jit.trace(graph_module, args, strict=False)
        except Exception as exc:
            raise ConversionFailed(f"Tracing the onnx2torch module failed: {str(exc).splitlines()[0][:200]}",
                                   "Run with --verbose.") from None
    out = workdir / "model.pt"
    torch.jit.save(traced, str(out))
    # The traced forward takes the ONNX inputs positionally; its argument names are onnx2torch's.
    traced_names = [a.name for a in traced.forward.schema.arguments[1:]]
    io = IOMapping(tuple(TensorLink(t, s.name) for t, s in zip(traced_names, inputs)),
                   tuple(TensorLink(f"output_{i}" if len(outputs) > 1 else "output", s.name)
                         for i, s in enumerate(outputs)))
    return Artifact(path=out, format="torchscript", inputs=tuple(inputs), outputs=tuple(outputs),
                    io=onnx_artifact.io.then(io), path_taken=(*onnx_artifact.path_taken, "torchscript"),
                    layout=onnx_artifact.layout,
                    extra={"converter": "onnx2torch + torch.jit.trace", "lowered_to_opset": MAX_OPSET if lowered else None,
                           "opset_lowering": lowered})


EDGES = (Edge("onnx2torchscript", "onnx", "torchscript", "modelport.converters.onnx2torchscript:convert",
              Requirement("torch", modules=("torch", "onnx", "onnx2torch")), packages=("onnx2torch",)),)
