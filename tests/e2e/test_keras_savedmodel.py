"""Keras (.keras, .h5, entry points) and SavedModel sources -> onnx and tflite, for real."""

import json
import sys

import numpy as np
import pytest

from modelport import api
from modelport.spec import parse_input_range
from tests.conftest import ROOT, error_line, run_cli

MODELS = ROOT / "fixtures" / "models"


@pytest.fixture(scope="module")
def tf_models(tmp_path_factory):
    sys.path.insert(0, str(MODELS))
    import tiny_keras

    return tiny_keras.save_all(tmp_path_factory.mktemp("keras"))


def _convert(source, out, targets=("onnx", "tflite"), **options):
    return api.convert(str(source), api.ConvertOptions(targets=targets, output_dir=out, **options))


def _statuses(result):
    return {t.target: (t.status, t.error) for t in result.targets}


def test_keras_archive_to_onnx_and_tflite(tf_models, tmp_path):
    result = _convert(tf_models["keras"], tmp_path)
    assert _statuses(result) == {"onnx": ("passed", None), "tflite": ("passed", None)}
    tflite = result.targets[1]
    # A Keras model is channel-last already: no permutation anywhere, names kept.
    assert tflite.artifact.layout == "nhwc"
    assert all(link.perm is None for link in (*tflite.artifact.io.inputs, *tflite.artifact.io.outputs))
    assert {o.name for o in tflite.numeric.outputs} == {"features", "probs"}
    assert max(o.max_abs_diff for o in tflite.numeric.outputs) < 1e-5
    # TF's own converter is the cheapest path for a TF graph: no ONNX round trip.
    assert tflite.artifact.path_taken == ("keras", "savedmodel", "tflite")
    forced = _convert(tf_models["keras"], tmp_path / "via", targets=("tflite",), via=("onnx",))
    assert forced.targets[0].status == "passed", forced.targets[0].error
    assert forced.targets[0].artifact.path_taken == ("keras", "savedmodel", "onnx", "tflite")


def test_legacy_h5_and_savedmodel(tf_models, tmp_path):
    h5 = _convert(tf_models["h5"], tmp_path / "h5")
    assert [t.status for t in h5.targets] == ["passed", "passed"]
    assert h5.source["format"] == "h5"
    saved = _convert(tf_models["savedmodel"], tmp_path / "sm")
    assert [t.status for t in saved.targets] == ["passed", "passed"]
    assert saved.source["inputs"][0]["shape"] == ["batch", 12, 12, 3]


def test_keras_entry_point(tmp_path):
    result = _convert(f"{MODELS / 'tiny_keras.py'}:build", tmp_path, targets=("onnx",))
    assert result.targets[0].status == "passed"
    assert result.source["framework"] == "keras"


def test_signature_choice(tf_models, tmp_path):
    result = run_cli("convert", str(tf_models["multi_signature"]), "--to", "onnx", "-o", str(tmp_path))
    assert result.returncode == 2
    line = error_line(result)
    assert "several signatures" in line and "double, square" in line and "--signature" in line
    chosen = _convert(tf_models["multi_signature"], tmp_path / "sq", targets=("onnx",), signature="square")
    assert chosen.targets[0].status == "passed"
    bad = run_cli("convert", str(tf_models["multi_signature"]), "--to", "onnx", "--signature", "cube")
    assert bad.returncode == 2 and "no signature 'cube'" in error_line(bad)


