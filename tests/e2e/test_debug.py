"""`modelport debug`: the first layer where a converted model drifts, found on the real runtimes
(onnxruntime with every node output exposed, LiteRT keeping every tensor)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import error_line, run_cli
from tests.e2e.test_toolchains import _installed, needs_python312


def _second_conv_filter(tflite) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite))
    convs = [op for op in interpreter._get_ops_details() if op["op_name"] == "CONV_2D"]
    assert len(convs) == 2, [op["op_name"] for op in interpreter._get_ops_details()]
    return interpreter.get_tensor(int(convs[1]["inputs"][1]))


@needs_python312
def test_debug_names_the_conv_whose_weights_were_altered_inside_the_tflite_file(models, tmp_path):
    import onnx

    _installed()
    out = tmp_path / "out"
    converted = run_cli("convert", str(models["cnn_pt2"]), "--to", "onnx,tflite", "-o", str(out))
    assert converted.returncode == 0, converted.stderr
    reference, candidate = out / "model.onnx", out / "model.tflite"

    page = tmp_path / "debug.html"
    clean = run_cli("debug", str(reference), str(candidate), "--json", "--html", str(page))
    assert clean.returncode == 0, clean.stderr
    report = json.loads(clean.stdout)
    assert report["schema"] == "modelport.debug/1" and report["first_divergent"] is None
    assert report["matched_by"] == "recorded correspondence" and report["matched"] >= 4
    assert all(layer["passed"] and layer["cosine"] > 0.9999 for layer in report["layers"])
    assert "<svg" in page.read_text() and "No layer drifts" in page.read_text()

    # One output channel of the second conv's filter, negated and tripled in the file's bytes.
    weights = _second_conv_filter(candidate)
    altered_weights = weights.copy()
    altered_weights[0] *= -3.0
    data = candidate.read_bytes()
    assert data.count(weights.tobytes()) == 1
    altered = tmp_path / "altered.tflite"
    altered.write_bytes(data.replace(weights.tobytes(), altered_weights.tobytes()))
    shutil.copyfile(out / "model.tflite.modelport.json", tmp_path / "altered.tflite.modelport.json")
    assert np.array_equal(_second_conv_filter(altered), altered_weights)

    second_conv = [n.name for n in onnx.load(str(reference)).graph.node if n.op_type == "Conv"][1]
    found = run_cli("debug", str(reference), str(altered), "--json")
    assert found.returncode == 1, found.stderr
    report = json.loads(found.stdout)
    first = report["first_divergent"]
    assert first["source_name"] == second_conv and first["source_op_type"].startswith("Conv"), first
    assert first["cosine"] < 0.9
    before = report["layers"][: report["layers"].index(first)]
    assert before and all(layer["passed"] for layer in before)  # the first conv still agrees

    table = run_cli("debug", str(reference), str(altered))
    assert table.returncode == 1
    assert f"First divergent layer: {second_conv}" in " ".join(table.stdout.split())


def test_debug_converts_first_and_compares_a_quantized_onnx_model_dequantized(models, tmp_path):
    result = run_cli("debug", str(models["cnn_pt2"]), "--to", "onnx", "--quantize", "int8",
                     "--calibration-data", "random", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert "converted to onnx (int8)" in report["candidate"] and report["first_divergent"] is None
    layers = report["layers"]
    # The QDQ model's view of each tensor is what its DequantizeLinear gives back.
    assert sum(layer["name"].endswith("_DequantizeLinear_Output") for layer in layers) >= 3
    assert all(0.98 <= layer["cosine"] < 1.0 for layer in layers if layer["name"].endswith("_Output"))


def test_debug_reads_an_int8_tflite_file_layer_by_layer(models, tmp_path):
    # onnx2tf 1.29 quantizes (the 2.x edge is float only) and keeps no names: layers pair by value.
    result = run_cli("debug", str(models["mlp_onnx"]), "--to", "tflite", "--quantize", "int8",
                     "--calibration-data", "random", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["candidate_runtime"].startswith("litert") and report["first_divergent"] is None
    by = {layer["matched_by"] for layer in report["layers"]}
    assert "value" in by and len(report["layers"]) >= 3, report["layers"]
    # int8 tensors come back dequantized: close to the float reference, never equal to it.
    assert all(0.98 <= layer["cosine"] < 1.0 for layer in report["layers"])


def test_debug_reads_torchscript_layers_by_the_module_names_onnx2torch_gives(models):
    result = run_cli("debug", str(models["mlp_onnx"]), "--to", "torchscript", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["candidate_runtime"] == "torch.jit" and report["first_divergent"] is None
    by_name = [layer for layer in report["layers"] if layer["matched_by"] == "name"]
    # onnx2torch names each submodule after its ONNX node: `/net/net.0/Gemm` -> `net/net/0/Gemm`
    assert len(by_name) >= 2 and all(layer["cosine"] > 0.9999 for layer in report["layers"]), report["layers"]


@pytest.mark.parametrize("target, weights_file, runtime", [("savedmodel", "saved_model.pb", "tensorflow"),
                                                           ("tfjs", "group1-shard1of1.bin", "tfjs 4.22.0")])
def test_debug_reads_tensorflow_layers_and_names_the_conv_altered_inside_the_file(models, tmp_path, target,
                                                                                   weights_file, runtime):
    """SavedModel: the signature's body is run with every op's output fetched; TF.js: the graph
    model executed with every node as an output. onnx2tf keeps no ONNX names, so layers pair by
    value; a filter altered in the file's bytes is found (by position, in the gap value pairing
    leaves before the first failing layer)."""
    import onnx
    from onnx import numpy_helper

    out = tmp_path / "out"
    converted = run_cli("convert", str(models["cnn_pt2"]), "--to", f"onnx,{target}", "-o", str(out))
    assert converted.returncode == 0, converted.stderr
    reference, candidate = out / "model.onnx", out / target
    clean = run_cli("debug", str(reference), str(candidate), "--json")
    assert clean.returncode == 0, clean.stderr
    report = json.loads(clean.stdout)
    assert report["candidate_runtime"].startswith(runtime) and report["first_divergent"] is None
    assert report["matched"] >= 4 and all(layer["cosine"] > 0.9999 for layer in report["layers"])

    # One output channel of the second conv's filter (HWIO in the graph), negated and tripled.
    graph = onnx.load(str(reference)).graph
    second_conv = [n for n in graph.node if n.op_type == "Conv"][1]
    weights = next(numpy_helper.to_array(i) for i in graph.initializer if i.name == second_conv.input[1])
    hwio = np.ascontiguousarray(weights.transpose(2, 3, 1, 0))
    altered_hwio = hwio.copy()
    altered_hwio[..., 0] *= -3.0
    altered = tmp_path / "altered"
    shutil.copytree(candidate, altered)
    data = (altered / weights_file).read_bytes()
    assert data.count(hwio.tobytes()) == 1
    (altered / weights_file).write_bytes(data.replace(hwio.tobytes(), altered_hwio.tobytes()))
    shutil.copyfile(out / f"{target}.modelport.json", tmp_path / "altered.modelport.json")  # (its recorded layout)
    found = run_cli("debug", str(reference), str(altered), "--json")
    assert found.returncode == 1, found.stderr
    report = json.loads(found.stdout)
    first = report["first_divergent"]
    assert first["source_name"] == second_conv.name and first["cosine"] < 0.9, first
    before = report["layers"][: report["layers"].index(first)]
    assert before and all(layer["passed"] for layer in before)


@pytest.mark.parametrize("args, message", [
    (["{onnx}", "{onnx}", "--to", "tflite"], "Give a CANDIDATE model, or --to TARGET"),
    (["{onnx}"], "Give a CANDIDATE model, or --to TARGET"),
    (["{onnx}", "{missing}"], "does not exist"),
    (["{onnx}", "--to", "onnx"], "--to onnx without --quantize gives the reference itself"),
    (["{onnx}", "--to", "tflite,onnx"], "debug converts to one target"),
    (["{onnx}", "{ort}"], "cannot read the intermediate tensors of onnxruntime (ORT format) models"),
    (["{onnx}", "{pt2}"], "cannot run layer by layer"),
])
def test_debug_refusals(models, tmp_path, args, message):
    paths = {"onnx": models["mlp_onnx"], "missing": tmp_path / "nope.tflite", "pt2": models["cnn_pt2"],
             "ort": tmp_path / "ort" / "model.ort"}
    if "{ort}" in args:
        made = run_cli("convert", str(models["mlp_onnx"]), "--to", "ort", "-o", str(tmp_path / "ort"))
        assert made.returncode == 0, made.stderr
    result = run_cli("debug", *[a.format(**paths) for a in args])
    assert result.returncode == 2, result.stderr
    assert message in error_line(result)
