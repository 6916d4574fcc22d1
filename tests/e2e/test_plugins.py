"""Third-party formats through the `modelport.formats` entry-point group: a package outside
modelport adds a target (a module plus a dist-info naming it), and convert, validate, doctor and
the CLI's help pick it up with no edit to modelport. And `--to all` is what is installed here."""

import json
import os
import textwrap

import pytest

from tests.conftest import error_line, run_cli

PLUGIN = textwrap.dedent('''
    """A third-party format: ONNX optimized offline by onnxruntime (basic, portable rewrites)."""
    import shutil
    from pathlib import Path

    from modelport.artifact import Artifact, IOMapping
    from modelport.formats.base import Edge, FormatSpec, Requirement, TargetSpec
    from modelport.validators.compare import Tolerance

    def convert(onnx_artifact, workdir: Path, ctx) -> Artifact:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(workdir / "model.optimized.onnx")
        ort.InferenceSession(str(onnx_artifact.path), options, providers=["CPUExecutionProvider"])
        io = IOMapping.identity(list(onnx_artifact.inputs), list(onnx_artifact.outputs))
        return Artifact(path=workdir / "model.optimized.onnx", format="ortopt", inputs=onnx_artifact.inputs,
                        outputs=onnx_artifact.outputs, io=onnx_artifact.io.then(io),
                        path_taken=(*onnx_artifact.path_taken, "ortopt"), extra={"converter": "plugin"})

    FORMAT = FormatSpec(
        name="ortopt", description="ONNX optimized by onnxruntime (a plugin)",
        requirement=Requirement("onnx", modules=("onnxruntime",)),
        target=TargetSpec(runner="modelport.targets.onnx:OnnxRuntimeRunner", file_name="model.optimized.onnx",
                          tolerances={"none": Tolerance(1e-5, 1e-4)}),
    )
    EDGES = (Edge("onnx2ortopt", "onnx", "ortopt", "mp_ortopt_plugin:convert",
                  Requirement("onnx", modules=("onnxruntime",))),)
''')


def _install_plugin(site, monkeypatch, entry="mp_ortopt_plugin", extra_entries=""):
    site.mkdir(exist_ok=True)
    (site / "mp_ortopt_plugin.py").write_text(PLUGIN)
    info = site / "mp_ortopt_plugin-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mp-ortopt-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[modelport.formats]\nortopt = {entry}\n{extra_entries}")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))


def test_a_plugin_adds_a_target_without_editing_modelport(models, tmp_path, monkeypatch):
    _install_plugin(tmp_path / "site", monkeypatch)
    result = run_cli("convert", str(models["mlp_onnx"]), "--to", "ortopt", "-o", str(tmp_path / "out"),
                     "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    target = report["targets"][0]
    assert (target["target"], target["status"]) == ("ortopt", "passed")
    assert target["conversion"]["path"] == ["onnx", "ortopt"]
    assert (tmp_path / "out" / "model.optimized.onnx").is_file()

    # The written model validates against its source in a separate command, on onnxruntime.
    validated = run_cli("validate", str(models["mlp_onnx"]), str(tmp_path / "out" / "model.optimized.onnx"))
    assert validated.returncode == 0, validated.stderr

    helped = run_cli("convert", "--help")
    assert "ortopt" in helped.stdout
    doctor = json.loads(run_cli("doctor", "--json").stdout)
    assert doctor["targets"]["ortopt"]["works"] and any(e["name"] == "onnx2ortopt" for e in doctor["edges"])


def test_a_broken_plugin_is_reported_and_the_rest_works(models, tmp_path, monkeypatch):
    _install_plugin(tmp_path / "site", monkeypatch, extra_entries="broken = no_such_module_here\n")
    doctor = run_cli("doctor", "--json")
    assert doctor.returncode == 0, doctor.stderr
    problems = json.loads(doctor.stdout)["plugins"]["problems"]
    assert len(problems) == 1 and "no_such_module_here" in problems[0]
    result = run_cli("convert", str(models["mlp_onnx"]), "--to", "onnx", "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "ignoring plugin 'broken'" in result.stderr


def test_to_all_skips_what_is_not_installed_and_says_how_to_install_it(models, tmp_path, monkeypatch):
    # A machine without onnx2tf (and without the onnx2tf2 toolchain): every TF target is out of
    # reach from an ONNX source.
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "no-toolchains"))
    report = tmp_path / "r.json"
    result = run_cli("convert", str(models["mlp_onnx"]), "--to", "all", "-o", str(tmp_path / "out"),
                     "--report", str(report), python_prelude="import sys; sys.modules['onnx2tf'] = None")
    assert result.returncode == 0, result.stderr
    targets = {t["target"]: t for t in json.loads(report.read_text())["targets"]}
    assert {name: t["status"] for name, t in targets.items()} == {
        "onnx": "passed", "tflite": "skipped", "torchscript": "passed", "savedmodel": "skipped", "tfjs": "skipped",
        "ort": "passed"}
    for name in ("tflite", "savedmodel", "tfjs"):
        assert "pip install 'modelport[tf]'" in targets[name]["error"] and "onnx2tf" in targets[name]["error"]
    assert "skipped" in result.stdout

    # Named explicitly, the same target is an error: exit 4 with the install line.
    named = run_cli("convert", str(models["mlp_onnx"]), "--to", "tflite", "-o", str(tmp_path / "named"),
                    python_prelude="import sys; sys.modules['onnx2tf'] = None")
    assert named.returncode == 4
    assert "pip install 'modelport[tf]'" in error_line(named)


@pytest.mark.parametrize("flag", ["--no-validate"])
def test_converted_not_validated_is_its_own_status(models, tmp_path, flag):
    report = tmp_path / "r.json"
    result = run_cli("convert", str(models["mlp_onnx"]), "--to", "onnx", flag, "-o", str(tmp_path / "out"),
                     "--report", str(report))
    assert result.returncode == 0, result.stderr
    assert json.loads(report.read_text())["targets"][0]["status"] == "converted"
    assert "converted" in result.stdout
