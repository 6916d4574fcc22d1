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
    assert ambiguous == []


def test_square_output_is_flagged_ambiguous():
    onnx = _onnx([TensorSpec("x", (1, 4))], [TensorSpec("y", (1, 8, 8, 8))])
    _, ambiguous = map_io(onnx, [TensorSpec("x", (1, 4))], [TensorSpec("y", (1, 8, 8, 8))], keep_layout=False)
    assert ambiguous == [0]


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
