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


def test_the_tflite_doctor_names_the_outlier_conv_and_its_float_fallback_runs_on_litert(tmp_path):
    """TFLite's quantizer gives the Mul's input (the first conv's output) the Mul's own scale, which
    the outlier channel sets: the conv's output is where the damage shows, and keeping it float
    must keep the Mul tied to it, and the conv reading the Mul, in float too."""
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).uniform(0, 1, (20, 1, 3, 16, 16)).astype(np.float32))
    chosen = tmp_path / "chosen.tflite"
    result = run_cli("quantize-doctor", MODEL, "--to", "tflite", "--calibration-data", str(tmp_path / "calib.npz"),
                     "--keep-float", "1", "--min-cosine", "0.99999", "--json", "-o", str(chosen))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["target"] == "tflite" and report["samples"] == 4
    worst, second = report["layers"][:2]
    # The first conv (fused with its ReLU) makes the outlier tensor: its worst channel keeps no signal.
    assert worst["op_type"] == "CONV_2D" and "tf.nn.relu/Relu" in worst["node"], report["layers"]
    assert worst["snr_db"] < 3 and second["snr_db"] > worst["snr_db"] + 3, report["layers"]
    plain, kept = report["choices"]
    assert kept["kept_float"] == [worst["node"]], kept
    assert [n.split(";")[0] for n in kept["also_float"]] == ["model_2/tf.math.multiply_2/Mul",
                                                              "model_2/tf.nn.relu_1/Relu"], kept
    assert kept["cosine"] > plain["cosine"] and kept["snr_db"] > plain["snr_db"] + 10, report["choices"]
    assert report["chosen"] == 1 and report["written"] == str(chosen)

    # The written model, re-run on LiteRT by itself: int8 weights inside, float I/O, and as close
    # to the float model as the doctor said (its source outputs, computed here with torch).
    import torch
    from ai_edge_litert.interpreter import Interpreter

    from fixtures.models.outlier_channel import build

    interpreter = Interpreter(model_path=str(chosen))
    runner = interpreter.get_signature_runner()
    tensors = interpreter.get_tensor_details()
    assert any(t["dtype"] == np.int8 for t in tensors), "no int8 tensor: the layers were not quantized"
    net, _ = build()
    samples = np.load(tmp_path / "calib.npz")["x"][16:]
    produced = np.concatenate([next(iter(runner(x=s.transpose(0, 2, 3, 1)).values())) for s in samples]).ravel()
    with torch.no_grad():
        expected = np.concatenate([net(torch.from_numpy(s)).numpy() for s in samples]).ravel()
    cosine = float(produced @ expected / np.linalg.norm(produced) / np.linalg.norm(expected))
    assert cosine > 0.9999, cosine


def test_doctor_refusals(tmp_path):
    np.savez(tmp_path / "calib.npz", x=np.zeros((2, 1, 3, 16, 16), np.float32))
    bad = run_cli("quantize-doctor", MODEL, "--calibration-data", str(tmp_path / "calib.npz"), "--keep-float", "many")
    assert bad.returncode == 2 and "--keep-float 'many'" in error_line(bad)
    missing = run_cli("quantize-doctor", MODEL)
    assert missing.returncode == 2 and "--calibration-data" in missing.stderr
    other = run_cli("quantize-doctor", MODEL, "--to", "torchscript", "--calibration-data", str(tmp_path / "calib.npz"))
    assert other.returncode == 2 and "no layer debugger for --to torchscript" in error_line(other)
    assert "onnx, tflite" in other.stderr
