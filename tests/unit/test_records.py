"""Results as JSON records (check's cache): exact round trips, and nothing but result types made."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from modelport.artifact import Artifact, IOMapping, TensorLink
from modelport.records import NotRecordable, dumps, loads
from modelport.results import ConvertResult, NumericResult, Status, TargetResult, Verdict
from modelport.spec import TensorSpec
from modelport.validators.compare import OutputComparison
from modelport.validators.latency import Latency


def _result() -> ConvertResult:
    spec = TensorSpec("x", ("batch", 3, 8, 8))
    artifact = Artifact(path=Path("/out/model.tflite"), format="tflite", inputs=(spec,), outputs=(TensorSpec("y", (1, 5)),),
                        io=IOMapping(inputs=(TensorLink("x", "x", perm=(0, 2, 3, 1)),),
                                     outputs=(TensorLink("y", "y", scale=0.5, zero_point=3),)),
                        path_taken=("pt2", "onnx", "tflite"), layout="nhwc",
                        extra={"$weird": 1, "opset": 18, "nested": {"a": [1, 2.5]}})
    comparison = OutputComparison("y", float(np.float32(1e-7)), math.inf, 0.0, 0.99999, True, snr_db=math.inf,
                                  shape_reference=(1, 5), shape_candidate=(1, 5), top1_agreement=1.0)
    target = TargetResult("tflite", Verdict(Status.FAILED, "Budget broken", 0), artifact, Path("/out/model.tflite"),
                          size_bytes=1234, sha256="ab" * 32, seconds=1.5,
                          numeric=NumericResult(1e-4, 1e-3, 3, [comparison]),
                          latency=Latency(5, 1, 1, 0.1, 0.2, 0.3, 0.15, 0.09), plan=("pt2", "onnx", "tflite"),
                          budgets=[{"name": "size_mb", "limit": 1, "value": 0.5, "passed": True}], notes=["n"])
    return ConvertResult(source={"path": "m.pt2", "sha256": None, "inputs": [spec.to_json()]}, targets=[target],
                         converter_runs={"torch2onnx": 1})


def test_a_result_comes_back_equal():
    result = _result()
    text = dumps(result)
    json.loads(text)  # strict JSON: no NaN/Infinity literals
    again = loads(text)
    assert again == result
    assert again.targets[0].verdict.status is Status.FAILED and again.targets[0].exit_code == 1
    assert again.targets[0].artifact.io.inputs[0].perm == (0, 2, 3, 1)
    assert again.targets[0].numeric.outputs[0].max_rel_diff == math.inf
    assert again.targets[0].artifact.extra["$weird"] == 1


@pytest.mark.parametrize("record", [
    {"$type": "Popen", "args": ["touch", "/tmp/x"]},
    {"$type": "TargetResult", "target": "onnx", "__class__": "x"},
    {"$enum": "Popen", "value": 1},
    {"$type": "Status", "value": "passed"},
])
def test_only_result_types_are_made(record):
    with pytest.raises((ValueError, TypeError)):
        loads(json.dumps(record))


def test_values_without_a_record_form_are_refused():
    with pytest.raises(NotRecordable):
        dumps({"array": np.zeros(3)})
    with pytest.raises(NotRecordable):
        dumps({1: "non-string key"})
