"""The TF.js runner's backend: @tensorflow/tfjs-backend-wasm, its .wasm files read from the npm
package (nothing fetched: Node runs under the test suite's network guard too), the pure-JS CPU
backend for a model using an op wasm has no kernel for (or whose wasm kernel refuses the case), or
when wasm cannot start; the report names the backend that ran, and the tolerance is the target's
own either way."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from modelport import registry
from modelport.targets.tfjs import RUNNER_DIR, tfjs_version
from tests.conftest import run_cli

TOLERANCE = registry.default().spec("tfjs").target.tolerances["none"]


def _tfjs_target(report_path):
    report = json.loads(report_path.read_text())
    return next(t for t in report["targets"] if t["target"] == "tfjs")


@pytest.fixture(scope="module")
def cnn_tfjs(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn_tfjs")
    result = run_cli("convert", str(models["cnn_pt2"]), "--to", "tfjs", "-o", str(out), "--report", str(out / "r.json"))
    return out, result


def test_cnn_validates_on_wasm(cnn_tfjs):
    out, result = cnn_tfjs
    assert result.returncode == 0, result.stderr
    target = _tfjs_target(out / "r.json")
    assert target["status"] == "passed", target["error"]
    assert target["runtime"] == f"tfjs {tfjs_version()} (wasm)"
    assert (target["numeric"]["atol"], target["numeric"]["rtol"]) == (TOLERANCE.atol, TOLERANCE.rtol)


def _one_op_onnx(path, op, dtype, **attrs):
    """y = op(x, w): x [1, 4, 8], w [8, 3] a constant."""
    import onnx
    from onnx import helper, numpy_helper

    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    weight = numpy_helper.from_array((np.random.default_rng(0).normal(size=(8, 3)) * 4).astype(dtype), "w")
    graph = helper.make_graph([helper.make_node(op, ["x", "w"], ["y"], **attrs)], op.lower(),
                              [helper.make_tensor_value_info("x", elem, [1, 4, 8])],
                              [helper.make_tensor_value_info("y", elem, [1, 4, 3])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)


@pytest.mark.parametrize("op, dtype, attrs, tf_op, why", [
    # Einsum has a CPU kernel and none in tfjs-backend-wasm 4.22.0.
    ("Einsum", "float32", {"equation": "bij,jk->bik"}, "Einsum", "wasm lacks kernel Einsum"),
    # wasm has a BatchMatMul kernel, which refuses int32.
    ("MatMul", "int32", {}, "BatchMatMulV2",
     "wasm lacks support: BatchMatMul for non non-float32 tensors not yet supported."),
], ids=["no-kernel", "kernel-refuses"])
def test_an_op_wasm_cannot_run_runs_on_cpu_and_is_named(tmp_path, op, dtype, attrs, tf_op, why):
    _one_op_onnx(tmp_path / "model.onnx", op, dtype, **attrs)
    result = run_cli("convert", str(tmp_path / "model.onnx"), "--to", "tfjs", "-o", str(tmp_path / "out"),
                     "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    ops = {node["op"] for node in json.loads((tmp_path / "out" / "tfjs" / "model.json").read_text())
           ["modelTopology"]["node"]}
    assert tf_op in ops, ops  # (the converter kept the op: the fallback below is really exercised)
    target = _tfjs_target(tmp_path / "r.json")
    assert target["status"] == "passed", target["error"]
    assert target["runtime"] == f"tfjs {tfjs_version()} (cpu: {why})"
    assert (target["numeric"]["atol"], target["numeric"]["rtol"]) == (TOLERANCE.atol, TOLERANCE.rtol)


def _runner_with_broken_wasm(folder):
    """The runner's files with its node_modules linked, except tfjs-backend-wasm: copied with .wasm
    binaries that are not WebAssembly."""
    for name in ("runner.js", "tfjs_model.js", "package.json"):
        shutil.copy(RUNNER_DIR / name, folder / name)
    real = RUNNER_DIR / "node_modules"
    (folder / "node_modules" / "@tensorflow").mkdir(parents=True)
    for entry in real.iterdir():
        if entry.name != "@tensorflow":
            (folder / "node_modules" / entry.name).symlink_to(entry)
    for entry in (real / "@tensorflow").iterdir():
        if entry.name != "tfjs-backend-wasm":
            (folder / "node_modules" / "@tensorflow" / entry.name).symlink_to(entry)
    wasm = folder / "node_modules" / "@tensorflow" / "tfjs-backend-wasm"
    (wasm / "dist").mkdir(parents=True)
    shutil.copy(real / "@tensorflow" / "tfjs-backend-wasm" / "package.json", wasm / "package.json")
    shutil.copy(real / "@tensorflow" / "tfjs-backend-wasm" / "dist" / "tf-backend-wasm.node.js", wasm / "dist")
    for binary in (real / "@tensorflow" / "tfjs-backend-wasm" / "dist").glob("*.wasm"):
        (wasm / "dist" / binary.name).write_bytes(b"not webassembly")


def test_wasm_that_cannot_start_falls_back_to_cpu_and_says_why(cnn_tfjs, tmp_path, monkeypatch):
    out, result = cnn_tfjs
    assert result.returncode == 0, result.stderr
    runner = tmp_path / "runner"
    runner.mkdir()
    _runner_with_broken_wasm(runner)
    monkeypatch.setenv("MODELPORT_TFJS_RUNNER_DIR", str(runner))
    bench = run_cli("bench", str(out / "tfjs"), "--runs", "3", "--warmup", "1", "--report", str(tmp_path / "b.json"))
    assert bench.returncode == 0, bench.stderr
    runtime = json.loads((tmp_path / "b.json").read_text())["results"][0]["runtime"]
    assert runtime.startswith(f"tfjs {tfjs_version()} (cpu: wasm did not initialise: "), runtime


def test_node_processes_run_under_the_network_guard():
    """The guard the tests above run under reaches Node: a fetch fails and is logged."""
    log = Path(os.environ["MODELPORT_TEST_NET_LOG"])
    done = subprocess.run(["node", "-e", "fetch('https://registry.npmjs.org/').then(() => process.exit(0), "
                                         "(err) => { console.error(err.message); process.exit(7); })"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 7 and "blocked by the test suite" in done.stderr, done.stderr
    assert "node fetch https://registry.npmjs.org/" in log.read_text()
    log.write_text("")  # this test's own attempt, not one to fail it for
