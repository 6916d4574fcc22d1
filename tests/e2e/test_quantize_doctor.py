"""quantize-doctor on a model built with one quantization-hostile layer: an activation with an
outlier channel (x300), rebalanced by the next conv, so the float model is fine and a per-tensor
int8 scale for that activation crushes its other channels."""

from __future__ import annotations

import json

import numpy as np

from tests.conftest import ROOT, error_line, run_cli

MODEL = f"{ROOT / 'fixtures' / 'models' / 'outlier_channel.py'}:build"


def test_the_doctor_names_the_outlier_layer_and_keeping_it_float_raises_the_cosine(tmp_path):
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).uniform(0, 1, (20, 1, 3, 16, 16)).astype(np.float32))
    result = run_cli("quantize-doctor", MODEL, "--calibration-data", str(tmp_path / "calib.npz"), "--keep-float", "1",
                     "--json", "-o", str(tmp_path / "chosen.onnx"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    worst = report["layers"][0]
    assert worst["op_type"] == "Mul" and worst["lost_db"] > 10, report["layers"]
    plain, kept = report["choices"]
    assert kept["kept_float"] == [worst["node"]]
    assert kept["cosine"] > plain["cosine"] and kept["snr_db"] > plain["snr_db"] + 10, report["choices"]
    assert report["calibration"]["held_out_samples"] == 4 and report["samples"] == 4
    assert (tmp_path / "chosen.onnx").is_file() and report["written"]

    table = run_cli("quantize-doctor", MODEL, "--calibration-data", str(tmp_path / "calib.npz"))
    assert table.returncode == 0 and "int8 loss per layer" in table.stdout and "Mul" in table.stdout


def test_doctor_refusals(tmp_path):
    np.savez(tmp_path / "calib.npz", x=np.zeros((2, 1, 3, 16, 16), np.float32))
    bad = run_cli("quantize-doctor", MODEL, "--calibration-data", str(tmp_path / "calib.npz"), "--keep-float", "many")
    assert bad.returncode == 2 and "--keep-float 'many'" in error_line(bad)
    missing = run_cli("quantize-doctor", MODEL)
    assert missing.returncode == 2 and "--calibration-data" in missing.stderr
