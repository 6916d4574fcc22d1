"""Serialize results: the `modelport.report/1` JSON document (see DESIGN.md; never rename a field)."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..api import ConvertResult, TargetResult

SCHEMA = "modelport.report/1"
_PACKAGES = ("torch", "onnx", "onnxruntime", "onnx2tf", "tensorflow", "tf2onnx", "ai-edge-litert",
             "tflite-runtime", "tensorflowjs", "onnx2torch", "jax", "keras", "numpy")


def _version() -> str:
    try:
        return metadata.version("modelport")
    except metadata.PackageNotFoundError:
        from .. import __version__

        return __version__


def environment(threads: int) -> dict:
    packages = {}
    for name in _PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": packages,
            "threads": threads, "cpu_count": os.cpu_count()}


def target_json(item: TargetResult) -> dict:
    artifact = item.artifact
    return {
        "target": item.target, "status": item.status, "error": item.error,
        "path": str(item.path) if item.path else None, "size_bytes": item.size_bytes, "sha256": item.sha256,
        "conversion": {"path": list(artifact.path_taken) if artifact else list(item.plan),
                       "seconds": round(item.seconds, 4),
                       "layout": artifact.layout if artifact else None,
                       "quantization": artifact.quantization if artifact else None,
                       "io": artifact.io.to_json() if artifact else None,
                       "converter": {k: v for k, v in artifact.extra.items() if k != "source"} if artifact else None},
        "numeric": item.numeric.to_json() if item.numeric else None,
        "latency_ms": item.latency.to_json() if item.latency else None,
        "reference_latency_ms": item.reference_latency.to_json() if item.reference_latency else None,
        "budgets": item.budgets,
    }


def report_json(result: ConvertResult, threads: int) -> dict:
    return {"schema": SCHEMA, "modelport_version": _version(), "passed": result.passed,
            "exit_code": result.exit_code, "source": result.source, "environment": environment(threads),
            "converter_runs": result.converter_runs,
            "targets": [target_json(t) for t in result.targets]}


def dumps(document: dict) -> str:
    def default(value):  # numpy scalars and paths
        return value.item() if hasattr(value, "item") else str(value)

    return json.dumps(document, indent=2, default=default, allow_nan=False) + "\n"
