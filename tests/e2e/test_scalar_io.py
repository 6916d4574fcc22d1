"""Scalar (rank-0) graph inputs and outputs: onnx2tf writes each as a one-element rank-1 tensor.
The I/O mapping records it (`scalar`), validation and the bundle runner reshape across it, and the
artifact re-run on LiteRT by hand agrees."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "gain"], ["y"]), helper.make_node("ReduceSum", ["y"], ["total"], keepdims=0)],
        "scaled", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                   helper.make_tensor_value_info("gain", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("total", TensorProto.FLOAT, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("scalar") / "scaled.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.slow
def test_a_scalar_input_and_output_reach_tflite_and_its_bundle(scaled, tmp_path):
    out = tmp_path / "out"
    result = run_cli("convert", str(scaled), "--to", "tflite", "-o", str(out), "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    target = json.loads((tmp_path / "r.json").read_text())["targets"][0]
    assert target["status"] == "passed", target
    links = {link["source"]: link for side in ("inputs", "outputs") for link in target["conversion"]["io"][side]}
    assert links["gain"].get("scalar") and links["total"].get("scalar") and not links["x"].get("scalar")

    # By hand, as a device would run it: the scalar goes in as one element.
    from tests.conftest import litert_in_clean_process

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    produced = litert_in_clean_process(out / "model.tflite", {links["x"]["name"]: x,
                                                               links["gain"]["name"]: np.array([2.5], np.float32)})
    assert np.allclose(produced[links["total"]["name"]].reshape(()), 2.5 * x.sum())

    bundle = tmp_path / "bundle"
    packaged = run_cli("package", str(scaled), "--target", "tflite", "-o", str(bundle))
    assert packaged.returncode == 0, packaged.stderr
    manifest = json.loads((bundle / "modelport.json").read_text())
    assert any(spec.get("scalar") for spec in manifest["inputs"])
    selftest = subprocess.run([sys.executable, str(bundle / "run.py"), "--selftest"], capture_output=True, text=True,
                              timeout=300)
    assert selftest.returncode == 0 and "selftest passed" in selftest.stdout, selftest.stdout + selftest.stderr
