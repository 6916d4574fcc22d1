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
from collections.abc import Iterator, MutableMapping
from types import ModuleType
from typing import Any, cast

from .errors import BackendMissing

# TensorFlow, absl and jaxlib read these once, when they load: without them they flood stderr and
# probe for CUDA (an error line on every machine without a GPU).
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "ABSL_MIN_LOG_LEVEL": "3",
             "CUDA_VISIBLE_DEVICES": "-1"}
_QUIET_MODULES = {"tensorflow", "onnx2tf", "tf2onnx", "tf_keras", "keras", "tensorflowjs", "jax", "jaxlib"}


# The QUIET_ENV variables as they were when `require` first imported TensorFlow (empty: it did not).
_TF_IMPORT_ENV: dict[str, str | None] = {}


def tensorflow_loaded_with(key: str, value: str) -> bool:
    """Whether this process's TensorFlow was imported (by `require`) with `key` set to `value`:
    TF reads e.g. TF_ENABLE_ONEDNN_OPTS once, at import, so a later change does not count."""
    return "tensorflow" in sys.modules and bool(_TF_IMPORT_ENV) and _TF_IMPORT_ENV.get(key) == value


@contextlib.contextmanager
def scoped_env(values: dict[str, str], override: bool = False) -> Iterator[None]:
    """Set environment variables for the block only (without override, only those not set), then
    put the environment back exactly: a library call must leave the process as it found it."""
    saved = {key: os.environ.get(key) for key in values}
    for key, value in values.items():
        if override or key not in os.environ:
            os.environ[key] = value
    try:
        yield
    finally:
        restore_entries(os.environ, saved)


@contextlib.contextmanager
def scoped_cwd(folder: os.PathLike[str] | str) -> Iterator[None]:
    """Run the block in `folder` (a library that writes fixed names into the cwd), then go back.
    Only for the model worker's one running call: the cwd is process-wide."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def restore_entries(table: MutableMapping[str, Any], saved: dict[str, Any]) -> None:
    """Put each key of `table` (os.environ, sys.modules) back as `saved` has it; None: absent."""
    for key, previous in saved.items():
        if previous is None:
            table.pop(key, None)
        else:
            table[key] = previous


@contextlib.contextmanager
def preserved_process_state() -> Iterator[None]:
    """Put back what the frameworks change in the process when they load or run: environment
    variables (onnx2tf sets TF_USE_LEGACY_KERAS, which would turn the next Keras model into a
    tf_keras one), warning filters, sys.path, and torch's thread counts. Every public API call
    runs inside this, so one process can convert model after model without one leaking into the next."""
    import warnings

    environ = dict(os.environ)
    filters = list(warnings.filters)
    path = list(sys.path)
    torch = sys.modules.get("torch")
    threads = (torch.get_num_threads(), torch.get_num_interop_threads()) if torch is not None else None
    try:
        yield
    finally:
        if dict(os.environ) != environ:
            restore_entries(os.environ, {**dict.fromkeys(os.environ), **environ})
        cast(list, warnings.filters)[:] = filters  # in place: the C half of warnings holds this list
        warnings._filters_mutated()  # type: ignore[attr-defined]  # (what warnings.resetwarnings calls)
        sys.path[:] = path + [entry for entry in sys.path if entry not in path and _inside_installed(entry, path)]
        torch = sys.modules.get("torch")
        if torch is not None and threads is not None and torch.get_num_threads() != threads[0]:
            torch.set_num_threads(threads[0])


def _inside_installed(entry: str, path: list[str]) -> bool:
    """An entry a package appended for its own submodules (onnxruntime.transformers adds its folder
    once, at import): it stays with the package, which stays imported. A user's folder does not."""
    roots = [p for p in path if os.path.basename(p.rstrip(os.sep)) in ("site-packages", "dist-packages")]
    return any(entry.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def require(module: str, extra: str = "all", purpose: str = "") -> ModuleType:
    """Import `module` or raise BackendMissing naming the extra that installs it.

    Callers check a format's or edge's declared requirement first (which names the right extra);
    this is the last line, for a module that vanished in between."""
    try:
        if module.split(".")[0] in _QUIET_MODULES:
            with scoped_env(QUIET_ENV):
                first = "tensorflow" not in sys.modules
                imported = importlib.import_module(module)
                if first and "tensorflow" in sys.modules:  # what TensorFlow read, once, as it loaded
                    _TF_IMPORT_ENV.update({key: os.environ.get(key) for key in QUIET_ENV})
                return imported
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
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


def require_installed(module: str, extra: str = "all", purpose: str = "") -> None:
    """Check that `module` is installed without importing it (for packages used in a child process)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        why = f" (needed {purpose})" if purpose else ""
        raise BackendMissing(f"The Python package '{module}' is not installed{why}.",
                             f"Install it with: pip install 'modelport[{extra}]'")
