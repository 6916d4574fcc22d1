""".tflite sources -> onnx (tf2onnx) and -> tflite (the file itself), validated against the LiteRT
interpreter running in a process without TensorFlow. Models are built here with TFLiteConverter."""

import json

import numpy as np
import pytest

from modelport import api
from tests.conftest import error_line, litert_in_clean_process, run_cli


def _convert(source, out, targets=("onnx", "tflite"), **options):
    return api.convert(str(source), api.ConvertOptions(targets=targets, output_dir=out, **options))


def _by_target(result):
    return {t.target: t for t in result.targets}


def _worst(item):
    return max(o.max_abs_diff for o in item.numeric.outputs)


def test_float_tflite_to_onnx_and_tflite(tflite_models, tmp_path):
    source = tflite_models["tflite_cnn"]
    result = _convert(source, tmp_path)
    items = _by_target(result)
    assert {t: (i.status, i.error) for t, i in items.items()} == {"onnx": ("passed", None), "tflite": ("passed", None)}
    assert result.source["format"] == "tflite" and result.source["framework"] == "tflite"
    assert result.source["inputs"] == [{"name": "image", "shape": ["batch", 8, 8, 3], "dtype": "float32"}]
    assert _worst(items["onnx"]) < 1e-5 and _worst(items["tflite"]) == 0.0
    assert {o.name for o in items["onnx"].numeric.outputs} == {"output_0", "output_1"}

    onnx = items["onnx"].artifact
    assert onnx.layout == "nhwc" and onnx.path_taken == ("tflite", "onnx")
    # The ONNX has the names LiteRT uses (not tf2onnx's "serving_default_image:0"), in that order.
    assert [(link.name, link.source_name, link.perm) for link in (*onnx.io.inputs, *onnx.io.outputs)] == [
        ("image", "image", None), ("output_0", "output_0", None), ("output_1", "output_1", None)]
    # The tflite target is the source file itself.
    assert items["tflite"].path.read_bytes() == source.read_bytes()
    assert items["tflite"].artifact.path_taken == ("tflite",)

    # Independent check: onnxruntime on the ONNX against LiteRT on the source, outside modelport.
    import onnxruntime as ort

    image = np.random.default_rng(3).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)  # batch 2: dynamic
    expected = litert_in_clean_process(source, {"image": image})
    session = ort.InferenceSession(str(items["onnx"].path), providers=["CPUExecutionProvider"])
    produced = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": image})))
    np.testing.assert_allclose(produced["output_0"], expected["output_0"], atol=1e-5)
    np.testing.assert_allclose(produced["output_1"], expected["output_1"], atol=1e-6)


def test_onnx_gets_the_signature_names_and_tensor_names_link_without_them(tflite_models, tmp_path):
    from modelport.converters.tflite2onnx import _links
    from modelport.sources.tflite import read_flatbuffer
    from modelport.spec import TensorSpec

    source = tflite_models["tflite_two_inputs"]
    result = _convert(source, tmp_path, targets=("onnx",))
    item = result.targets[0]
    assert item.status == "passed", item.error
    assert _worst(item) < 1e-6
    assert [s.name for s in item.artifact.inputs] == ["bias", "x"]
    assert [s.name for s in item.artifact.outputs] == ["scaled", "y"]

    # Without renaming, tf2onnx writes tensor names in graph order ("y" first): linked by the
    # tensor each signature name is, never by position (which would swap the outputs).
    facts = read_flatbuffer(source)
    previous = [TensorSpec("scaled", (1, 4)), TensorSpec("y", (1, 3))]
    produced = [TensorSpec("PartitionedCall:1", (1, 3)), TensorSpec("PartitionedCall:0", (1, 4))]
    assert [(link.name, link.source_name) for link in _links(previous, produced, facts.outputs)] == [
        ("PartitionedCall:1", "y"), ("PartitionedCall:0", "scaled")]


def test_tflite_through_onnx_back_to_tflite_stays_channel_last(tflite_models, tmp_path):
    # onnx2tf must keep the NHWC input of an ONNX made from TFLite as it is, not transpose it.
    result = _convert(tflite_models["tflite_cnn"], tmp_path, targets=("tflite",), via=("onnx",))
    item = result.targets[0]
    assert item.status == "passed", item.error
    assert item.artifact.path_taken == ("tflite", "onnx", "tflite") and item.artifact.layout == "nhwc"
    assert all(link.perm is None for link in (*item.artifact.io.inputs, *item.artifact.io.outputs))
    assert _worst(item) < 1e-5


def test_int8_tflite_keeps_int8_io_and_reports_scale_and_zero_point(tflite_models, tmp_path):
    result = _convert(tflite_models["tflite_cnn_int8"], tmp_path)
    items = _by_target(result)
    assert [i.status for i in result.targets] == ["passed", "passed"], [i.error for i in result.targets]
    # Described and seeded in float (LiteRT quantizes the feeds), stored as int8: both said.
    assert result.source["inputs"][0]["dtype"] == "float32"
    quant = result.source["quantization"]
    assert set(quant) == {"image", "output_0", "output_1"}
    assert quant["image"]["dtype"] == "int8" and 0 < quant["image"]["scale"] < 0.1
    assert quant["output_1"] == {"scale": 0.00390625, "zero_point": -128, "dtype": "int8"}  # softmax in int8
    assert result.source["precision"] == "int8"

    onnx = items["onnx"].artifact
    assert onnx.quantization == "int8" and items["tflite"].artifact.quantization == "int8"
    assert [s.dtype for s in onnx.inputs] == ["int8"]  # tf2onnx keeps int8 I/O with QDQ inside
    link = onnx.io.inputs[0]
    assert (link.scale, link.zero_point) == (quant["image"]["scale"], quant["image"]["zero_point"])
    # Both runtimes compute in int8 from the same quantized feed: at most a step or two apart.
    for output in items["onnx"].numeric.outputs:
        assert output.max_abs_diff <= 2 * quant[output.name]["scale"] + 1e-7, output
        assert output.cosine > 0.999
    sidecar = json.loads((tmp_path / "model.onnx.modelport.json").read_text())
    assert sidecar["io"]["inputs"][0]["scale"] == quant["image"]["scale"]


