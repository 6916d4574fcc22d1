"""Nothing half-written: after a failure or Ctrl-C the output directory holds only whole artifacts."""

import signal
import subprocess
import sys
import time

from tests.conftest import ROOT, interruptible


def test_ctrl_c_leaves_only_complete_artifacts(models, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "modelport", "convert", str(models["cnn_pt2"]), "--to", "onnx,tflite", "-o", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    deadline = time.monotonic() + 120
    while not (out / "model.onnx").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # now inside the TFLite conversion
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Interrupted" in stderr and "Traceback" not in stderr
    names = sorted(p.name for p in out.iterdir())
    assert "model.tflite" not in names
    assert not [n for n in names if "partial" in n or n.startswith(".")], names
    import onnx

    onnx.checker.check_model(str(out / "model.onnx"))  # what is there is whole
