"""`modelport doctor`: which backends are installed here, and so which sources and targets work.

Versions come from package metadata and `find_spec`, so the check imports no framework."""

from __future__ import annotations

import importlib.util
import platform
import shutil
import subprocess
from importlib import metadata
from typing import Any

# Python packages and the import name that proves each is there.
BACKENDS = {
    "torch": "torch", "onnx": "onnx", "onnxruntime": "onnxruntime", "onnxscript": "onnxscript",
    "tensorflow": "tensorflow", "keras": "keras", "tf_keras": "tf_keras", "tf2onnx": "tf2onnx",
    "onnx2tf": "onnx2tf", "onnxsim": "onnxsim", "ai-edge-litert": "ai_edge_litert",
    "tflite-runtime": "tflite_runtime", "tensorflowjs": "tensorflowjs", "onnx2torch": "onnx2torch",
    "jax": "jax", "jaxlib": "jaxlib", "matplotlib": "matplotlib",
}

SOURCES = {
    "torch (.pt2, TorchScript, file.py:name)": ["torch"],
    "onnx": ["onnx", "onnxruntime"],
    "tensorflow SavedModel": ["tensorflow", "tf2onnx"],
    "keras (.keras, .h5)": ["tensorflow", "keras", "tf_keras", "tf2onnx"],
    "jax (file.py:name)": ["jax", "tensorflow", "tf2onnx"],
    "tflite": ["tf2onnx", "litert"],
}
TARGETS = {
    "onnx": ["onnx", "onnxruntime"],
    "tflite": ["onnx2tf", "tensorflow", "litert"],
    "torchscript": ["torch", "onnx2torch"],
    "savedmodel": ["onnx2tf", "tensorflow"],
    "tfjs": ["tensorflowjs", "tensorflow", "node", "tfjs"],
}


def _installed(name: str) -> tuple[bool, str | None]:
    module = BACKENDS[name]
    if importlib.util.find_spec(module) is None:
        return False, None
    try:
        return True, metadata.version(name)
    except metadata.PackageNotFoundError:
        return True, "?"


def _node() -> tuple[bool, str | None]:
    node = shutil.which("node")
    if not node:
        return False, None
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10)
        return True, out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return False, None


def diagnose() -> dict[str, Any]:
    from .targets.tfjs import install_command, tfjs_version

    backends = {}
    for name in BACKENDS:
        ok, version = _installed(name)
        backends[name] = {"installed": ok, "version": version}
    node_ok, node_version = _node()
    tfjs = tfjs_version()
    backends["node"] = {"installed": node_ok, "version": node_version}
    backends["tfjs"] = {"installed": tfjs is not None, "version": tfjs,
                        "install": None if tfjs else install_command()}
    have = {name for name, info in backends.items() if info["installed"]}
    if backends["ai-edge-litert"]["installed"] or backends["tflite-runtime"]["installed"]:
        have.add("litert")

    def verdict(needs: list[str]) -> dict[str, Any]:
        missing = [n for n in needs if n not in have]
        if "keras" in missing and "tf_keras" in have:  # either Keras serves .h5; .keras needs Keras 3
            missing.remove("keras")
        if "tf_keras" in missing and "keras" in have:
            missing.remove("tf_keras")
        return {"works": not missing, "missing": missing}

    return {"python": platform.python_version(), "platform": platform.platform(), "backends": backends,
            "sources": {name: verdict(needs) for name, needs in SOURCES.items()},
            "targets": {name: verdict(needs) for name, needs in TARGETS.items()}}
