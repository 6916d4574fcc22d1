"""The ORT-format target: made by onnxruntime's own converter, run by onnxruntime from the .ort
file, with the operator config a minimal build needs beside it; and every command that takes a
model takes an .ort file (inspect, validate, bench), with no ORT-specific code outside its module."""

import json

import numpy as np

from modelport import api
from tests.conftest import ROOT, run_cli


def test_ort_target_runs_on_onnxruntime_and_keeps_its_operator_config(models, tmp_path):
    result = api.convert(str(models["cnn_pt2"]), api.ConvertOptions(targets=("onnx", "ort"), output_dir=tmp_path))
    items = {t.target: t for t in result.targets}
    assert {t: i.status for t, i in items.items()} == {"onnx": "passed", "ort": "passed"}, \
        [t.error for t in result.targets]
    ort_item = items["ort"]
    assert ort_item.path == tmp_path / "model.ort" and ort_item.artifact.path_taken == ("pt2", "onnx", "ort")
    assert max(o.max_abs_diff for o in ort_item.numeric.outputs) < 1e-5
    assert ort_item.path.read_bytes()[4:8] == b"ORTM"
    config = tmp_path / "model.required_operators.config"
    ops = [line for line in config.read_text().splitlines() if line and not line.startswith("#")]
    assert any("Conv" in line for line in ops), ops  # (fixed optimizations may fuse it: FusedConv)
    assert "# - model.ort" in config.read_text() and "/tmp" not in config.read_text()

    # Independent re-run: onnxruntime on the .ort file against onnxruntime on the .onnx file.
    import onnxruntime as ort

    feed = {"image": np.random.default_rng(5).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)}
    expected = ort.InferenceSession(str(items["onnx"].path), providers=["CPUExecutionProvider"]).run(None, feed)
    produced = ort.InferenceSession(str(ort_item.path), providers=["CPUExecutionProvider"]).run(None, feed)
    np.testing.assert_allclose(produced[0], expected[0], atol=1e-5)


def test_every_command_takes_an_ort_file(models, tmp_path):
    out = tmp_path / "out"
    result = run_cli("convert", str(models["mlp_onnx"]), "--to", "ort", "-o", str(out))
    assert result.returncode == 0, result.stderr
    model = out / "model.ort"
    renamed = tmp_path / "renamed.bin"  # recognised by content, not by its name
    renamed.write_bytes(model.read_bytes())

    inspected = run_cli("inspect", str(renamed), "--json")
    assert inspected.returncode == 0, inspected.stderr
    described = json.loads(inspected.stdout)
    assert described["format"] == "ort" and [i["name"] for i in described["inputs"]] == ["x"]

    validated = run_cli("validate", str(models["mlp_onnx"]), str(renamed), "--report", str(tmp_path / "v.json"))
    assert validated.returncode == 0, validated.stderr
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["targets"][0]["target"] == "ort" and report["targets"][0]["status"] == "passed"

    benched = run_cli("bench", str(model), "--runs", "5", "--warmup", "1", "--input", "x:2x6")
    assert benched.returncode == 0, benched.stderr
    assert "ORT format" in benched.stdout

    doctor = json.loads(run_cli("doctor", "--json").stdout)
    assert doctor["targets"]["ort"]["works"]


def test_adding_ort_is_one_module_and_one_registry_line():
    module = ROOT / "modelport" / "formats" / "ort.py"
    assert "FORMAT = FormatSpec(" in module.read_text() and "EDGES = (" in module.read_text()
    needles = ('formats.ort', 'OrtFormat', '"ort"', "'ort'", '".ort"', "ORTM")
    mentions = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "modelport").rglob("*.py")
                      if p != module and any(n in p.read_text() for n in needles))
    assert mentions == ["modelport/registry.py"]
