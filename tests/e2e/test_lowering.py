"""Lowerings of the expanded form (modelport/converters/onnx_lower.py): ops onnx2tf fails on,
rewritten as simpler ONNX ops. Each lowering must compute what the op computes: checked against
onnxruntime on random inputs over the op's attributes; then end to end, a model whose Conv
weights and GridSample grid are graph inputs converts and validates on LiteRT and TensorFlow."""

from __future__ import annotations

import itertools
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelport.converters.onnx_lower import (lower_dynamic_convolutions, lower_for_tensorflow_kernels,
                                             lower_group_normalization, lower_hardmax, lower_normalizations,
                                             lower_pooling, lower_resizes, lower_rms_normalization, lower_small_ops)
from modelport.converters.onnx_lower_grid import lower_grid_samples
from modelport.converters.onnx_lower_rnn import lower_recurrent
from tests.conftest import run_cli


def _model(nodes: list, inputs: list[tuple[str, list[int]]], outputs: list[str], opset: int,
           initializers: list | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs],
                              initializer=initializers or [])
    model = onnx.shape_inference.infer_shapes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8))
    for output in model.graph.output:  # inference leaves a function op's output untyped: it is X's
        if output.type.tensor_type.elem_type == TensorProto.UNDEFINED:
            output.type.CopyFrom(model.graph.input[0].type)
    return model