def test_lambda_layer_is_refused_and_its_code_does_not_run(tf_models, tmp_path):
    marker = tf_models["lambda_marker"]
    result = run_cli("convert", str(tf_models["lambda"]), "--to", "onnx", "-o", str(tmp_path))
    assert result.returncode == 2
    line = error_line(result)
    assert "Lambda layer" in line and "--trust-remote-code" in line
    assert not marker.exists(), "the Lambda layer's code ran"
    config = tmp_path / "modelport.toml"
    config.write_text(f'[[models]]\nsource = "{tf_models["lambda"]}"\ntargets = ["onnx"]\n')
    for argv in (["inspect", str(tf_models["lambda"])], ["bench", str(tf_models["lambda"]), "--runs", "1"],
                 ["validate", str(tf_models["lambda"]), str(tf_models["lambda"])],
                 ["check", str(config), "-o", str(tmp_path / "checked")]):  # every command loads the same way
        other = run_cli(*argv)
        assert other.returncode == 2, (argv[0], other.stderr)
        assert "Lambda layer" in [ln for ln in other.stderr.splitlines() if ln.startswith("Error:")][0]
        assert not marker.exists(), f"{argv[0]} ran the Lambda layer's code"
    trusted = run_cli("convert", str(tf_models["lambda"]), "--to", "onnx", "-o", str(tmp_path),
                      "--trust-remote-code")
    assert trusted.returncode == 0, trusted.stderr
    assert marker.exists()  # with the flag, the user's code runs, as asked


def test_custom_class_needs_an_entry_point(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="tests")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inputs = keras.Input((4,), name="x")
    keras.Model(inputs, Twice()(inputs)).save(tmp_path / "custom.keras")
    result = run_cli("convert", str(tmp_path / "custom.keras"), "--to", "onnx")
    assert result.returncode == 2
    assert "custom class 'tests>Twice'" in error_line(result)


def test_keras_file_named_h5_but_zip_is_read_by_content(tf_models, tmp_path):
    disguised = tmp_path / "model.h5"
    disguised.write_bytes(tf_models["keras"].read_bytes())
    result = run_cli("inspect", str(disguised), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["format"] == "keras"


def test_integer_multi_input_encoder_torch_and_keras(tmp_path):
    encoder = f"{MODELS / 'tiny_encoder.py'}"
    ranges = (parse_input_range("input_ids:0:50"),)
    torch_result = _convert(f"{encoder}:build_torch", tmp_path / "t", input_ranges=ranges)
    assert _statuses(torch_result) == {"onnx": ("passed", None), "tflite": ("passed", None)}
    assert [i["dtype"] for i in torch_result.source["inputs"]] == ["int64", "int64"]
    keras_result = _convert(f"{encoder}:build_keras", tmp_path / "k", targets=("onnx",), input_ranges=ranges)
    assert _statuses(keras_result) == {"onnx": ("passed", None)}


def test_keras_encoder_to_tflite_and_tfjs(tmp_path):
    # Through ONNX, onnx2tf 1.29 fails on Keras MultiHeadAttention's dynamic mask (Expand), and with
    # static shapes converts it with wrong numbers; TFLiteConverter on the SavedModel is exact.
    # (onnx2tf 2.x converts it right: pinned to 1.29 here.)
    result = _convert(f"{MODELS / 'tiny_encoder.py'}:build_keras", tmp_path, targets=("tflite", "tfjs"),
                      input_ranges=(parse_input_range("input_ids:0:50"),))
    assert _statuses(result) == {"tflite": ("passed", None), "tfjs": ("passed", None)}
    assert result.targets[0].artifact.path_taken == ("keras", "savedmodel", "tflite")
    onnx_path = _convert(f"{MODELS / 'tiny_encoder.py'}:build_keras", tmp_path / "via", targets=("tflite",),
                         via=("onnx",), input_ranges=(parse_input_range("input_ids:0:50"),),
                         converters=("onnx2tf",))
    assert onnx_path.targets[0].status in ("failed", "error")  # never a false "passed"


@pytest.mark.slow
def test_mobilenet_v2_keras(tmp_path):
    import make_tf_fixtures

    model = make_tf_fixtures.realistic_mobilenet()
    model.save(tmp_path / "mobilenet.keras")
    result = _convert(tmp_path / "mobilenet.keras", tmp_path / "out", samples=2)
    assert _statuses(result) == {"onnx": ("passed", None), "tflite": ("passed", None)}, _statuses(result)
    probs = np.asarray([o.cosine for t in result.targets for o in t.numeric.outputs])
    assert (probs > 0.9999).all()