def test_dynamic_range_and_16x8_quantized_files(tflite_models, tmp_path):
    dynamic = _convert(tflite_models["tflite_mlp_dynamic"], tmp_path / "dyn", targets=("onnx",))
    item = dynamic.targets[0]
    # int8 weights, float activations: the ONNX dequantizes the weights, LiteRT quantizes
    # activations on the fly; compared with the dynamic-range tolerance, not the float one.
    assert item.status == "passed", item.error
    assert item.artifact.quantization == "dynamic" and dynamic.source["precision"] == "dynamic"
    assert _worst(item) < 5e-3

    sixteen = _convert(tflite_models["tflite_cnn_int16"], tmp_path / "16x8")
    items = _by_target(sixteen)
    assert items["onnx"].status == "error" and items["onnx"].exit_code == 3
    assert "16x8-quantized" in items["onnx"].error and "int16" in items["onnx"].error
    assert items["tflite"].status == "passed"
    assert sixteen.exit_code == 3


def test_cli_int8_report_and_onnx_named_tflite(tflite_models, tmp_path):
    report = tmp_path / "r.json"
    result = run_cli("convert", str(tflite_models["tflite_cnn_int8"]), "--to", "onnx,tflite", "-o",
                     str(tmp_path / "out"), "--report", str(report))
    assert result.returncode == 0, result.stderr
    assert "tflite -> onnx" in result.stdout
    data = json.loads(report.read_text())
    assert data["passed"] is True and data["source"]["format"] == "tflite"
    assert data["source"]["quantization"]["image"]["zero_point"] == 0
    assert [t["conversion"]["quantization"] for t in data["targets"]] == ["int8", "int8"]

    # Content, not the name, says what a file is.
    disguised = tmp_path / "model.onnx"
    disguised.write_bytes(tflite_models["tflite_cnn"].read_bytes())
    result = run_cli("convert", str(disguised), "--to", "tflite", "-o", str(tmp_path / "disguised"),
                     "--report", str(tmp_path / "d.json"))
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["source"]["format"] == "tflite" and data["targets"][0]["status"] == "passed"


def test_truncated_and_flex_tflite_are_bad_input(tflite_models, tmp_path):
    whole = tflite_models["tflite_cnn"].read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(whole[: len(whole) * 2 // 3])  # keeps the TFL3 identifier: detected as TFLite
    result = run_cli("convert", str(cut), "--to", "onnx", "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    line = error_line(result)
    assert "cut.tflite" in line and "not a complete TFLite flatbuffer" in line and "truncated" in line
    assert not (tmp_path / "out").exists()

    config = tmp_path / "modelport.toml"
    config.write_text(f'[[models]]\nsource = "{cut}"\ntargets = ["onnx"]\n')
    for argv in (["bench", str(cut)], ["validate", str(tflite_models["tflite_cnn"]), str(cut)],
                 ["validate", str(cut), str(tflite_models["tflite_cnn"])], ["inspect", str(cut)],
                 ["check", str(config), "-o", str(tmp_path / "checked")]):
        result = run_cli(*argv)  # every command checks the structure before LiteRT sees the file
        assert result.returncode == 2, (argv[0], result.stderr)
        assert "not a complete TFLite flatbuffer" in error_line(result)

    result = run_cli("convert", str(tflite_models["tflite_flex"]), "--to", "onnx", "-o", str(tmp_path / "flex"))
    assert result.returncode == 2
    assert "FlexMatrixDeterminant" in error_line(result)


@pytest.mark.slow
def test_mobilenet_v2_float_and_int8(mobilenet_models, tmp_path):
    models = mobilenet_models
    floats = _convert(models["mobilenet"], tmp_path / "float")
    items = _by_target(floats)
    assert [t.status for t in floats.targets] == ["passed", "passed"], [t.error for t in floats.targets]
    assert _worst(items["onnx"]) < 1e-4 and _worst(items["tflite"]) == 0.0
    assert floats.source["ops"]["CONV_2D"] > 30 and floats.source["parameters"] > 300_000
    int8 = _convert(models["mobilenet_int8"], tmp_path / "int8", targets=("onnx",))
    item = int8.targets[0]
    assert item.status == "passed", item.error
    scale = int8.source["quantization"]["output_0"]["scale"]
    assert _worst(item) <= 4 * scale and item.numeric.outputs[0].cosine > 0.999
    # The int8 ONNX holds with onnxruntime's default options on any x86-64 CPU (uint8 QDQ), and the
    # report says which CPU it was validated on.
    assert item.artifact.extra["qdq"]["rewrote"] == "int8 QDQ -> uint8"
    from modelport.validators.report import report_json

    cpu = report_json(int8, 1)["environment"]["cpu"]
    assert set(cpu) >= {"model", "features", "vnni"}