def _agree(model: onnx.ModelProto, lower, feeds: dict[str, np.ndarray], expected_op: str,
           spec: bool = False) -> None:
    """LOWER changes MODEL (no EXPECTED_OP left) and onnxruntime gives the same numbers as on the
    op (with SPEC: as ONNX's reference implementation of the op, where onnxruntime departs from it)."""
    if spec:
        from onnx.reference import ReferenceEvaluator

        reference = ReferenceEvaluator(model).run(None, feeds)
    else:
        reference = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    lowered = onnx.ModelProto.FromString(model.SerializeToString())
    assert lower(lowered), "nothing was lowered"
    assert expected_op not in {n.op_type for n in lowered.graph.node}
    onnx.checker.check_model(lowered, full_check=True)
    got = ort.InferenceSession(lowered.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for want, have in zip(reference, got):
        assert want.shape == have.shape and want.dtype == have.dtype
        np.testing.assert_allclose(have, want, atol=1e-4, rtol=1e-4)


RNG = np.random.default_rng(7)


def _random(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


CONVS = [  # (rank, group, attributes)
    (1, 1, {}),
    (2, 1, {"pads": [1, 0, 2, 1], "strides": [2, 1]}),
    (2, 2, {"dilations": [2, 1], "pads": [2, 1, 2, 1]}),
    (2, 2, {"auto_pad": "SAME_UPPER"}),
    (2, 1, {"auto_pad": "SAME_LOWER", "strides": [2, 2]}),
    (2, 4, {"auto_pad": "VALID"}),
    (3, 1, {"pads": [1, 1, 1, 1, 1, 1]}),
]


@pytest.mark.parametrize("rank,group,attributes", CONVS)
@pytest.mark.parametrize("bias", [False, True])
def test_conv_with_input_weights_is_slices_and_one_matmul(rank, group, attributes, bias):
    spatial = [7, 6, 5][:rank]
    x, w = [2, 4, *spatial], [8, 4 // group, *([3] * rank)]
    inputs = [("x", x), ("w", w)] + ([("b", [8])] if bias else [])
    node = helper.make_node("Conv", [n for n, _ in inputs], ["y"], group=group, **attributes)
    model = _model([node], inputs, ["y"], 17)
    _agree(model, lower_dynamic_convolutions, {n: _random(*s) for n, s in inputs}, "Conv")


TRANSPOSED = [  # (rank, group, attributes)
    (2, 1, {}),
    (2, 1, {"strides": [3, 2], "pads": [1, 2, 1, 2]}),
    (2, 2, {"strides": [2, 2], "output_padding": [1, 1], "dilations": [1, 2]}),
    (2, 1, {"strides": [2, 2], "output_shape": [10, 8]}),
    (2, 1, {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    (2, 1, {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    (1, 1, {"strides": [2]}),
    (3, 1, {"strides": [2, 1, 2]}),
]


@pytest.mark.parametrize("rank,group,attributes", TRANSPOSED)
def test_conv_transpose_with_input_weights_is_a_stuffed_conv(rank, group, attributes):
    x, w = [1, 4, *[4, 3, 3][:rank]], [4, 6 // group, *([3] * rank)]
    inputs = [("x", x), ("w", w), ("b", [w[1] * group])]
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], group=group, **attributes)
    model = _model([node], inputs, ["y"], 17)
    _agree(model, lower_dynamic_convolutions, {n: _random(*s) for n, s in inputs}, "ConvTranspose")


def test_a_conv_with_constant_weights_is_left_as_it_is():
    weights = numpy_helper.from_array(_random(8, 4, 3, 3), "w")
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"])], [("x", [1, 4, 6, 6])], ["y"], 17, [weights])
    assert lower_dynamic_convolutions(model) == []


@pytest.mark.parametrize("rank,mode,padding,align", [
    case for case in itertools.product((2, 3), ("nearest", "linear", "cubic"), ("zeros", "border", "reflection"),
                                       (0, 1)) if not (case[0] == 3 and case[1] == "cubic")])
def test_grid_sample_is_taps_and_gathers(rank, mode, padding, align):
    x, grid = ([2, 3, 5, 4], [2, 3, 6, 2]) if rank == 2 else ([1, 2, 3, 4, 5], [1, 2, 3, 4, 3])
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], mode=mode, padding_mode=padding, align_corners=align)
    model = _model([node], [("x", x), ("grid", grid)], ["y"], 20)
    # coordinates well outside [-1, 1]: every padding rule and reflection fold is exercised
    feeds = {"x": _random(*x), "grid": RNG.uniform(-2.6, 2.6, grid).astype(np.float32)}
    _agree(model, lower_grid_samples, feeds, "GridSample")


@pytest.mark.parametrize("kind,direction,layout,extras", [
    case for case in itertools.product(("LSTM", "GRU", "RNN"), ("forward", "reverse", "bidirectional"), (0,),
                                       (False, True))])
def test_recurrent_ops_with_input_weights_are_unrolled(kind, direction, layout, extras):
    steps, batch, features, hidden = 4, 2, 3, 5
    directions, gates = (2 if direction == "bidirectional" else 1), {"LSTM": 4, "GRU": 3, "RNN": 1}[kind]
    inputs = [("x", [steps, batch, features]), ("w", [directions, gates * hidden, features]),
              ("r", [directions, gates * hidden, hidden]), ("b", [directions, 2 * gates * hidden])]
    names = ["x", "w", "r", "b"]
    if extras:
        names += ["", "h0"]
        inputs.append(("h0", [directions, batch, hidden]))
        if kind == "LSTM":
            names += ["c0", "p"]
            inputs += [("c0", [directions, batch, hidden]), ("p", [directions, 3 * hidden])]
    attributes = {"hidden_size": hidden, "direction": direction}
    if kind == "GRU":
        attributes["linear_before_reset"] = int(extras)
    outputs = ["y", "y_h"] + (["y_c"] if kind == "LSTM" else [])
    model = _model([helper.make_node(kind, names, outputs, **attributes)], inputs, outputs, 14)
    _agree(model, lower_recurrent, {n: _random(*s) for n, s in inputs}, kind)


def test_training_batch_norm_and_instance_norm_with_input_scale_are_their_arithmetic():
    bn = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"], training_mode=1,
                          momentum=0.8, epsilon=1e-3)
    inputs = [("x", [3, 4, 5, 2]), ("s", [4]), ("b", [4]), ("m", [4]), ("v", [4])]
    feeds = {n: _random(*s) for n, s in inputs}
    feeds["v"] = np.abs(feeds["v"])
    _agree(_model([bn], inputs, ["y", "rm", "rv"], 15), lower_normalizations, feeds, "BatchNormalization")
    instance = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-4)
    inputs = inputs[:3]
    _agree(_model([instance], inputs, ["y"], 17), lower_normalizations,
           {n: _random(*s) for n, s in inputs}, "InstanceNormalization")


def test_uneven_split_isinf_fmod_and_hardmax_keep_their_results():
    split = helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3)
    _agree(_model([split], [("x", [2, 7])], ["a", "b", "c"], 18), lower_small_ops, {"x": _random(2, 7)}, "Split")
    x = _random(3, 4)
    x[0, 0], x[1, 1], x[2, 2] = np.inf, -np.inf, np.nan
    for positive, negative in ((1, 1), (1, 0), (0, 1)):
        node = helper.make_node("IsInf", ["x"], ["y"], detect_positive=positive, detect_negative=negative)
        _agree(_model([node], [("x", [3, 4])], ["y"], 20), lower_small_ops, {"x": x}, "IsInf")
    mod = helper.make_node("Mod", ["x", "d"], ["y"], fmod=1)
    dividend, divisor = _random(4, 5) * 10, _random(4, 5) * 3
    _agree(_model([mod], [("x", [4, 5]), ("d", [4, 5])], ["y"], 13), lower_small_ops, {"x": dividend, "d": divisor}, "Mod")
    ties = np.array([[[1, 3, 3], [2, 2, 0]], [[5, 5, 5], [0, 1, 0]]], np.float32)  # first of tied maxima
    for axis in (0, 1, -1):
        node = helper.make_node("Hardmax", ["x"], ["y"], axis=axis)
        _agree(_model([node], [("x", [2, 2, 3])], ["y"], 13), lower_hardmax, {"x": ties}, "Hardmax")


POOLS = [  # (op, spatial, attributes)
    ("MaxPool", [9, 8], {"kernel_shape": [3, 2], "dilations": [2, 3], "strides": [2, 1], "pads": [1, 0, 2, 1]}),
    ("MaxPool", [9, 8], {"kernel_shape": [3, 3], "auto_pad": "SAME_LOWER", "strides": [2, 2]}),
    ("MaxPool", [6, 7, 5], {"kernel_shape": [2, 3, 2], "dilations": [2, 1, 2], "ceil_mode": 1, "strides": [2, 2, 1]}),
    ("AveragePool", [9, 8], {"kernel_shape": [3, 3], "pads": [1, 2, 1, 0], "count_include_pad": 1, "ceil_mode": 1,
                             "strides": [2, 3]}),
    ("AveragePool", [9, 8], {"kernel_shape": [3, 3], "pads": [1, 2, 1, 0], "dilations": [2, 2]}),
    ("AveragePool", [9, 8], {"kernel_shape": [2, 4], "auto_pad": "SAME_LOWER"}),
    ("AveragePool", [6, 5, 7], {"kernel_shape": [2, 2, 3], "dilations": [2, 2, 1], "pads": [1, 0, 1, 1, 1, 0],
                                "count_include_pad": 1}),
    ("LpPool", [9, 8], {"kernel_shape": [3, 2], "p": 3, "pads": [1, 1, 0, 1], "dilations": [1, 2]}),
    ("LpPool", [9, 8], {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
]


@pytest.mark.parametrize("op,spatial,attributes", POOLS)
def test_pooling_is_slices_one_axis_at_a_time(op, spatial, attributes):
    node = helper.make_node(op, ["x"], ["y"], **attributes)
    model = _model([node], [("x", [2, 3, *spatial])], ["y"], 19)
    # onnxruntime 1.23 departs from the ONNX spec on 3-D averages that count asymmetric pads with
    # dilations (checked against onnx.reference): there the spec is the yardstick
    spec = op == "AveragePool" and len(spatial) == 3 and attributes.get("count_include_pad", 0) == 1
    _agree(model, lower_pooling, {"x": _random(2, 3, *spatial)}, op, spec=spec)


def test_a_maxpool_asked_for_its_indices_is_left_as_it_is():
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2])
    assert lower_pooling(_model([node], [("x", [1, 2, 4, 4])], ["y", "i"], 19)) == []


@pytest.mark.parametrize("opset", [18, 21])
def test_group_normalization_is_its_arithmetic_with_full_rank_scales(opset):
    scale_size = 6 if opset >= 21 else 3  # per channel since opset 21, per group before
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=3, epsilon=1e-3)
    inputs = [("x", [2, 6, 4, 3]), ("s", [scale_size]), ("b", [scale_size])]
    _agree(_model([node], inputs, ["y"], opset), lower_group_normalization,
           {n: _random(*s) for n, s in inputs}, "GroupNormalization")


