"""The ExecuTorch target: torch sources to a .pte with the XNNPACK delegate, in the executorch
toolchain (built by `make install` where its Python exists), validated by ExecuTorch's runtime."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from modelport.toolchains import find_python, get, state
from tests.conftest import ROOT, error_line, run_cli

EXAMPLE = ROOT / "examples" / "tiny_classifier.pt2"
needs_toolchain_python = pytest.mark.skipif(find_python(get("executorch").python) is None,
                                            reason="the executorch toolchain's Python is not on this machine")

# Runs the .pte with ExecuTorch's public Python API, in its toolchain, apart from modelport.
INDEPENDENT = """
import sys, numpy as np, torch
from executorch.runtime import Runtime
method = Runtime.get().load_program(sys.argv[1]).load_method("forward")
out = method.execute([torch.from_numpy(np.load(sys.argv[2]))])
np.save(sys.argv[3], out[0].numpy())
"""


def _built() -> None:
    found = state(get("executorch"))
    assert found.installed, f"the executorch toolchain is not built ({found.problem}): `make install` builds it"


@needs_toolchain_python
def test_pt2_to_executorch_passes_and_executorchs_own_runtime_agrees(tmp_path):
    _built()
    out = tmp_path / "out"
    result = run_cli("convert", str(EXAMPLE), "--to", "executorch", "-o", str(out), "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    target = json.loads((tmp_path / "r.json").read_text())["targets"][0]
    assert target["status"] == "passed" and target["conversion"]["path"] == ["pt2", "executorch"]
    assert target["conversion"]["converter"]["delegates"] == ["XnnpackBackend"]
    assert target["latency_ms"]["p50"] > 0  # timed by the runtime's own server

    # An independent re-run: ExecuTorch's public runtime API against torch on the same image.
    import torch

    image = np.random.default_rng(11).uniform(0, 1, (1, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    chain = get("executorch")
    ran = subprocess.run([str(chain.interpreter), "-I", "-c", INDEPENDENT, str(out / "model.pte"),
                          str(tmp_path / "image.npy"), str(tmp_path / "out.npy")], capture_output=True, text=True,
                         timeout=300, stdin=subprocess.DEVNULL)
    assert ran.returncode == 0, ran.stderr[-2000:]
    expected = torch.export.load(str(EXAMPLE)).module()(torch.from_numpy(image)).detach().numpy()
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-4, rtol=1e-3)

    described = run_cli("inspect", str(out / "model.pte"), "--json")
    assert described.returncode == 0, described.stderr
    facts = json.loads(described.stdout)
    assert facts["format"] == "executorch" and facts["methods"] == ["forward"]
    assert facts["delegates"] == ["XnnpackBackend"]
    assert facts["inputs"] == [{"name": "input_0", "shape": [1, 3, 32, 32], "dtype": "float32"}]


@needs_toolchain_python
def test_int8_goes_through_executorchs_own_quantizer_and_is_judged_on_held_out_samples(tmp_path):
    _built()
    np.savez(tmp_path / "calib.npz", image=np.random.default_rng(0).uniform(0, 1, (20, 1, 3, 32, 32)).astype(np.float32))
    result = run_cli("convert", str(EXAMPLE), "--to", "executorch", "--quantize", "int8", "--calibration-data",
                     str(tmp_path / "calib.npz"), "-o", str(tmp_path / "out"), "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    target = report["targets"][0]
    assert target["status"] == "passed" and target["conversion"]["quantization"] == "int8"
    assert report["calibration"]["held_out_samples"] == 4 and target["numeric"]["samples"] == 4
    assert target["numeric"]["outputs"][0]["cosine"] > 0.999


def test_executorch_refusals(models, tmp_path, monkeypatch):
    # TorchScript cannot be torch.exported: a conversion failure saying what to convert instead.
    scripted = run_cli("convert", str(models["cnn_torchscript"]), "--to", "executorch", "--input", "image:1x3x16x16",
                       "-o", str(tmp_path / "ts"))
    if state(get("executorch")).installed:
        assert scripted.returncode == 3, scripted.stderr
        assert "a TorchScript file cannot be exported" in error_line(scripted)
    # Without the toolchain: exit 4 naming the install command; nothing is written.
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "no-toolchains"))
    missing = run_cli("convert", str(EXAMPLE), "--to", "executorch", "-o", str(tmp_path / "out"))
    assert missing.returncode == 4, missing.stderr
    assert "modelport toolchain install executorch" in error_line(missing)
    assert not (tmp_path / "out" / "model.pte").exists()
    # From a non-torch source there is no path to it.
    onnx = run_cli("convert", str(models["mlp_onnx"]), "--to", "executorch", "-o", str(tmp_path / "o2"))
    assert onnx.returncode == 2 and "No conversion path from onnx to executorch" in error_line(onnx)
