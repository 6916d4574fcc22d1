"""TorchScript archives: a target (torch.jit.load on the CPU), and a torch source."""

from __future__ import annotations

from ..validators.compare import Tolerance
from .base import Detected, FormatSpec, Probe, Requirement, SourceSpec, TargetSpec


def detect(probe: Probe) -> Detected | None:
    if probe.is_zip:
        tails = probe.zip_tails()
        if any(t.startswith("code/") for t in tails) or "constants.pkl" in tails:
            return Detected("torchscript", "torchscript", "zip with code/ and constants.pkl (TorchScript archive)")
    return None


FORMAT = FormatSpec(
    name="torchscript", description="TorchScript archive (torch.jit.save)",
    requirement=Requirement("torch", modules=("torch",)),
    detect="modelport.formats.torchscript:detect",
    # Read as a source it is a torch model: it converts from the torch node (torch.onnx, trace).
    source=SourceSpec(loader="modelport.sources.torch:load", framework="torch", node="torch"),
    target=TargetSpec(runner="modelport.targets.torchscript:TorchScriptRunner", file_name="model.pt",
                      tolerances={"none": Tolerance(1e-4, 1e-3)}),
    packages=("torch",),
)
