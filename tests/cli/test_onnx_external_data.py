"""ONNX external data: resolved by modelport before any runtime opens the model. Inside the
model's folder it converts and validates, and the ONNX target carries its data; anywhere else
(absolute, '..', a symlink leading out, past the end of the file) every command refuses it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import error_line, run_cli


def _model(folder: Path, location: str | None = None) -> Path:
    """y = relu(x @ w), w (4x3) saved as external data; `location` rewrites where it points."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    weight = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "model.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
              size_threshold=0)
    if location is not None:
        proto = onnx.load(str(path), load_external_data=False)
        for entry in proto.graph.initializer[0].external_data:
            if entry.key == "location":
                entry.value = location
        onnx.save(proto, str(path))
    return path


def test_legitimate_external_data_converts_validates_and_travels(tmp_path):
    source = _model(tmp_path / "src")
    out = tmp_path / "out"
    result = run_cli("convert", str(source), "--to", "onnx,ort", "-o", str(out), "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    statuses = {t["target"]: t["status"] for t in json.loads((tmp_path / "r.json").read_text())["targets"]}
    assert statuses == {"onnx": "passed", "ort": "passed"}
    assert (out / "weights.bin").read_bytes() == (tmp_path / "src" / "weights.bin").read_bytes()
    # The written ONNX runs on its own, in its new folder, with the data beside it.
    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": np.ones((1, 4), np.float32)})[0]
    np.testing.assert_allclose(y, np.ones((1, 4)) @ (np.arange(12).reshape(4, 3) / 10), rtol=1e-6)
    validated = run_cli("validate", str(source), str(out / "model.onnx"))
    assert validated.returncode == 0, validated.stderr


@pytest.mark.parametrize("how", ["absolute", "parent", "symlink", "past_the_end"])
def test_external_data_outside_the_model_is_refused_by_every_command(tmp_path, how):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(12, dtype=np.float32).tobytes())
    if how == "absolute":
        path = _model(tmp_path / "m", str(secret))
    elif how == "parent":
        path = _model(tmp_path / "m", "../secret.bin")
    elif how == "symlink":
        path = _model(tmp_path / "m")
        (tmp_path / "m" / "weights.bin").unlink()
        os.symlink(secret, tmp_path / "m" / "weights.bin")
    else:
        path = _model(tmp_path / "m")
        (tmp_path / "m" / "weights.bin").write_bytes(b"\0" * 8)  # the tensor needs 48 bytes
    expected = {"absolute": "outside the model's folder", "parent": "outside the model's folder",
                "symlink": "leads outside the model's folder", "past_the_end": "beyond its 8 bytes"}[how]
    config = tmp_path / "modelport.toml"
    config.write_text(f'[[models]]\nsource = "{path}"\ntargets = ["onnx"]\n')
    for argv in (["convert", str(path), "--to", "onnx", "-o", str(tmp_path / "out")], ["inspect", str(path)],
                 ["bench", str(path), "--runs", "2"], ["validate", str(path), str(path)],
                 ["check", str(config), "-o", str(tmp_path / "out")]):
        result = run_cli(*argv)
        assert result.returncode == 2, (argv[0], result.stdout, result.stderr)
        line = error_line(result)
        assert expected in line and "tensor 'w'" in line, (argv[0], line)
    assert not (tmp_path / "out").exists()
