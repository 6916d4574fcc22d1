import pytest

from modelport import registry
from modelport.converters import graph
from modelport.errors import BadInput


def test_plan_goes_through_onnx():
    # The graph alone prefers onnx2tf 2.x (a toolchain edge); convert skips it where it is not built.
    assert [e.name for e in graph.plan("torch", "tflite")] == ["torch2onnx", "onnx2tf2"]
    assert [e.name for e in graph.plan("torch", "onnx")] == ["torch2onnx"]
    assert graph.plan("onnx", "onnx") == []


def test_plan_with_no_path_names_the_edges():
    with pytest.raises(BadInput, match="No conversion path from tflite to torch"):
        graph.plan("tflite", "torch")


def test_every_edge_resolves_to_a_function():
    for edge in registry.default().edges:
        assert callable(edge.load())


def test_parse_targets():
    assert graph.parse_targets("onnx, tflite,onnx") == ["onnx", "tflite"]
    assert graph.parse_targets("all") == ["all"]
    with pytest.raises(BadInput, match="Unknown target 'coreml'") as info:
        graph.parse_targets("onnx,coreml")
    assert "onnx, tflite" in info.value.one_line()
