"""--quantize fp16 | dynamic | int8 for TFLite, through onnx2tf (torch) and TFLiteConverter (Keras)."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from modelport import api
from tests.conftest import ROOT, error_line, run_cli

MODELS = ROOT / "fixtures" / "models"


def _input_dtype_in_clean_process(tflite):
    script = textwrap.dedent("""
        import sys
        from ai_edge_litert.interpreter import Interpreter
        detail = Interpreter(model_path=sys.argv[1]).get_input_details()[0]
        print(detail["dtype"].__name__)
    """)
    return subprocess.run([sys.executable, "-c", script, str(tflite)], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.parametrize("level", ["fp16", "dynamic"])
def test_torch_fp16_and_dynamic(models, tmp_path, level):
    result = api.convert(str(models["classifier_pt2"]), api.ConvertOptions(targets=("tflite",), quantize=level,
                                                                          output_dir=tmp_path))
    item = result.targets[0]
    assert item.status == "passed", item.error
    assert item.artifact.quantization == level
    assert item.numeric.atol > 1e-4  # judged with the tolerance of its precision, not fp32's


def test_torch_int8_with_calibration_data(models, tmp_path):
    calibration = np.random.default_rng(0).uniform(-1, 1, (16, 1, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", image=calibration)
    report = tmp_path / "r.json"
    result = run_cli("convert", str(models["classifier_pt2"]), "--to", "tflite", "--quantize", "int8",
                     "--calibration-data", str(tmp_path / "calib.npz"), "-o", str(tmp_path / "out"),
                     "--report", str(report))
    assert result.returncode == 0, result.stderr
    document = json.loads(report.read_text())
    target = document["targets"][0]
    assert target["conversion"]["quantization"] == "int8" and target["status"] == "passed"
    # Judged on the samples the calibration did not see: a fifth of the 16.
    assert document["calibration"] == {"origin": "data", "calibration_samples": 13, "held_out_samples": 3,
                                       "description": "16 samples from calib.npz (13 calibrate, 3 held out)"}
    assert target["numeric"]["samples"] == 3
    assert _input_dtype_in_clean_process(tmp_path / "out" / "model.tflite") == "int8"  # full int8 I/O


def test_int8_without_calibration_data_is_exit_2_before_converting(models, tmp_path):
    result = run_cli("convert", str(models["classifier_pt2"]), "--to", "tflite", "--quantize", "int8",
                     "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    line = error_line(result)
    assert "--quantize int8 needs --calibration-data PATH" in line and "--calibration-data random" in line
    assert not (tmp_path / "out").exists()


def test_a_precision_a_target_cannot_have_is_exit_2(models, tmp_path):
    result = run_cli("convert", str(models["classifier_pt2"]), "--to", "torchscript", "--quantize", "fp16")
    assert result.returncode == 2
    assert "no --quantize fp16 path to torchscript" in error_line(result)


def test_keras_int8_through_tfliteconverter_on_random_data_is_unverified(tmp_path):
    result = api.convert(f"{MODELS / 'tiny_keras.py'}:build", api.ConvertOptions(
        targets=("tflite",), quantize="int8", calibration_data="random", output_dir=tmp_path))
    item = result.targets[0]
    assert item.status == "unverified", item.error  # numbers matched, on noise: never a plain "passed"
    assert "seeded random inputs" in item.error and result.exit_code == 0
    assert result.calibration["origin"] == "random"
    assert item.artifact.path_taken == ("keras", "savedmodel", "tflite")
    assert _input_dtype_in_clean_process(item.path) == "int8"


def test_calibration_data_with_wrong_names_is_exit_2(models, tmp_path):
    np.savez(tmp_path / "calib.npz", pixels=np.zeros((4, 1, 3, 32, 32), np.float32))
    result = run_cli("convert", str(models["classifier_pt2"]), "--to", "tflite", "--quantize", "int8",
                     "--calibration-data", str(tmp_path / "calib.npz"))
    assert result.returncode == 2
    line = error_line(result)
    assert "--calibration-data" in line and "the model's inputs are image" in line


def _independent_ort_run(model, feeds):
    """The artifact re-run by onnxruntime with its defaults, in a fresh process (as a user would)."""
    script = textwrap.dedent("""
        import sys, numpy as np, onnxruntime as ort
        data = np.load(sys.argv[2])
        session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
        out = session.run(None, {i.name: data[i.name] for i in session.get_inputs()})[0]
        np.save(sys.argv[3], out)
    """)
    folder = model.parent
    np.savez(folder / "feeds.npz", **feeds)
    subprocess.run([sys.executable, "-c", script, str(model), str(folder / "feeds.npz"), str(folder / "out.npy")],
                   check=True, capture_output=True)
    return np.load(folder / "out.npy")


def test_onnx_and_ort_int8_from_real_calibration_data(models, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", image=rng.uniform(-1, 1, (20, 1, 3, 32, 32)).astype(np.float32))
    report = tmp_path / "r.json"
    result = run_cli("convert", str(models["classifier_pt2"]), "--to", "onnx,ort", "--quantize", "int8",
                     "--calibration-data", str(tmp_path / "calib.npz"), "-o", str(tmp_path / "out"),
                     "--report", str(report))
    assert result.returncode == 0, result.stderr
    document = json.loads(report.read_text())
    for target in document["targets"]:
        assert target["status"] == "passed" and target["conversion"]["quantization"] == "int8", target
        assert target["conversion"]["converter"]["quantizer"]["format"] == "QDQ"
        drift = target["drift"]
        assert drift["fp32_size_bytes"] > 0 and drift["fp32_latency_ms"]["p50"] > 0 and drift["speedup"] > 0
        output = target["numeric"]["outputs"][0]
        assert output["snr_db"] > 15 and output["top1_agreement"] is not None
    assert document["calibration"]["held_out_samples"] == 4
    assert "integer kernels validated on" in result.stdout and "SNR" in result.stdout

    # What "passed" claims, re-checked: the int8 file, run by plain onnxruntime, against the source.
    import onnx

    graph = onnx.load(str(tmp_path / "out" / "model.onnx")).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in graph.node}
    feeds = {"image": rng.uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)}
    reference = api.convert(str(models["classifier_pt2"]), api.ConvertOptions(targets=("onnx",), validate=False,
                                                                             output_dir=tmp_path / "float"))
    float_out = _independent_ort_run(reference.targets[0].path, feeds)
    int8_out = _independent_ort_run(tmp_path / "out" / "model.onnx", feeds)
    cosine = float(np.dot(float_out.ravel(), int8_out.ravel()) /
                   (np.linalg.norm(float_out) * np.linalg.norm(int8_out)))
    assert cosine > 0.98 and int(float_out.argmax()) == int(int8_out.argmax())


@pytest.mark.parametrize("level", ["fp16", "dynamic"])
def test_onnx_fp16_and_dynamic(models, tmp_path, level):
    result = api.convert(str(models["classifier_pt2"]), api.ConvertOptions(targets=("onnx",), quantize=level,
                                                                          output_dir=tmp_path))
    item = result.targets[0]
    assert item.status == "passed", item.error
    assert item.artifact.quantization == level and item.artifact.extra["quantizer"]["mode"] == level
    assert item.float_size_bytes and item.numeric.atol > 1e-4
