"""JAX functions -> onnx and tflite for real: jax2tf, tf2onnx, onnx2tf, onnxruntime and the LiteRT
interpreter, each result compared with JAX's own outputs. Conversions run one at a time."""

import importlib.util
import json
import textwrap
import time

import numpy as np
import pytest

from modelport import api
from modelport.errors import BadInput
from modelport.loading import load_source
from modelport.sources.base import LoadOptions
from modelport.spec import parse_input
from tests.conftest import ROOT, error_line, litert_in_clean_process, run_cli

JAX_FILE = ROOT / "fixtures" / "models" / "tiny_jax.py"


def _entry(name: str) -> str:
    return f"{JAX_FILE}:{name}"


def _fixture_module():
    spec = importlib.util.spec_from_file_location("tiny_jax_reference", JAX_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _convert(source, tmp_path, targets=("onnx", "tflite"), **options):
    return api.convert(source, api.ConvertOptions(targets=targets, output_dir=tmp_path / "out", **options))


def _assert_close(result, atol=1e-5):
    assert result.exit_code == 0, [t.error for t in result.targets]
    for item in result.targets:
        assert item.status == "passed", item.error
        assert max(o.max_abs_diff for o in item.numeric.outputs) < atol
        assert min(o.cosine for o in item.numeric.outputs) > 0.9999


def test_fn_params_examples_to_onnx_and_tflite_and_an_independent_rerun_agrees(tmp_path):
    result = _convert(_entry("build_mlp"), tmp_path)
    _assert_close(result)
    assert result.source["format"] == "jax" and result.source["framework"] == "jax"
    assert result.source["inputs"] == [{"name": "x", "shape": [2, 4], "dtype": "float32"}]
    assert [o["name"] for o in result.source["outputs"]] == ["output_0", "output_1"]  # a tuple of two
    tflite = result.targets[1]
    assert tflite.artifact.path_taken == ("jax", "savedmodel", "tflite")  # TF's own converter on jax2tf's graph

    # Independent check of "passed": JAX itself vs onnxruntime and vs LiteRT without TensorFlow.
    tiny = _fixture_module()
    x = np.random.default_rng(11).uniform(-3, 3, (2, 4)).astype(np.float32)
    probs, hidden = (np.asarray(a) for a in tiny.mlp(tiny.mlp_params(), x))
    produced = litert_in_clean_process(tflite.path, {"x": x})
    np.testing.assert_allclose(produced["output_0"], probs, atol=1e-5)
    np.testing.assert_allclose(produced["output_1"], hidden, atol=1e-5)
    import onnxruntime as ort

    session = ort.InferenceSession(str(result.targets[0].path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(["output_0"], {"x": x})[0], probs, atol=1e-5)


def test_nhwc_conv_closure_with_dict_outputs_through_the_cli(tmp_path):
    report = tmp_path / "report.json"
    result = run_cli("convert", _entry("build_cnn"), "--to", "onnx,tflite", "-o", str(tmp_path / "out"),
                     "--report", str(report))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "jax2tf" not in result.stderr  # converter logs stay hidden
    data = json.loads(report.read_text())
    assert data["source"]["inputs"] == [{"name": "image", "shape": [1, 16, 16, 3], "dtype": "float32"}]
    for target in data["targets"]:
        assert target["status"] == "passed"
        outputs = {o["name"]: o for o in target["numeric"]["outputs"]}
        assert set(outputs) == {"features", "probs"}  # dict keys name the outputs
        assert max(o["max_abs_diff"] for o in outputs.values()) < 1e-5
    assert data["targets"][1]["conversion"]["path"] == ["jax", "savedmodel", "tflite"]


def test_partial_with_a_named_dim_stays_dynamic(tmp_path):
    result = _convert(_entry("predict"), tmp_path, inputs=(parse_input("x:batchx4"),))
    _assert_close(result)
    assert result.source["inputs"][0]["shape"] == ["batch", 4]
    assert result.source["outputs"][0]["shape"] == ["batch", 3]  # symbolic through JAX's shape analysis
    import onnx

    dim = onnx.load(str(tmp_path / "out" / "model.onnx")).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param and not dim.dim_value
    produced = litert_in_clean_process(tmp_path / "out" / "model.tflite",
                                        {"x": np.ones((3, 4), np.float32)})
    assert produced["output_0"].shape == (3, 3)


def test_missing_shapes_say_exactly_which_input_flag_to_pass(tmp_path):
    result = run_cli("convert", _entry("predict"), "--to", "onnx", "-o", str(tmp_path))
    assert result.returncode == 2
    line = error_line(result)
    assert "--input x:1x4" in line and "'batch'" in line
    assert not any(tmp_path.iterdir())  # nothing written
    # (fn, params) without examples: same message, names from fn's parameters after params.
    with pytest.raises(BadInput) as info:
        load_source(_entry("build_mlp_params"), LoadOptions())
    assert "--input x:1x4" in info.value.one_line()
    with pytest.raises(BadInput, match="function's inputs are: x"):
        load_source(_entry("build_mlp_params"), LoadOptions(inputs=(parse_input("y:1x4"),)))


def test_missing_jax_is_exit_4_naming_the_extra(tmp_path):
    result = run_cli("convert", _entry("build_cnn"), "--to", "onnx", "-o", str(tmp_path),
                     python_prelude="import sys; sys.modules['jax'] = None")
    assert result.returncode == 4
    assert "pip install 'modelport[jax]'" in error_line(result)


def test_an_xla_only_op_is_a_conversion_error_naming_it(tmp_path):
    (tmp_path / "sorter.py").write_text(textwrap.dedent("""
        import jax.numpy as jnp
        def top(x):
            return jnp.sort(x, axis=-1)[..., -2:]
    """))
    result = run_cli("convert", f"{tmp_path / 'sorter.py'}:top", "--to", "onnx", "--input", "x:1x8",
                     "-o", str(tmp_path / "out"))
    assert result.returncode == 3
    line = error_line(result)
    assert "sort" in line and "enable_xla=False" in line


def test_channels_as_many_as_pixels_per_side_to_tflite(tmp_path):
    # TFLiteConverter on jax2tf's SavedModel is exact here; through ONNX, onnx2tf 1.29 cannot tell
    # the axes of an NHWC 1x8x8x8 tensor apart and pools the wrong ones, which validation catches.
    # (onnx2tf 2.x gets it right: pinned to 1.29 here.)
    result = _convert(_entry("build_square_pool"), tmp_path, targets=("tflite",))
    assert result.targets[0].artifact.path_taken[-2:] == ("savedmodel", "tflite")
    via_onnx = _convert(_entry("build_square_pool"), tmp_path / "via", targets=("tflite",), via=("onnx",),
                        converters=("onnx2tf",))
    assert via_onnx.targets[0].status == "failed"
    assert result.targets[0].status == "passed", result.targets[0].error


@pytest.mark.slow
@pytest.mark.parametrize("name", ["build_cnn32", "build_mixer"])
def test_realistic_architectures_with_random_weights(name, tmp_path):
    started = time.perf_counter()
    result = _convert(_entry(name), tmp_path, samples=2)
    _assert_close(result, atol=1e-4)
    assert result.source["outputs"] == [{"name": "output", "shape": [1, 10], "dtype": "float32"}]
    assert result.source["parameters"] > 100_000
    assert time.perf_counter() - started < 60


@pytest.mark.slow
def test_every_target_from_one_jax2tf_run(tmp_path):
    result = _convert(_entry("build_cnn"), tmp_path, targets=("all",), samples=2)
    _assert_close(result, atol=1e-4)
    paths = {t.target: t.artifact.path_taken for t in result.targets}
    assert paths["savedmodel"] == ("jax", "savedmodel")  # jax2tf's SavedModel is itself a target
    assert paths["tfjs"] == ("jax", "savedmodel", "tfjs")
    assert result.converter_runs["jax2savedmodel"] == 1
