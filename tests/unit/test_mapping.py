import numpy as np
import pytest

from modelport.artifact import Artifact, IOMapping, TensorLink
from modelport.converters.onnx2tf import map_io
from modelport.errors import ConversionFailed
from modelport.spec import TensorSpec
from modelport.validators.validate import inverse, to_artifact_feeds, to_source_outputs


def _onnx(inputs, outputs):
    return Artifact(path=None, format="onnx", inputs=tuple(inputs), outputs=tuple(outputs),
                    io=IOMapping.identity(inputs, outputs))


def test_onnx2tf_mapping_records_channel_last_for_images_only():
    onnx = _onnx([TensorSpec("image", (1, 3, 16, 20))],
                 [TensorSpec("features", (1, 6, 8, 10)), TensorSpec("probs", (1, 5))])
    io, ambiguous = map_io(onnx, [TensorSpec("image", (1, 16, 20, 3))],
                           [TensorSpec("features", (1, 8, 10, 6)), TensorSpec("probs", (1, 5))], keep_layout=False)
    assert io.inputs == (TensorLink("image", "image", (0, 2, 3, 1)),)
    assert io.outputs == (TensorLink("features", "features", (0, 2, 3, 1)), TensorLink("probs", "probs", None))
    assert ambiguous.inputs == [] and ambiguous.outputs == []


def test_square_output_is_flagged_ambiguous():
    onnx = _onnx([TensorSpec("x", (1, 4))], [TensorSpec("y", (1, 8, 8, 8))])
    _, ambiguous = map_io(onnx, [TensorSpec("x", (1, 4))], [TensorSpec("y", (1, 8, 8, 8))], keep_layout=False)
    assert ambiguous.outputs == [0] and ambiguous.inputs == []


def test_an_input_whose_shape_fits_both_layouts_is_flagged_for_probing():
    onnx = _onnx([TensorSpec("a", (2, 2, 2)), TensorSpec("b", (2, 3, 4))], [TensorSpec("y", (2, 5, 2))])
    io, ambiguous = map_io(onnx, [TensorSpec("a", (2, 2, 2)), TensorSpec("b", (2, 4, 3))],
                           [TensorSpec("y", (2, 2, 5))], keep_layout=False)
    assert ambiguous.inputs == [0] and ambiguous.outputs == []
    assert io.inputs[1].perm == (0, 2, 1)


def test_unmappable_shape_change_is_a_conversion_error():
    onnx = _onnx([TensorSpec("x", (1, 3, 4, 5))], [])
    with pytest.raises(ConversionFailed, match="changed 'x'"):
        map_io(onnx, [TensorSpec("x", (1, 60))], [], keep_layout=False)


def test_mapping_round_trip_and_composition():
    art = Artifact(path=None, format="tflite",
                   io=IOMapping((TensorLink("serving_x", "x", (0, 2, 3, 1)),),
                                (TensorLink("out", "y", (0, 2, 3, 1)),)))
    x = np.arange(24).reshape(1, 2, 3, 4)
    fed = to_artifact_feeds(art, {"x": x})
    assert fed["serving_x"].shape == (1, 3, 4, 2)
    back = to_source_outputs(art, {"out": fed["serving_x"]})
    assert np.array_equal(back["y"], x)
    assert inverse((0, 2, 3, 1)) == (0, 3, 1, 2)
    first = IOMapping((TensorLink("a", "x", (0, 2, 3, 1)),), ())
    second = IOMapping((TensorLink("b", "a", (0, 3, 1, 2)),), ())
    assert first.then(second).inputs == (TensorLink("b", "x", (0, 1, 2, 3)),)


def test_a_mapping_is_one_to_one_where_onnx2tf_lost_the_names():
    """Split as onnx2tf 1.29 writes it: source outputs output_1, output_2; the SavedModel's are
    output_0, output_1 (in ONNX order, listed in another). A match by name would pair output_1
    with the second half, and output_2 with it again."""
    onnx = _onnx([TensorSpec("input", (2, 6))], [TensorSpec("output_1", (2, 3)), TensorSpec("output_2", (2, 3))])
    io, _ = map_io(onnx, [TensorSpec("input", (2, 6))],
                   [TensorSpec("output_1", (2, 3)), TensorSpec("output_0", (2, 3))], keep_layout=False)
    assert io.outputs == (TensorLink("output_0", "output_1"), TensorLink("output_1", "output_2"))


def test_colliding_names_fall_back_to_the_produced_order():
    onnx = _onnx([TensorSpec("x", (4,))], [TensorSpec("a", (4,)), TensorSpec("b", (4,))])
    io, _ = map_io(onnx, [TensorSpec("x", (4,))], [TensorSpec("b", (4,)), TensorSpec("c", (4,))], keep_layout=False)
    # by name: a by position -> b, then b by name -> b again; so both go by order
    assert [(link.source_name, link.name) for link in io.outputs] == [("a", "b"), ("b", "c")]
