"""onnx2torch reads ONNX up to opset 18, and the onnx version converter has no adapter down from
19+ for most ops. modelport relabels the opset where every op kept its meaning (its schema only
widened types) and refuses, naming the node, where one did not."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelport.converters.onnx_opset import relabel_opset
from tests.conftest import error_line, run_cli


def _model(nodes: list, initializers: list, out_shape: list[int]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)], ir_version=10)


def _transpose_reshape() -> onnx.ModelProto:
    shape = numpy_helper.from_array(np.array([1, 32], np.int64), "shape")
    return _model([helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[1, 1], dilations=[1, 1], name="pool"),
                   helper.make_node("Transpose", ["p"], ["t"], perm=[0, 2, 3, 1], name="transpose"),
                   helper.make_node("Reshape", ["t", "shape"], ["r"], name="reshape"),
                   helper.make_node("Relu", ["r"], ["y"], name="relu")], [shape], [1, 32])


def test_an_opset_23_model_reaches_torchscript_and_matches_onnxruntime(tmp_path):
    model = _transpose_reshape()
    try:  # the premise: the version converter cannot do this itself
        onnx.version_converter.convert_version(model, 18)
        raise AssertionError("the onnx version converter now lowers this model: the relabelling may be obsolete")
    except RuntimeError:
        pass
    onnx.save(model, str(tmp_path / "model.onnx"))
    result = run_cli("convert", str(tmp_path / "model.onnx"), "--to", "torchscript", "-o", str(tmp_path / "out"),
                     "--report", str(tmp_path / "report.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    target = report["targets"][0]
    assert target["status"] == "passed" and target["numeric"]["outputs"][0]["max_abs_diff"] < 1e-6, target
    assert target["conversion"]["converter"]["opset_lowering"] == "relabelled", target["conversion"]


def test_relabelling_drops_only_attributes_that_mean_the_old_behaviour():
    model = _transpose_reshape()
    assert relabel_opset(model, 18) == []
    assert model.opset_import[0].version == 18
    pool = next(n for n in model.graph.node if n.op_type == "AveragePool")
    assert [a.name for a in pool.attribute] == ["kernel_shape"]  # dilations of 1 = opset 18's pooling


def test_a_node_whose_meaning_changed_after_opset_18_is_refused_by_name(tmp_path):
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    wrap = _model([helper.make_node("Pad", ["x", "pads"], ["y"], mode="wrap", name="wrap_pad")], [pads], [1, 2, 6, 6])
    assert relabel_opset(wrap, 18) == ["Pad (node 'wrap_pad') uses mode=wrap, new after opset 18"]
    dilated = _model([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2],
                                       name="dilated")], [], [1, 2, 2, 2])
    assert relabel_opset(dilated, 18) == ["AveragePool (node 'dilated') uses 'dilations', new after opset 18"]

    onnx.save(wrap, str(tmp_path / "wrap.onnx"))
    result = run_cli("convert", str(tmp_path / "wrap.onnx"), "--to", "torchscript", "-o", str(tmp_path / "out"))
    assert result.returncode == 3, result.stderr
    line = error_line(result)
    assert "onnx2torch reads opset <= 18" in line and "Pad (node 'wrap_pad') uses mode=wrap" in line, line
    assert "--opset 18" in result.stderr
    assert not (tmp_path / "out" / "model.pt").exists()
