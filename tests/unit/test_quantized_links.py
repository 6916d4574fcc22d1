"""Quantized I/O in the mapping: an artifact holding int8 for a float source tensor (an int8
TFLite file as ONNX) is fed quantized values and its outputs are dequantized before comparing."""

import numpy as np

from modelport.artifact import Artifact, IOMapping, TensorLink
from modelport.spec import TensorSpec
from modelport.validators.validate import to_artifact_feeds, to_source_outputs


def test_quantized_links_round_trip_and_survive_composition():
    first = IOMapping((TensorLink("image", "image"),), (TensorLink("probs", "probs"),))
    second = IOMapping((TensorLink("serving_image:0", "image", None, 0.5, 1),),
                       (TensorLink("out:0", "probs", None, 0.25, -128),))
    io = first.then(second)
    assert io.inputs == (TensorLink("serving_image:0", "image", None, 0.5, 1),)
    # A later edge without quantization of its own keeps what the earlier link says.
    later = io.then(IOMapping((TensorLink("x", "serving_image:0", (0, 2, 1)),), ()))
    assert later.inputs == (TensorLink("x", "image", (0, 2, 1), 0.5, 1),)
    assert later.inputs[0].to_json() == {"name": "x", "source": "image", "perm": [0, 2, 1], "scale": 0.5,
                                         "zero_point": 1}
    assert TensorLink("a", "b").to_json() == {"name": "a", "source": "b", "perm": None}

    artifact = Artifact(path=None, format="onnx", inputs=(TensorSpec("serving_image:0", (1, 4), "int8"),),
                        io=io)
    fed = to_artifact_feeds(artifact, {"image": np.array([[-100.0, -0.5, 1.25, 100.0]], np.float32)})
    assert fed["serving_image:0"].dtype == np.int8
    assert fed["serving_image:0"].tolist() == [[-128, 0, 3, 127]]  # 2.5 rounds to 2 (half to even); clipped
    back = to_source_outputs(artifact, {"out:0": np.array([[-128, 0, 127]], np.int8)})
    assert back["probs"].dtype == np.float32 and back["probs"].tolist() == [[0.0, 32.0, 63.75]]
