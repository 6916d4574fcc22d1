"""Refusals that must come before any conversion work (nothing written), and bench's --input."""

import json

import numpy as np

from tests.conftest import error_line, run_cli


def test_inputs_npz_with_wrong_shape_is_exit_2_before_converting(models, tmp_path):
    np.savez(tmp_path / "bad.npz", image=np.zeros((1, 3, 16, 17), np.float32))
    result = run_cli("convert", str(models["cnn_pt2"]), "--to", "onnx", "--inputs", str(tmp_path / "bad.npz"),
                     "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    line = error_line(result)
    assert "'image'" in line and "(1, 3, 16, 17)" in line and "1x3x16x16" in line
    assert not (tmp_path / "out").exists()


def test_impossible_sample_count_is_exit_2(models, tmp_path):
    result = run_cli("convert", str(models["cnn_pt2"]), "--to", "onnx", "--samples", "100000000",
                     "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "--samples 100000000 would hold" in error_line(result)
    assert not (tmp_path / "out").exists()


def test_bench_takes_input_shapes_and_sidecar_shapes(models, tmp_path):
    script = models["cnn_torchscript"]
    refused = run_cli("bench", str(script), "--runs", "3")
    assert refused.returncode == 2 and "--input image:" in error_line(refused)
    given = run_cli("bench", str(script), "--runs", "3", "--input", "image:1x3x16x16", "--report",
                    str(tmp_path / "b.json"))
    assert given.returncode == 0, given.stderr
    assert json.loads((tmp_path / "b.json").read_text())["results"][0]["inputs"][0]["shape"] == [1, 3, 16, 16]
    converted = run_cli("convert", str(models["cnn_pt2"]), "--to", "torchscript", "--no-validate",
                        "-o", str(tmp_path / "ts"))
    assert converted.returncode == 0, converted.stderr
    from_sidecar = run_cli("bench", str(tmp_path / "ts" / "model.pt"), "--runs", "3")
    assert from_sidecar.returncode == 0, from_sidecar.stderr


def test_config_budget_for_a_target_not_converted_is_exit_2(models, tmp_path):
    (tmp_path / "m.pt2").write_bytes(models["cnn_pt2"].read_bytes())
    (tmp_path / "modelport.toml").write_text("[[models]]\nsource = 'm.pt2'\ntargets = ['onnx']\n[models.budget]\n"
                                             "size_mb = { onnx = 5, tflitee = 1 }\n")
    result = run_cli("check", str(tmp_path / "modelport.toml"))
    assert result.returncode == 2
    assert "modelport.toml:5:" in error_line(result) and "'tflitee'" in error_line(result)


def test_config_tolerance_for_an_unknown_output_is_exit_2(models, tmp_path):
    (tmp_path / "m.pt2").write_bytes(models["cnn_pt2"].read_bytes())
    (tmp_path / "modelport.toml").write_text("[[models]]\nsource = 'm.pt2'\ntargets = ['onnx']\n[models.tolerance]\n"
                                             "probs = { atol = 1e-3 }\n")
    result = run_cli("check", str(tmp_path / "modelport.toml"), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "output 'probs', which the model does not have" in error_line(result)
