"""The retry path of the TensorFlow converters: when onnx2tf (1.29 or 2.x) fails on a graph as
exported, modelport folds it (onnxscript's optimizer) and expands the ops ONNX defines as
functions (RMSNormalization, Attention, LayerNormalization...) into their own function bodies,
then converts again. The rewrites must not change what the graph computes, and the report says
which was done."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelport.artifact import Artifact
from modelport.converters.onnx_prepare import expand_functions, prepare, split_variadic_sums
from modelport.errors import ConversionFailed
from tests.conftest import litert_in_clean_process, run_cli


def _rms_model() -> onnx.ModelProto:
    """RMSNormalization (opset 23), then a LayerNormalization and a broadcasting Sum: onnx2tf 1.29
    cannot convert the first, onnx2tf 2.x writes it as a CUSTOM op."""
    rng = np.random.default_rng(3)
    scale = numpy_helper.from_array(rng.uniform(0.5, 1.5, (8,)).astype(np.float32), "scale")
    bias = numpy_helper.from_array(rng.uniform(-1, 1, (8,)).astype(np.float32), "bias")
    row = numpy_helper.from_array(rng.uniform(-1, 1, (1, 8)).astype(np.float32), "row")
    nodes = [helper.make_node("RMSNormalization", ["x", "scale"], ["r"], axis=-1, epsilon=1e-5, name="rms"),
             helper.make_node("LayerNormalization", ["r", "scale", "bias"], ["l"], axis=-1, name="ln"),
             helper.make_node("Sum", ["l", "row", "r"], ["y"], name="sum")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 8])],
                              initializer=[scale, bias, row])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)], ir_version=10)


def _single_target(tmp_path, graph: onnx.GraphProto, opset: int, target: str) -> dict:
    """Save GRAPH, `modelport convert` it to TARGET, and return that target's report entry."""
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8),
              str(tmp_path / "model.onnx"))
    result = run_cli("convert", str(tmp_path / "model.onnx"), "--to", target, "-o", str(tmp_path / "out"),
                     "--report", str(tmp_path / "report.json"))
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads((tmp_path / "report.json").read_text())["targets"]
    assert entry["status"] == "passed" and entry["numeric"]["outputs"][0]["max_abs_diff"] < 1e-4, entry
    return entry


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_expanding_and_splitting_keep_the_numbers_and_leave_only_primitive_ops():
    model = _rms_model()
    x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32)
    expected = _run(model, x)
    expanded, ops = expand_functions(onnx.ModelProto.FromString(model.SerializeToString()))
    assert sorted(ops) == ["LayerNormalization", "RMSNormalization"]
    assert split_variadic_sums(expanded) == 1
    types = {n.op_type for n in expanded.graph.node}
    assert not types & {"RMSNormalization", "LayerNormalization", "Sum"}, types
    assert not expanded.functions or all(f.domain != "modelport.expanded" for f in expanded.functions)
    np.testing.assert_allclose(_run(expanded, x), expected, rtol=1e-5, atol=1e-5)


def test_a_function_whose_body_is_a_loop_is_left_as_the_op(tmp_path):
    """Range's ONNX function body is a Loop, which converts worse than Range itself."""
    nodes = [helper.make_node("Range", ["start", "limit", "delta"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [])
                                           for n in ("start", "limit", "delta")],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)], ir_version=10)
    assert expand_functions(model)[1] == []
    onnx.save(model, str(tmp_path / "range.onnx"))
    artifact = Artifact(path=tmp_path / "range.onnx", format="onnx")
    with pytest.raises(ConversionFailed, match="no op that ONNX defines as a function, nor one to lower"):
        prepare(artifact, tmp_path / "work")
    with pytest.raises(ConversionFailed, match="Folding left the graph unchanged"):
        prepare(artifact, tmp_path / "work", expand=False)


