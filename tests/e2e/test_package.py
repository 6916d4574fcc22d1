"""`modelport package`: bundles as a user meets them. Unpacked elsewhere, the runner's self-test runs
with only numpy and the runtime; a changed weight makes it fail; archives are byte-identical;
bundles are inputs to validate, bench and inspect; hostile archives are refused."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import error_line, run_cli

# Runs the bundle's runner as its own program, then lists the non-standard-library modules it loaded.
PROBE = textwrap.dedent("""
    import runpy, sys
    sys.argv = ["run.py", "--selftest"]
    try:
        runpy.run_path("run.py", run_name="__main__")
    except SystemExit as done:
        code = done.code
    loaded = sorted({m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names))
    print("LOADED=" + ",".join(loaded))
    sys.exit(code)
""")
FORBIDDEN = {"modelport", "torch", "tensorflow", "onnx", "jax", "keras", "tf_keras", "onnx2tf"}


def _selftest(folder: Path) -> tuple[subprocess.CompletedProcess, set[str]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of modelport on the path
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=folder, capture_output=True, text=True, env=env,
                            timeout=300, stdin=subprocess.DEVNULL)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("LOADED=")), "LOADED=")
    return result, set(filter(None, line[len("LOADED="):].split(",")))


@pytest.fixture(scope="module")
def onnx_bundle(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles")
    (out / "labels.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    result = run_cli("package", str(models["classifier_pt2"]), "--target", "onnx", "-o", str(out / "b.zip"),
                     "--labels", str(out / "labels.txt"), "--metadata", "version=1.2")
    assert result.returncode == 0, result.stderr
    return out / "b.zip"


def test_an_onnx_bundle_unpacked_elsewhere_passes_its_selftest_and_fails_on_a_changed_weight(onnx_bundle, tmp_path):
    folder = tmp_path / "device"
    with zipfile.ZipFile(onnx_bundle) as archive:
        archive.extractall(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "golden.npz", "labels.txt", "model.onnx",
                                                        "model.onnx.modelport.json", "modelport.json", "run.py"]
    manifest = json.loads((folder / "modelport.json").read_text())
    assert manifest["schema"] == "modelport.bundle/1" and manifest["metadata"] == {"version": "1.2"}
    assert manifest["labels"] == "labels.txt" and manifest["validation"]["status"] == "passed"
    assert manifest["inputs"][0]["name"] == "image" and manifest["golden"]["samples"] == 3
    result, loaded = _selftest(folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "selftest passed" in result.stdout
    assert not loaded & FORBIDDEN and {"numpy", "onnxruntime"} <= loaded, loaded

    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(folder / "model.onnx"))
    weight = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(weight).copy()
    values.flat[0] += 10.0  # one weight, changed
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    onnx.save(model, str(folder / "model.onnx"))
    drifted, _ = _selftest(folder)
    assert drifted.returncode == 1 and "selftest FAILED" in drifted.stdout, drifted.stdout + drifted.stderr


def test_archives_are_byte_identical_and_tar_gz_works(models, onnx_bundle, tmp_path):
    again = run_cli("package", str(models["classifier_pt2"]), "--target", "onnx", "-o", str(tmp_path / "again.zip"),
                    "--labels", str(onnx_bundle.parent / "labels.txt"), "--metadata", "version=1.2")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.zip").read_bytes() == onnx_bundle.read_bytes()
    tarred = run_cli("package", str(models["classifier_pt2"]), "--target", "onnx", "-o", str(tmp_path / "b.tar.gz"))
    assert tarred.returncode == 0, tarred.stderr
    with tarfile.open(tmp_path / "b.tar.gz") as archive:
        assert {m.mtime for m in archive.getmembers()} == {0} and "run.py" in archive.getnames()


def test_bundles_are_inputs_to_validate_bench_and_inspect(models, onnx_bundle, tmp_path):
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(onnx_bundle) as archive:
        archive.extractall(folder)
    for bundle in (onnx_bundle, folder):
        validated = run_cli("validate", str(models["classifier_pt2"]), str(bundle))
        assert validated.returncode == 0, validated.stderr
        benched = run_cli("bench", str(bundle), "--runs", "2", "--warmup", "0")
        assert benched.returncode == 0, benched.stderr
        inspected = run_cli("inspect", str(bundle), "--json")
        assert inspected.returncode == 0, inspected.stderr
        described = json.loads(inspected.stdout)
        assert described["format"] == "onnx" and described["bundle"]["metadata"] == {"version": "1.2"}


def _hostile_zip(path: Path, name: str, link: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("modelport.json", json.dumps({"model": "model.onnx"}))
        entry = zipfile.ZipInfo(name)
        if link:
            entry.external_attr = (0o120777 << 16)  # a symlink entry
        archive.writestr(entry, "/etc/passwd" if link else "payload")
    return path


@pytest.mark.parametrize("name, link", [("../escaped.txt", False), ("/tmp/absolute.txt", False),
                                        ("sub/../../escaped.txt", False), ("model.onnx", True)])
def test_hostile_bundle_archives_are_refused(tmp_path, name, link):
    archive = _hostile_zip(tmp_path / "evil.zip", name, link)
    for argv in (["inspect", str(archive)], ["bench", str(archive)], ["validate", str(archive), str(archive)]):
        result = run_cli(*argv)
        assert result.returncode == 2, (argv[0], result.stderr)
        line = error_line(result)
        assert "would land outside the folder it is unpacked to" in line, (argv[0], line)
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/absolute.txt").exists()


def test_a_tar_bundle_with_a_link_is_refused(tmp_path):
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        data = json.dumps({"model": "model.onnx"}).encode()
        info = tarfile.TarInfo("modelport.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("model.onnx")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    result = run_cli("inspect", str(path))
    assert result.returncode == 2 and "is a link or a device" in error_line(result)


def test_refusals_before_any_work(models, tmp_path):
    source = tmp_path / "model.pt2"
    shutil.copyfile(models["classifier_pt2"], source)
    cases = [(["--target", "onnx", "-o", str(source)], "is the source itself"),
             (["--target", "tflite", "--quantize", "int8", "-o", str(tmp_path / "b")], "needs --calibration-data"),
             (["--target", "onnx", "--metadata", "novalue", "-o", str(tmp_path / "b")], "expected KEY=VALUE"),
             (["--target", "onnx", "--labels", str(tmp_path / "none.txt"), "-o", str(tmp_path / "b")], "is not a file")]
    for argv, fragment in cases:
        result = run_cli("package", str(source), *argv)
        assert result.returncode == 2, (argv, result.stderr)
        assert fragment in error_line(result), (argv, error_line(result))
    assert source.read_bytes() == models["classifier_pt2"].read_bytes() and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_an_int8_tflite_bundle_runs_on_litert_alone(models, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", image=rng.uniform(-1, 1, (10, 1, 3, 32, 32)).astype(np.float32))
    result = run_cli("package", str(models["classifier_pt2"]), "--target", "tflite", "--quantize", "int8",
                     "--calibration-data", str(tmp_path / "calib.npz"), "-o", str(tmp_path / "bundle"))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "bundle" / "modelport.json").read_text())
    image = manifest["inputs"][0]
    # int8 I/O, channel-last: the runner quantizes with the file's own scale and zero point, and transposes.
    assert image["model_dtype"] == "int8" and image["perm"] == [0, 2, 3, 1] and image["scale"] > 0
    assert manifest["golden"]["samples"] == 2  # the held-out fifth of the calibration samples
    device = tmp_path / "device"
    shutil.copytree(tmp_path / "bundle", device)
    selftest, loaded = _selftest(device)
    assert selftest.returncode == 0, selftest.stdout + selftest.stderr
    assert not loaded & FORBIDDEN and "ai_edge_litert" in loaded, loaded


@pytest.mark.slow
def test_a_tfjs_bundle_runs_on_node_alone_and_fails_on_a_changed_weight(models, tmp_path):
    from modelport.targets.tfjs import node_modules_dir

    result = run_cli("package", str(models["classifier_pt2"]), "--target", "tfjs", "-o", str(tmp_path / "bundle"))
    assert result.returncode == 0, result.stderr
    device = tmp_path / "device"
    shutil.copytree(tmp_path / "bundle", device)
    assert json.loads((device / "package.json").read_text())["dependencies"]["@tensorflow/tfjs"]
    # `npm install` would fetch @tensorflow/tfjs; offline, the runner's own copy stands in for it.
    env = {**os.environ, "NODE_PATH": str(node_modules_dir() / "node_modules")}

    def selftest() -> subprocess.CompletedProcess:
        return subprocess.run(["node", "run.js", "--selftest"], cwd=device, capture_output=True, text=True, env=env,
                              timeout=300, stdin=subprocess.DEVNULL)

    passed = selftest()
    assert passed.returncode == 0 and "selftest passed" in passed.stdout, passed.stdout + passed.stderr

    # A user's own inputs, as JSON values, in the source model's names and layout; the outputs
    # match what the source model gave for the same inputs (the golden vectors, read with numpy).
    with np.load(device / "golden.npz") as golden:
        arrays = dict(golden)
    inputs = {k.removeprefix("input/0/"): v for k, v in arrays.items() if k.startswith("input/0/")}
    expected = {k.removeprefix("output/0/"): v for k, v in arrays.items() if k.startswith("output/0/")}
    assert inputs and expected, sorted(arrays)
    (device / "in.json").write_text(json.dumps(
        {k: {"shape": list(v.shape), "dtype": str(v.dtype), "values": v.ravel().tolist()} for k, v in inputs.items()}))
    ran = subprocess.run(["node", "run.js", "--inputs", "in.json", "-o", "out.json"], cwd=device, capture_output=True,
                         text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert ran.returncode == 0, ran.stderr
    produced = json.loads((device / "out.json").read_text())
    for name, want in expected.items():
        got = np.array(produced[name]["values"], np.float32).reshape(produced[name]["shape"])
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
    (device / "bad.json").write_text("{}")
    refused = subprocess.run(["node", "run.js", "--inputs", "bad.json"], cwd=device, capture_output=True, text=True,
                             env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "lacks input(s)" in refused.stderr, refused.stderr

    shard = sorted((device / "tfjs").glob("*.bin"))[0]
    weights = np.frombuffer(shard.read_bytes(), np.float32).copy()
    weights[np.argmax(np.abs(weights))] += 10.0  # one weight, changed
    shard.write_bytes(weights.tobytes())
    drifted = selftest()
    assert drifted.returncode == 1 and "selftest FAILED" in drifted.stdout, drifted.stdout + drifted.stderr
