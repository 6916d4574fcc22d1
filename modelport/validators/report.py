"""Serialize results: the `modelport.report/1` JSON document (see DESIGN.md; never rename a field)."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from typing import Any

from .. import registry
from ..results import ConvertResult, TargetResult

SCHEMA = "modelport.report/1"
# x86 instruction-set extensions int8 kernels depend on (onnxruntime saturates without VNNI).
_CPU_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "asimd",
              "asimddp", "i8mm")


def _version() -> str:
    try:
        return metadata.version("modelport")
    except metadata.PackageNotFoundError:
        from .._version import __version__

        return __version__


def cpu_features() -> dict[str, Any]:
    """The CPU model and the instruction-set extensions int8 results can depend on (Linux)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features"):
                    flags = set(value.split())
                    break
    except OSError:
        pass
    present = [f for f in _CPU_FLAGS if f in flags]
    return {"model": model, "machine": platform.machine(), "features": present,
            "vnni": any(f in flags for f in ("avx512_vnni", "avx_vnni", "asimddp"))}


def environment(threads: int) -> dict[str, Any]:
    packages = {}
    for name in registry.default().packages():
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": packages,
            "threads": threads, "cpu_count": os.cpu_count(), "cpu": cpu_features()}


def target_json(item: TargetResult) -> dict[str, Any]:
    artifact = item.artifact
    return {
        "target": item.target, "status": item.status, "error": item.error, "runtime": item.runtime,
        "path": str(item.path) if item.path else None, "size_bytes": item.size_bytes, "sha256": item.sha256,
        "conversion": {"path": list(artifact.path_taken) if artifact else list(item.plan),
                       "seconds": round(item.seconds, 4),
                       "layout": artifact.layout if artifact else None,
                       "quantization": artifact.quantization if artifact else None,
                       "io": artifact.io.to_json() if artifact else None,
                       "converter": ({k: v for k, v in artifact.extra.items() if k not in ("float_artifact", "tensors")}
                                     if artifact else None)},  # (that scratch path is gone by now)
        "numeric": item.numeric.to_json() if item.numeric else None,
        "latency_ms": item.latency.to_json() if item.latency else None,
        "reference_latency_ms": item.reference_latency.to_json() if item.reference_latency else None,
        "budgets": item.budgets,
        "notes": item.notes,
        "drift": drift_json(item),
    }


def drift_json(item: TargetResult) -> dict[str, Any] | None:
    """A quantized target against the same model in float32: size, and latency on the same runtime
    (the per-output numbers against the float source are in `numeric`)."""
    if item.artifact is None or item.artifact.quantization in ("none", None):
        return None
    drift: dict[str, Any] = {"precision": item.artifact.quantization, "fp32_size_bytes": item.float_size_bytes,
                             "size_reduction": None, "fp32_latency_ms": None, "speedup": None}
    if item.float_size_bytes and item.size_bytes:
        drift["size_reduction"] = round(1 - item.size_bytes / item.float_size_bytes, 4)
    if item.float_latency is not None:
        drift["fp32_latency_ms"] = item.float_latency.to_json()
        if item.latency is not None and item.latency.p50:
            drift["speedup"] = round(item.float_latency.p50 / item.latency.p50, 3)
    return drift


def report_json(result: ConvertResult, threads: int) -> dict[str, Any]:
    return {"schema": SCHEMA, "modelport_version": _version(), "passed": result.passed,
            "exit_code": result.exit_code, "source": result.source, "environment": environment(threads),
            "converter_runs": result.converter_runs, "calibration": result.calibration,
            "targets": [target_json(t) for t in result.targets]}


def dumps(document: dict[str, Any]) -> str:
    def default(value: Any) -> Any:  # numpy scalars and paths
        return value.item() if hasattr(value, "item") else str(value)

    return json.dumps(document, indent=2, default=default, allow_nan=False) + "\n"
