"""Lazy imports of heavy backends, quiet logging of noisy ones.

Nothing here imports a backend at module import time: `modelport --help` must stay light.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

from .errors import BackendMissing

# Which extra of `pip install modelport[...]` brings each backend module.
EXTRA_FOR_MODULE: dict[str, str] = {
    "torch": "torch",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "torch",
    "onnx2tf": "tf",
    "tensorflow": "tf",
    "tf_keras": "tf",
    "tf2onnx": "tf",
    "keras": "tf",
    "ai_edge_litert": "tflite",
    "tensorflowjs": "tfjs",
    "jax": "jax",
    "onnx2torch": "torch",
}


def quiet_env() -> None:
    """Environment that keeps TensorFlow and absl from flooding stderr; must run before TF loads."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    # No GPU is used; hiding CUDA also silences TF's cuInit error on machines without one.
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")


def require(module: str, extra: str | None = None, purpose: str = "") -> ModuleType:
    """Import `module` or raise BackendMissing naming the extra that installs it."""
    if module.split(".")[0] in {"tensorflow", "onnx2tf", "tf2onnx", "tf_keras", "keras", "tensorflowjs"}:
        quiet_env()
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = extra or EXTRA_FOR_MODULE.get(top, "all")
        why = f" (needed {purpose})" if purpose else ""
        raise BackendMissing(
            f"The Python package '{top}' is not installed{why}.",
            f"Install it with: pip install 'modelport[{extra}]'",
        ) from exc


@contextlib.contextmanager
def captured_output(verbose: bool) -> Iterator[io.StringIO]:
    """Send everything written to fds 1 and 2 (C++ logs included) to a buffer unless verbose.

    The buffer's text is available after the block, so a converter error can quote the last lines.
    """
    buffer = io.StringIO()
    if verbose:
        yield buffer
        return
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(1), os.dup(2)
        old_streams = sys.stdout, sys.stderr
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            redirected = io.TextIOWrapper(os.fdopen(os.dup(sink.fileno()), "wb"), write_through=True)
            sys.stdout = sys.stderr = redirected
            yield buffer
        finally:
            sys.stdout, sys.stderr = old_streams
            redirected.close()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            buffer.write(sink.read().decode("utf-8", "replace"))


def require_installed(module: str, extra: str | None = None, purpose: str = "") -> None:
    """Check that `module` is installed without importing it (for packages used in a child process)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        why = f" (needed {purpose})" if purpose else ""
        raise BackendMissing(f"The Python package '{module}' is not installed{why}.",
                             f"Install it with: pip install 'modelport[{extra or EXTRA_FOR_MODULE.get(module, 'all')}]'")
