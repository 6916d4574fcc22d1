"""torch -> ExecuTorch (.pte with the XNNPACK delegate): torch.export here, then, in the
executorch toolchain, to_edge_transform_and_lower(XnnpackPartitioner) -> to_executorch; with
--quantize int8, ExecuTorch's own flow first (XNNPACKQuantizer + torchao's pt2e, calibrated on
the user's samples). TorchScript cannot be torch.exported: it goes through ONNX nowhere here
(there is no ONNX -> ExecuTorch edge), so it is refused with what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._lazy import captured_output, require
from ..artifact import Artifact, IOMapping, TensorLink
from ..errors import ConversionFailed
from ..formats.base import Edge, Requirement
from ..sources.torch import TorchModel
from ..spec import TensorSpec
from ..validators.data import make_feeds
from .base import EdgeContext

TOOLCHAIN = "executorch"


def convert(source: Artifact, workdir: Path, ctx: EdgeContext) -> Artifact:
    import numpy as np

    from .. import toolchains

    torch = require("torch", purpose="to export PyTorch models")
    model = ctx.source
    assert isinstance(model, TorchModel), "this edge converts a loaded torch source"
    inputs, outputs = list(source.inputs), list(source.outputs)
    program = workdir / "model.pt2"
    with captured_output(ctx.verbose):
        try:
            if isinstance(model.handle, torch.export.ExportedProgram):
                exported = model.handle
            elif isinstance(model.handle, torch.jit.ScriptModule):
                raise ConversionFailed(_NOT_EXPORTABLE, "Convert the nn.Module or a .pt2 (torch.export.save) instead.")
            else:
                feeds = make_feeds(inputs, seed=ctx.seed)
                exported = torch.export.export(model.handle, tuple(torch.from_numpy(feeds[s.name]) for s in inputs))
            torch.export.save(exported, str(program))
        except ConversionFailed:
            raise
        except Exception as exc:  # torch.export's own errors name the construct it cannot trace
            lines = str(exc).strip().splitlines()
            raise ConversionFailed(f"torch.export failed: {lines[0][:300] if lines else type(exc).__name__}",
                                   "Run with --verbose for the full error.") from None
    request = {"model_pt2": str(program), "output": str(workdir / "model.pte"), "quantize": ctx.quantize}
    if ctx.quantize == "int8":
        if not ctx.calibration:
            raise ConversionFailed("int8 quantization needs calibration data.", "Pass --calibration-data FILE.npz.")
        calibration = workdir / "calibration.npz"
        np.savez(calibration, **{f"input_{i}": np.stack([sample[s.name] for sample in ctx.calibration])
                                 for i, s in enumerate(inputs)})
        request["calibration"] = str(calibration)
    ctx.count("executorch.export")
    result = toolchains.run(TOOLCHAIN, "export.py", request, verbose=ctx.verbose).data
    pte = Path(result["pte"])
    if "XnnpackBackend" not in result.get("delegates", []):
        raise ConversionFailed("ExecuTorch delegated nothing to XNNPACK: the program would run on portable "
                               "kernels only.", "Run with --verbose for the export log.")
    produced_in = tuple(TensorSpec(f"input_{i}", s.shape, s.dtype) for i, s in enumerate(inputs))
    produced_out = tuple(TensorSpec(f"output_{i}", s.shape, s.dtype) for i, s in enumerate(outputs))
    io = IOMapping(tuple(TensorLink(p.name, s.name) for p, s in zip(produced_in, inputs)),
                   tuple(TensorLink(p.name, s.name) for p, s in zip(produced_out, outputs)))
    versions = result.get("versions", {})
    return Artifact(path=pte, format="executorch", inputs=produced_in, outputs=produced_out,
                    io=source.io.then(io), path_taken=(*source.path_taken, "executorch"), layout=source.layout,
                    quantization=ctx.quantize,
                    extra={"converter": f"executorch {versions.get('executorch', '?')} (XNNPACK, toolchain "
                                        f"{TOOLCHAIN})", "delegates": result.get("delegates", []),
                           "ops_outside_delegates": result.get("ops_outside_delegates", {})})


_NOT_EXPORTABLE = "ExecuTorch needs a torch.export program; a TorchScript file cannot be exported."


def refuses(model: Any) -> str | None:
    """TorchScript (torch.jit.ScriptModule, told by its class's module: no torch import here)."""
    handle = getattr(model, "handle", None)
    return _NOT_EXPORTABLE if type(handle).__module__.startswith("torch.jit") else None


EDGES = (Edge("torch2executorch", "torch", "executorch", "modelport.converters.torch2executorch:convert",
              Requirement("executorch", modules=("torch",), toolchain=TOOLCHAIN), precisions=("none", "int8"),
              refuses="modelport.converters.torch2executorch:refuses"),)
