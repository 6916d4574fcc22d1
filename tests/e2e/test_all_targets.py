"""Every target, the planner and `--to all`: real converters, each result run on its own runtime."""

import json
import os
import shutil
import sys

import pytest

from modelport import api
from modelport import registry
from modelport.converters import graph
from modelport.spec import parse_input
from tests.conftest import ROOT, error_line, run_cli

MODELS = ROOT / "fixtures" / "models"
ALL = ("onnx", "tflite", "torchscript", "savedmodel", "tfjs", "ort")


def _convert(source, out, targets=ALL, **options):
    return api.convert(str(source), api.ConvertOptions(targets=targets, output_dir=out, **options))


def _status(result):
    return {t.target: t.status for t in result.targets}


def test_torch_to_all_prefers_direct_edges_and_exports_once(models, tmp_path):
    result = _convert(models["cnn_pt2"], tmp_path, targets=("all",))
    # torch sources also reach ExecuTorch (its toolchain is built by make install)
    assert _status(result) == dict.fromkeys((*ALL, "executorch"), "passed"), [t.error for t in result.targets]
    paths = {t.target: t.artifact.path_taken for t in result.targets}
    assert paths["torchscript"] == ("pt2", "torchscript")  # direct edge beats torch -> onnx -> torchscript
    assert paths["tfjs"] == ("pt2", "onnx", "savedmodel", "tfjs")
    # One ONNX export and one onnx2tf run serve onnx, tflite, savedmodel and tfjs.
    assert result.converter_runs["torch2onnx"] == 1
    assert result.converter_runs["onnx2tf.convert"] == 1
    assert result.converter_runs["onnx2savedmodel"] == 1 and result.converter_runs["savedmodel2tfjs"] == 1
    # tensorflowjs ran in the worker (its TensorFlow has oneDNN rewrites off), not in a child re-importing TF
    assert "savedmodel2tfjs.child" not in result.converter_runs
    for item in result.targets:
        assert max(o.max_abs_diff for o in item.numeric.outputs) < 1e-4, item.target
    # TF targets got NHWC and say so; the torch ones kept NCHW.
    layouts = {t.target: t.artifact.layout for t in result.targets}
    assert layouts["tflite"] == layouts["savedmodel"] == layouts["tfjs"] == "nhwc"
    assert layouts["onnx"] == layouts["torchscript"] == "nchw"


@pytest.mark.slow
def test_tfjs_where_the_workers_tensorflow_has_onednn_rewrites_on(models, tmp_path):
    """tensorflowjs needs oneDNN rewrites off, which TensorFlow reads once, at import. Where the
    worker's TensorFlow was imported with them on (the user set TF_ENABLE_ONEDNN_OPTS=1), it runs
    in a child process that turns them off, and the result passes."""
    import subprocess

    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "modelport", "convert", str(models["cnn_pt2"]), "--to", "tfjs",
                           "-o", str(tmp_path / "out"), "--report", str(report)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL,
                          env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(report.read_text())
    assert [t["status"] for t in data["targets"]] == ["passed"]
    assert data["converter_runs"]["savedmodel2tfjs.child"] == 1


def test_keras_and_onnx_sources_to_every_target(models, tmp_path):
    keras_result = _convert(f"{MODELS / 'tiny_keras.py'}:build", tmp_path / "k")
    assert _status(keras_result) == dict.fromkeys(ALL, "passed"), [t.error for t in keras_result.targets]
    by_target = {t.target: t for t in keras_result.targets}
    assert by_target["savedmodel"].artifact.path_taken == ("keras", "savedmodel")  # direct Keras -> SavedModel
    assert by_target["torchscript"].artifact.path_taken == ("keras", "savedmodel", "onnx", "torchscript")
    onnx_result = _convert(models["mlp_onnx"], tmp_path / "o")
    assert _status(onnx_result) == dict.fromkeys(ALL, "passed"), [t.error for t in onnx_result.targets]


