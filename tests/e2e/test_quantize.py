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
    target = json.loads(report.read_text())["targets"][0]
    assert target["conversion"]["quantization"] == "int8" and target["status"] == "passed"
    assert _input_dtype_in_clean_process(tmp_path / "out" / "model.tflite") == "int8"  # full int8 I/O


def test_keras_int8_through_tfliteconverter(tmp_path):
    result = api.convert(f"{MODELS / 'tiny_keras.py'}:build", api.ConvertOptions(
        targets=("tflite",), quantize="int8", output_dir=tmp_path))
    item = result.targets[0]
    assert item.status == "passed", item.error
    assert item.artifact.path_taken == ("keras", "savedmodel", "tflite")
    assert _input_dtype_in_clean_process(item.path) == "int8"


def test_calibration_data_with_wrong_names_is_exit_2(models, tmp_path):
    np.savez(tmp_path / "calib.npz", pixels=np.zeros((4, 1, 3, 32, 32), np.float32))
    result = run_cli("convert", str(models["classifier_pt2"]), "--to", "tflite", "--quantize", "int8",
                     "--calibration-data", str(tmp_path / "calib.npz"))
    assert result.returncode == 2
    assert "the model's inputs are image" in error_line(result)
