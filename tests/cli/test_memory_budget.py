"""The memory budget: a tiny model that asks its runtime for gigabytes is exit 2 naming the
budget, never an out-of-memory kill; `inspect` describes it without running it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.conftest import error_line, run_cli


def _greedy_onnx(path: Path) -> Path:
    """A few hundred bytes asking for a 40000 x 40000 float32 tensor (6.4 GB) when folded or run."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = numpy_helper.from_array(np.array([40000, 40000], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["shape"], ["big"], value=helper.make_tensor("v", TensorProto.FLOAT,
                                                                                           [1], [1.0])),
         helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
         helper.make_node("Add", ["x", "total"], ["y"])],
        "greedy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_model_past_the_budget_is_exit_2_for_every_command(tmp_path):
    model = _greedy_onnx(tmp_path / "greedy.onnx")
    assert model.stat().st_size < 1000
    for argv in (["convert", str(model), "--to", "onnx", "-o", str(tmp_path / "out")],
                 ["bench", str(model), "--runs", "1", "--warmup", "0"], ["validate", str(model), str(model)]):
        result = run_cli(*argv, "--max-memory", "2G")
        assert result.returncode == 2, (argv[0], result.stdout, result.stderr[-2000:])
        line = error_line(result)
        assert "needs more than 2.0 GB to run" in line and "--max-memory" in line, (argv[0], line)
    inspected = run_cli("inspect", str(model), "--json", "--max-memory", "2G")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["ops"] == {"Add": 1, "ConstantOfShape": 1, "ReduceSum": 1}


def test_malformed_budget_is_a_usage_error(tmp_path):
    result = run_cli("bench", str(tmp_path / "x.onnx"), "--max-memory", "lots")
    assert result.returncode == 2 and "expected a size such as 4G" in result.stderr


def _greedy_ort(tmp_path: Path) -> Path:
    """The greedy graph as an ORT-format file, written without folding (as a hostile file would be)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "greedy.ort")
    options.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(_greedy_onnx(tmp_path / "greedy.onnx")), options, providers=["CPUExecutionProvider"])
    return tmp_path / "greedy.ort"


def test_inspect_describes_a_greedy_ort_file_that_bench_refuses(tmp_path):
    model = _greedy_ort(tmp_path)
    inspected = run_cli("inspect", str(model), "--json", "--max-memory", "2G")
    assert inspected.returncode == 0, inspected.stderr
    described = json.loads(inspected.stdout)
    assert described["format"] == "ort" and [i["name"] for i in described["inputs"]] == ["x"]
    benched = run_cli("bench", str(model), "--runs", "1", "--warmup", "0", "--max-memory", "2G")
    assert benched.returncode == 2 and "needs more than 2.0 GB to run" in error_line(benched)


def test_a_greedy_tflite_file_is_described_by_inspect_and_refused_by_runs(tflite_models):
    """1 KB of flatbuffer whose tensors need 6.4 GB: LiteRT's allocate_tensors fails quietly on it,
    so the refusal comes from the run; inspect never makes an interpreter."""
    model = tflite_models["tflite_greedy"]
    assert model.stat().st_size < 4096
    inspected = run_cli("inspect", str(model), "--json", "--max-memory", "2G")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["inputs"] == [{"name": "x", "shape": [1], "dtype": "float32"}]
    for argv in (["bench", str(model), "--runs", "1", "--warmup", "0"], ["validate", str(model), str(model)]):
        result = run_cli(*argv, "--max-memory", "2G")
        assert result.returncode == 2, (argv[0], result.stderr[-2000:])
        assert "needs more than 2.0 GB to run" in error_line(result), argv[0]