def test_cli_all_table_and_one_failing_target_does_not_stop_others(entry_file, tmp_path):
    # An FFT exports to ONNX (DFT) and runs on onnxruntime, but onnx2tf 1.29 cannot convert DFT
    # (pinned with --converter: onnx2tf 2.x can) and onnx2torch has no DFT converter: those targets
    # are errors, the others still pass.
    result = run_cli("convert", f"{entry_file}:build_spectrum", "--to", "all", "--converter", "onnx2tf",
                     "-o", str(tmp_path / "out"), "--report", str(tmp_path / "r.json"))
    assert result.returncode == 3, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    status = {t["target"]: t["status"] for t in report["targets"]}
    assert status["onnx"] == "passed" and status["torchscript"] == "passed"  # the direct torch edge
    assert status["tflite"] == "error" and "DFT" in next(t["error"] for t in report["targets"] if t["target"] == "tflite")
    for column in ("target", "status", "path", "size", "max abs diff", "cosine", "p50 ms", "conversion path", "seconds"):
        assert column in result.stdout
    assert "Error:" in error_line(result)


def test_explain_and_via(models, tmp_path):
    explained = run_cli("convert", str(models["cnn_pt2"]), "--to", "all", "--explain", "-o", str(tmp_path))
    assert explained.returncode == 0, explained.stderr
    assert "torchscript  torch -> torchscript" in explained.stdout
    assert "tfjs         torch -> onnx -> savedmodel -> tfjs" in explained.stdout
    assert not tmp_path.joinpath("model.onnx").exists()  # explained, not run
    forced = _convert(models["cnn_torchscript"], tmp_path / "via", targets=("torchscript",), via=("onnx",),
                      inputs=(parse_input("image:1x3x16x16"),))
    assert forced.targets[0].artifact.path_taken == ("torchscript", "onnx", "torchscript")
    assert forced.targets[0].status == "passed"
    bad = run_cli("convert", str(models["cnn_pt2"]), "--to", "tflite", "--via", "coreml")
    assert bad.returncode == 2 and "--via names 'coreml'" in error_line(bad)


def test_keep_layout_keeps_nchw_inputs_on_tflite(models, tmp_path):
    result = _convert(models["cnn_pt2"], tmp_path, targets=("tflite",), keep_layout=True)
    item = result.targets[0]
    assert item.status == "passed", item.error
    assert item.artifact.inputs[0].shape == (1, 3, 16, 16)
    assert item.artifact.io.inputs[0].perm is None
    assert item.artifact.layout == "nchw"


def test_simplify_keeps_numbers(models, tmp_path):
    result = _convert(models["cnn_pt2"], tmp_path, targets=("onnx",), simplify=True)
    assert result.targets[0].status == "passed"
    assert result.targets[0].artifact.extra["simplified"] == "onnxsim"


def test_torchscript_from_torchscript_and_entry(models, entry_file, tmp_path):
    copied = _convert(models["cnn_torchscript"], tmp_path / "ts", targets=("torchscript",),
                      inputs=(parse_input("image:1x3x16x16"),))
    assert copied.targets[0].status == "passed" and copied.targets[0].artifact.extra["method"] == "copy"
    traced = _convert(f"{entry_file}:build", tmp_path / "entry", targets=("torchscript",))
    assert traced.targets[0].status == "passed" and traced.targets[0].artifact.extra["method"] == "trace"