def test_a_model_with_external_data_is_not_rewritten(tmp_path):
    model = _rms_model()
    onnx.save(model, str(tmp_path / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    with pytest.raises(ConversionFailed, match="external data"):
        prepare(Artifact(path=tmp_path / "model.onnx", format="onnx"), tmp_path / "work")
    assert not (tmp_path / "work").exists()


@pytest.mark.slow
def test_rms_normalization_reaches_tflite_and_savedmodel_through_the_expanded_graph(tmp_path):
    onnx.save(_rms_model(), str(tmp_path / "rms.onnx"))
    result = run_cli("convert", str(tmp_path / "rms.onnx"), "--to", "tflite,savedmodel", "-o", str(tmp_path / "out"),
                     "--report", str(tmp_path / "report.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    for target in report["targets"]:
        assert target["status"] == "passed", target
        assert target["numeric"]["outputs"][0]["max_abs_diff"] < 1e-4, target
        said = json.dumps(target["conversion"])
        assert "RMSNormalization as its arithmetic" in said, said
        assert "expanded LayerNormalization into their ONNX function bodies" in said, said
    # the independent re-run: the .tflite on LiteRT in a process that never imported TensorFlow
    # (onnx2tf makes a rank-3 input channel-last: [2, 5, 8] may become [2, 8, 5], unambiguously)
    from ai_edge_litert.interpreter import Interpreter

    x = np.random.default_rng(1).standard_normal((2, 5, 8)).astype(np.float32)
    tflite = tmp_path / "out" / "model.tflite"
    (name, detail), = Interpreter(model_path=str(tflite)).get_signature_runner().get_input_details().items()
    swap = tuple(detail["shape"]) != x.shape
    got = next(iter(litert_in_clean_process(tflite, {name: x.transpose(0, 2, 1) if swap else x}).values()))
    got = got.transpose(0, 2, 1) if got.shape != x.shape else got
    np.testing.assert_allclose(got, _run(_rms_model(), x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_a_grouped_convolution_runs_in_tfjs_as_one_convolution_per_group(tmp_path):
    """TF.js has no grouped convolution ("depth of input (8) must match input depth for filter 2"):
    onnx2tf is asked for one convolution per group. A depthwise one stays a kernel of its own."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.standard_normal((8, 2, 3, 3)).astype(np.float32), "W")
    depthwise = numpy_helper.from_array(rng.standard_normal((8, 1, 3, 3)).astype(np.float32), "D")
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], group=4, pads=[1, 1, 1, 1], name="grouped"),
             helper.make_node("Conv", ["c", "D"], ["y"], group=8, pads=[1, 1, 1, 1], name="depthwise")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])],
                              initializer=[weights, depthwise])
    target = _single_target(tmp_path, graph, 17, "tfjs")
    assert "one convolution per group" in json.dumps(target["conversion"]), target["conversion"]


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_select_last_index_becomes_a_reversed_input_with_the_same_indices(op, keepdims):
    """Ties are where select_last_index matters: integer-valued data has many."""
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], axis=1, keepdims=keepdims, select_last_index=1)],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    x = np.random.default_rng(2).integers(0, 3, (3, 5, 4)).astype(np.float32)
    expected = _run(model, x)
    from modelport.converters.onnx_prepare import reverse_select_last_index

    lowered = onnx.ModelProto.FromString(model.SerializeToString())
    assert reverse_select_last_index(lowered) == [op]
    assert all(a.name != "select_last_index" for n in lowered.graph.node for a in n.attribute)
    np.testing.assert_array_equal(_run(lowered, x), expected)
    assert not np.array_equal(expected, np.argmax(x, axis=1, keepdims=bool(keepdims)) if op == "ArgMax"
                              else np.argmin(x, axis=1, keepdims=bool(keepdims)))  # the ties are real


@pytest.mark.slow
def test_a_tflite_whose_numbers_are_far_off_sends_the_planner_to_the_next_converter(tmp_path):
    """onnx2tf 2.x (2.6.9) writes ELU wrong (max abs 0.9 on the node test): modelport runs each
    2.x file once against onnxruntime on the first sample, and the onnx2tf 1.29 path takes over."""
    graph = helper.make_graph([helper.make_node("Elu", ["x"], ["y"], alpha=2.0)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4, 5])])
    said = json.dumps(_single_target(tmp_path, graph, 13, "tflite"))
    assert "onnx2tf 2.x wrote a TFLite model whose output 'y' differs from onnxruntime" in said, said


def test_a_broadcasting_comparison_gets_explicit_expands_with_the_same_result():
    graph = helper.make_graph([helper.make_node("LessOrEqual", ["x", "b"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, [4, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.BOOL, [3, 4, 5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)], ir_version=8)
    rng = np.random.default_rng(4)
    feeds = {"x": rng.standard_normal((3, 4, 5)).astype(np.float32), "b": rng.standard_normal((4, 1)).astype(np.float32)}
    from modelport.converters.onnx_prepare import explicit_comparison_broadcast

    rewritten = onnx.ModelProto.FromString(model.SerializeToString())
    assert explicit_comparison_broadcast(rewritten) == ["LessOrEqual"]
    assert [n.op_type for n in rewritten.graph.node] == ["Expand", "LessOrEqual"]
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_array_equal(run(rewritten), run(model))