@pytest.mark.parametrize("axis", [1, -1])
def test_rms_normalization_is_its_arithmetic_with_a_full_rank_scale(axis):
    node = helper.make_node("RMSNormalization", ["x", "s"], ["y"], axis=axis, epsilon=1e-4)
    inputs = [("x", [2, 3, 4, 5]), ("s", [3, 4, 5] if axis == 1 else [5])]
    _agree(_model([node], inputs, ["y"], 23), lower_rms_normalization, {n: _random(*s) for n, s in inputs},
           "RMSNormalization")


def test_gelu_and_softsign_become_ops_tensorflow_has():
    x = _random(3, 5)
    _agree(_model([helper.make_node("Gelu", ["x"], ["y"])], [("x", [3, 5])], ["y"], 20),
           lower_for_tensorflow_kernels, {"x": x}, "Gelu")
    _agree(_model([helper.make_node("Softsign", ["x"], ["y"])], [("x", [3, 5])], ["y"], 13),
           lower_for_tensorflow_kernels, {"x": x}, "Softsign")
    tanh = helper.make_node("Gelu", ["x"], ["y"], approximate="tanh")  # TF.js has what this becomes
    assert lower_for_tensorflow_kernels(_model([tanh], [("x", [3, 5])], ["y"], 20)) == []


