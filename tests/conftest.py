"""Test-wide setup: no network for the whole session (subprocesses included), fixture models
built by fixtures/make_fixtures.py, and a helper that runs the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUARD_DIR = ROOT / "tests" / "_netguard"
sys.path.insert(0, str(GUARD_DIR))
sys.path.insert(0, str(ROOT / "fixtures"))

import netguard  # noqa: E402

HEAVY = ("torch", "tensorflow", "onnx2tf", "jax", "onnxruntime", "tf2onnx", "keras", "onnx")


def pytest_configure(config: pytest.Config) -> None:
    netguard.install()


@pytest.fixture(autouse=True)
def no_network(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Any attempt to reach the network, here or in a subprocess, fails the test that made it."""
    log = tmp_path_factory.mktemp("net") / "attempts.log"
    monkeypatch.setenv("MODELPORT_TEST_NET_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(GUARD_DIR), os.environ.get("PYTHONPATH", "")]))
    # Node (the TF.js runner, bundles' run.js) has its own half of the guard.
    node_guard = f'--require "{GUARD_DIR / "netguard.js"}"'
    monkeypatch.setenv("NODE_OPTIONS", f'{node_guard} {os.environ.get("NODE_OPTIONS", "")}'.strip())
    # `check` caches results by default: each test starts with an empty cache of its own.
    monkeypatch.setenv("MODELPORT_CHECK_CACHE", str(log.parent / "check-cache"))
    yield
    if log.exists() and log.read_text().strip():
        pytest.fail(f"network access was attempted:\n{log.read_text()}")


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import make_fixtures

    return make_fixtures.build(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tflite_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny TFLite models built with TensorFlow's own converter (float, int8, 16x8, Flex...)."""
    import make_tf_fixtures

    return make_tf_fixtures.build(tmp_path_factory.mktemp("tflite"))


@pytest.fixture(scope="session")
def mobilenet_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A realistic MobileNetV2 with random weights, float and fully int8 TFLite (built once)."""
    import make_tf_fixtures

    return make_tf_fixtures.build_mobilenet(tmp_path_factory.mktemp("mobilenet"))


@pytest.fixture(scope="session")
def entry_file() -> Path:
    return ROOT / "fixtures" / "models" / "tiny_cnn.py"


def interruptible() -> None:
    """A Popen preexec_fn: the child starts with Ctrl-C as a terminal delivers it. A process
    inherits an ignored or blocked SIGINT from its parent (and Python then keeps ignoring it);
    the test runner's worker is not the user's shell, and a test of Ctrl-C must not depend on it."""
    import signal

    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(*args: str, cwd: Path | None = None, python_prelude: str = "",
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `modelport ARGS` as a user would, in a fresh process; returns the completed process."""
    code = f"{python_prelude}\nimport sys\nfrom modelport.cli import main\nsys.argv = ['modelport', *sys.argv[1:]]\nmain()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line an error exit prints; asserts there is no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, f"expected one 'Error:' line, got:\n{result.stderr}"
    return lines[0]


def litert_in_clean_process(tflite: Path, feeds: dict) -> dict:
    """Run a .tflite with LiteRT in a fresh Python that never imported TensorFlow, as a device
    would: the independent re-run that confirms a "passed"."""
    import textwrap

    import numpy as np

    script = textwrap.dedent("""
        import sys, numpy as np
        from ai_edge_litert.interpreter import Interpreter
        assert "tensorflow" not in sys.modules
        runner = Interpreter(model_path=sys.argv[1]).get_signature_runner()
        np.savez(sys.argv[3], **runner(**dict(np.load(sys.argv[2]))))
    """)
    inp, out = tflite.parent / "in.npz", tflite.parent / "outputs.npz"
    np.savez(inp, **feeds)
    subprocess.run([sys.executable, "-c", script, str(tflite), str(inp), str(out)], check=True, timeout=120)
    return dict(np.load(out))
