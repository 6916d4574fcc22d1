"""ExecuTorch target: a .pte run by ExecuTorch's Python runtime in the executorch toolchain.
Its inputs and outputs are positional: input_0.., output_0.. (the artifact's I/O mapping names
the source's tensors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..toolchains import run
from ..toolchains.runner import ToolchainRunner

TOOLCHAIN = "executorch"


class ExecuTorchRunner(ToolchainRunner):
    toolchain = TOOLCHAIN
    server = "serve_pte.py"


def describe(source: str) -> dict[str, Any]:
    """What inspect shows: methods with their inputs and outputs, and the delegates, read by the
    runtime without running the program."""
    from ..artifact import sha256_of, size_of

    found = run(TOOLCHAIN, "serve_pte.py", {"pte": str(Path(source).resolve())}).data
    forward = found["methods"].get("forward", next(iter(found["methods"].values()), {}))
    return {"path": source, "format": "executorch", "framework": "executorch",
            "evidence": "flatbuffer with an ExecuTorch identifier (ET..)", "size_bytes": size_of(Path(source)),
            "sha256": sha256_of(Path(source)), "runtime": "executorch (toolchain)",
            "inputs": [{"name": f"input_{i}", "shape": t["sizes"], "dtype": t["dtype"]}
                       for i, t in enumerate(forward.get("inputs", []))],
            "outputs": [{"name": f"output_{i}", "shape": t["sizes"], "dtype": t["dtype"]}
                        for i, t in enumerate(forward.get("outputs", []))],
            "methods": sorted(found["methods"]), "delegates": sorted(set(found["delegates"])),
            "ops_outside_delegates": forward.get("ops_outside_delegates", [])}