@pytest.mark.parametrize("attributes", [
    {"mode": "cubic"}, {"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1},
    {"mode": "linear", "antialias": 1}, {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
    {"mode": "nearest", "nearest_mode": "floor", "coordinate_transformation_mode": "asymmetric"}])
@pytest.mark.parametrize("scales", [[1.0, 1.0, 0.6, 1.7], [1.0, 1.0, 2.0, 2.0]])
def test_resize_with_constant_scales_is_one_matmul_per_axis(attributes, scales):
    constant = numpy_helper.from_array(np.array(scales, np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], **attributes)
    model = _model([node], [("x", [1, 2, 5, 6])], ["y"], 19, [constant])
    _agree(model, lower_resizes, {"x": _random(1, 2, 5, 6)}, "Resize")


def test_resize_with_scales_from_an_input_is_left_as_it_is():
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic")
    model = _model([node], [("x", [1, 2, 5, 6]), ("scales", [4])], ["y"], 19)
    assert lower_resizes(model) == []


@pytest.mark.slow
def test_input_weights_and_a_grid_input_convert_and_validate_on_litert_and_tensorflow(tmp_path):
    """Conv with its weights a graph input, then GridSample: onnx2tf fails on the first and changes
    the layout of the second; the expanded form's lowerings get both through, and validation on
    each target's own runtime passes."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("GridSample", ["c", "grid"], ["y"], mode="bilinear", padding_mode="border")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
                                           helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3, 3, 3]),
                                           helper.make_tensor_value_info("grid", TensorProto.FLOAT, [1, 5, 6, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 6])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              str(tmp_path / "model.onnx"))
    result = run_cli("convert", str(tmp_path / "model.onnx"), "--to", "tflite,savedmodel", "-o", str(tmp_path / "out"),
                     "--report", str(tmp_path / "report.json"))
    assert result.returncode == 0, result.stderr
    for entry in json.loads((tmp_path / "report.json").read_text())["targets"]:
        assert entry["status"] == "passed", entry
        assert entry["numeric"]["outputs"][0]["max_abs_diff"] < 1e-4
        said = json.dumps(entry["conversion"])
        assert "Conv with input weights lowered" in said and "GridSample as tap indices" in said, said


@pytest.mark.slow
def test_a_form_that_converts_to_wrong_numbers_hands_over_to_the_next(tmp_path):
    """onnx2tf 1.29 converts a float Mod with fmod=1 as a floor modulo (the divisor's sign): the
    graph as given converts, but its numbers are far from onnxruntime's, so the expanded form (the
    Mod lowered) is tried and delivered; validation passes on TensorFlow."""
    node = helper.make_node("Mod", ["x", "y"], ["z"], fmod=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6]),
                                            helper.make_tensor_value_info("y", TensorProto.FLOAT, [6])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [6])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8),
              str(tmp_path / "mod.onnx"))
    np.savez(tmp_path / "sample.npz", x=np.array([-4.3, 7.2, 5.0, 4.3, -7.2, 8.0], np.float32),
             y=np.array([2.1, -3.4, 8.0, -2.1, 3.4, 5.0], np.float32))
    result = run_cli("convert", str(tmp_path / "mod.onnx"), "--to", "savedmodel", "-o", str(tmp_path / "out"),
                     "--inputs", str(tmp_path / "sample.npz"), "--report", str(tmp_path / "report.json"))
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads((tmp_path / "report.json").read_text())["targets"]
    assert entry["status"] == "passed", entry
    said = json.dumps(entry["conversion"])
    assert "Mod as simpler ops" in said and "onnx2tf failed on the graph as given" in said, said
    assert not list((tmp_path / "out" / "savedmodel").glob(".form-*"))  # the other forms' stages are gone


@pytest.mark.slow
def test_a_cubic_resize_with_constant_scales_reaches_tflite_and_savedmodel_with_its_numbers(tmp_path):
    """onnx2tf 1.29 converts a cubic Resize to numbers that drift from ONNX's (another cubic
    kernel), onnx2tf 2.x writes it as a CUSTOM op: the lowered form (one MatMul per axis) is the one
    delivered, and validation on LiteRT and TensorFlow passes."""
    scales = numpy_helper.from_array(np.array([1.0, 1.0, 1.6, 0.7], np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 10, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16, 8])],
                              initializer=[scales])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9),
              str(tmp_path / "resize.onnx"))
    result = run_cli("convert", str(tmp_path / "resize.onnx"), "--to", "tflite,savedmodel", "-o",
                     str(tmp_path / "out"), "--report", str(tmp_path / "report.json"))
    assert result.returncode == 0, result.stderr
    for entry in json.loads((tmp_path / "report.json").read_text())["targets"]:
        assert entry["status"] == "passed", entry
        assert entry["numeric"]["outputs"][0]["max_abs_diff"] < 1e-4
        said = json.dumps(entry["conversion"])
        assert "Resize lowered to one MatMul per resized axis" in said, said