def test_tfjs_runner_missing_packages_is_exit_4(models, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPORT_TFJS_RUNNER_DIR", str(tmp_path / "empty"))
    result = run_cli("convert", f"{MODELS / 'tiny_keras.py'}:build", "--to", "tfjs", "-o", str(tmp_path / "out"))
    assert result.returncode == 4
    assert "npm ci --prefix" in error_line(result)


def test_tfjs_without_node_is_exit_4(tmp_path, monkeypatch):
    python_dir = os.path.dirname(sys.executable)
    monkeypatch.setenv("PATH", python_dir)  # this Python and its tools, but no node
    assert shutil.which("node", path=python_dir) is None
    result = run_cli("convert", f"{MODELS / 'tiny_keras.py'}:build", "--to", "tfjs", "-o", str(tmp_path / "out"))
    assert result.returncode == 4
    assert "Node.js is not installed" in error_line(result)


# Every registered edge and the test that runs it on a real fixture and compares numbers on the
# target's runtime. A new edge without an entry here fails `test_every_edge_has_an_end_to_end_test`.
EDGE_TESTS = {
    "torch2onnx": "tests/e2e/test_torch_targets.py::test_pt2_to_onnx_and_tflite_validates_and_an_independent_rerun_agrees",
    "onnx2tf": "tests/e2e/test_quantize.py",  # quantized TFLite always goes through onnx2tf 1.29
    "onnx2tf2": "tests/e2e/test_toolchains.py::test_onnx2tf2_is_preferred_where_installed_and_its_tflite_passes_on_litert",
    "keras2savedmodel": "tests/e2e/test_all_targets.py::test_keras_and_onnx_sources_to_every_target",
    "savedmodel2onnx": "tests/e2e/test_keras_savedmodel.py::test_legacy_h5_and_savedmodel",
    "onnx2savedmodel": "tests/e2e/test_all_targets.py::test_torch_to_all_prefers_direct_edges_and_exports_once",
    "savedmodel2tfjs": "tests/e2e/test_all_targets.py::test_torch_to_all_prefers_direct_edges_and_exports_once",
    "onnx2torchscript": "tests/e2e/test_all_targets.py::test_explain_and_via",
    "torch2torchscript": "tests/e2e/test_all_targets.py::test_torchscript_from_torchscript_and_entry",
    "jax2savedmodel": "tests/e2e/test_jax_source.py",
    "tflite2onnx": "tests/e2e/test_tflite_source.py",
    "savedmodel2tflite": "tests/e2e/test_keras_savedmodel.py::test_keras_archive_to_onnx_and_tflite",
    "onnx2ort": "tests/e2e/test_ort.py::test_ort_target_runs_on_onnxruntime_and_keeps_its_operator_config",
    "torch2executorch": "tests/e2e/test_executorch.py::test_pt2_to_executorch_passes_and_executorchs_own_runtime_agrees",
}


def test_every_edge_has_an_end_to_end_test():
    missing = [e.name for e in registry.default().edges if e.name not in EDGE_TESTS]
    assert not missing, f"edges without an end-to-end test: {missing}"
    for edge, where in EDGE_TESTS.items():
        file, _, function = where.partition("::")
        text = (ROOT / file).read_text()
        assert not function or f"def {function}(" in text, f"{edge}: {where} does not exist"
        assert "status" in text and "passed" in text, f"{edge}: {file} does not check a passing validation"


def test_dict_outputs_keep_their_names_on_every_target(entry_file, tmp_path):
    result = _convert(f"{entry_file}:build_dict_heads", tmp_path, targets=("tfjs", "tflite", "torchscript"))
    assert _status(result) == {"tfjs": "passed", "tflite": "passed", "torchscript": "passed"}, \
        [t.error for t in result.targets]
    assert {o.name for o in result.targets[0].numeric.outputs} == {"logits", "probs"}


def test_module_with_optional_forward_arguments_to_torchscript(entry_file, tmp_path):
    result = _convert(f"{entry_file}:build_encoder_layer", tmp_path, targets=("torchscript", "onnx"))
    assert _status(result) == {"torchscript": "passed", "onnx": "passed"}, [t.error for t in result.targets]


def test_to_all_from_torchscript_skips_executorch_with_the_reason(models, tmp_path):
    """ExecuTorch needs torch.export, which TorchScript cannot give: under --to all that is a
    skipped row saying why, not a failed run; named explicitly it is exit 3 with the same reason."""
    result = run_cli("convert", str(models["cnn_torchscript"]), "--to", "all", "--input", "image:1x3x16x16",
                     "-o", str(tmp_path / "all"), "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    rows = {t["target"]: t for t in json.loads((tmp_path / "r.json").read_text())["targets"]}
    assert rows["executorch"]["status"] == "skipped"
    assert "a TorchScript file cannot be exported" in rows["executorch"]["error"]
    assert all(t["status"] == "passed" for name, t in rows.items() if name != "executorch"), rows
    named = run_cli("convert", str(models["cnn_torchscript"]), "--to", "executorch", "--input", "image:1x3x16x16",
                    "-o", str(tmp_path / "one"))
    assert named.returncode == 3 and "a TorchScript file cannot be exported" in error_line(named)
