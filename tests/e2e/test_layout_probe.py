"""onnx2tf turns rank 3-5 inputs channel-last, but not always (inputs that are only
concatenated stay as they are). Where an input's shape reads the same in both layouts (2x2x2),
the shape cannot say which happened: modelport runs both readings once and records the one whose
numbers agree. Before, it assumed channel-last, and a correct file was reported as wrong numbers."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.conftest import run_cli


@pytest.mark.slow
def test_a_concat_of_cube_shaped_inputs_is_mapped_by_its_numbers(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Concat", ["a", "b"], ["y"], axis=1)], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 2, 2]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8),
              str(tmp_path / "concat.onnx"))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "sample.npz", a=rng.standard_normal((2, 2, 2)).astype(np.float32),
             b=rng.standard_normal((2, 2, 2)).astype(np.float32))
    result = run_cli("convert", str(tmp_path / "concat.onnx"), "--to", "tflite,savedmodel", "-o", str(tmp_path / "out"),
                     "--inputs", str(tmp_path / "sample.npz"), "--report", str(tmp_path / "report.json"))
    report = json.loads((tmp_path / "report.json").read_text())
    assert result.returncode == 0, [(t["target"], t["status"], t.get("error")) for t in report["targets"]]
    for target in report["targets"]:
        assert target["status"] == "passed" and target["numeric"]["outputs"][0]["max_abs_diff"] < 1e-6, target
