"""ExecuTorch programs (.pte, PyTorch's on-device runtime), lowered to the XNNPACK delegate: a
target made from torch sources, run and described by ExecuTorch's own Python runtime in the
executorch toolchain (torch 2.13 CPU with numpy 2 and torchao: see docs/toolchains.md)."""

from __future__ import annotations

from .base import Detected, FormatSpec, Probe, Requirement, TargetSpec
from .onnx import QUANTIZED_TOLERANCES


def detect(probe: Probe) -> Detected | None:
    if not probe.is_dir and len(probe.head) >= 8 and probe.head[4:6] == b"ET":
        return Detected("executorch", "executorch", f"flatbuffer with identifier {probe.head[4:8].decode('ascii', 'replace')}")
    return None


FORMAT = FormatSpec(
    name="executorch", description="ExecuTorch program (.pte, XNNPACK delegate)",
    requirement=Requirement("executorch", toolchain="executorch"),
    detect="modelport.formats.executorch:detect",
    describe="modelport.targets.executorch:describe",
    target=TargetSpec(runner="modelport.targets.executorch:ExecuTorchRunner", file_name="model.pte",
                      tolerances=QUANTIZED_TOLERANCES, precisions=("none", "int8")),
)
