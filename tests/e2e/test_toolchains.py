"""Toolchains: converters in their own environments (docs/toolchains.md).

The onnx2tf2 toolchain (onnx2tf 2.x, Python 3.12) is built by `make install` where Python 3.12
exists; these tests use that build (under the default MODELPORT_HOME) and never download."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelport.errors import ConversionFailed, ModelportError
from modelport.toolchains import declared, find_python, get, run, state
from modelport.toolchains.runner import ToolchainRunner
from tests.conftest import ROOT, error_line, run_cli

EXAMPLE = str(ROOT / "examples" / "tiny_classifier.pt2")
needs_python312 = pytest.mark.skipif(find_python("3.12") is None, reason="Python 3.12 is not on this machine")


def _installed() -> None:
    found = state(get("onnx2tf2"))
    assert found.installed, f"the onnx2tf2 toolchain is not built ({found.problem}): `make install` builds it"


def test_a_missing_toolchain_is_exit_4_naming_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "empty-home"))
    listed = run_cli("toolchain", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    entry = next(t for t in json.loads(listed.stdout) if t["name"] == "onnx2tf2")
    assert not entry["installed"] and "modelport toolchain install onnx2tf2" in entry["problem"]
    assert entry["python_version"] == "3.12"

    forced = run_cli("convert", EXAMPLE, "--to", "tflite", "--converter", "onnx2tf2", "-o", str(tmp_path / "out"))
    assert forced.returncode == 4, forced.stderr
    assert "The toolchain 'onnx2tf2' is not installed" in error_line(forced)
    assert "modelport toolchain install onnx2tf2" in error_line(forced)
    assert not (tmp_path / "out" / "model.tflite").exists()

    # Without --converter the planner takes the path that is installed: onnx2tf 1.29.
    plan = run_cli("convert", EXAMPLE, "--to", "tflite", "--explain")
    assert plan.returncode == 0 and "(torch2onnx, onnx2tf)" in plan.stdout, plan.stdout

    doctor = run_cli("doctor", "--json")
    chains = {t["name"]: t for t in json.loads(doctor.stdout)["toolchains"]}
    assert chains["onnx2tf2"]["installed"] is False
    edge = next(e for e in json.loads(doctor.stdout)["edges"] if e["name"] == "onnx2tf2")
    assert edge["toolchain"] == "onnx2tf2" and edge["install"] == "modelport toolchain install onnx2tf2"


def test_toolchain_refusals(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "home"))
    unknown = run_cli("toolchain", "install", "nope")
    assert unknown.returncode == 2 and "No toolchain is called 'nope'" in error_line(unknown)
    nothing = run_cli("toolchain", "install")
    assert nothing.returncode == 2 and "--defaults" in error_line(nothing)
    removed = run_cli("toolchain", "remove", "onnx2tf2")
    assert removed.returncode == 0 and "was not installed" in removed.stdout
    converter = run_cli("convert", EXAMPLE, "--to", "tflite", "--converter", "onnx2tf3", "--explain")
    assert converter.returncode == 2 and "--converter names 'onnx2tf3'" in error_line(converter)


def test_a_half_built_or_stale_toolchain_is_not_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path))
    toolchain = get("onnx2tf2")
    (toolchain.env / "bin").mkdir(parents=True)  # a build that died before its marker
    assert not state(toolchain).installed
    (toolchain.env / "modelport-toolchain.json").write_text(json.dumps({"lock_sha256": "0" * 64}))
    stale = state(toolchain)
    assert not stale.installed and "another lock" in (stale.problem or "")


def test_every_declared_toolchain_has_a_complete_hashed_lock():
    for toolchain in declared().values():
        lines = [ln for ln in toolchain.lock.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        assert lines and all("==" in ln and "--hash=sha256:" in ln for ln in lines), toolchain.name
        assert toolchain.script("convert.py").exists() or list(toolchain.folder.glob("*.py")), toolchain.name


@needs_python312
def test_onnx2tf2_is_preferred_where_installed_and_its_tflite_passes_on_litert(tmp_path):
    _installed()
    out = tmp_path / "out"
    result = run_cli("convert", EXAMPLE, "--to", "tflite", "-o", str(out), "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    target = json.loads((tmp_path / "r.json").read_text())["targets"][0]
    assert target["status"] == "passed"
    assert target["conversion"]["converter"]["converter"].startswith("onnx2tf 2.")
    assert not target["conversion"]["converter"].get("fallback_from")
    assert target["conversion"]["io"]["inputs"][0]["perm"] == [0, 2, 3, 1]  # recorded: NCHW -> NHWC
    # Only the model and its sidecar land: onnx2tf 2.x's schema files, float16 model and report stay behind.
    assert sorted(p.name for p in out.iterdir()) == ["model.tflite", "model.tflite.modelport.json"]

    # An independent re-run: LiteRT on the artifact against the source model in torch.
    import torch
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out / "model.tflite"))
    runner = interpreter.get_signature_runner()
    image = np.random.default_rng(3).uniform(0, 1, (1, 3, 32, 32)).astype(np.float32)
    expected = torch.export.load(EXAMPLE).module()(torch.from_numpy(image)).detach().numpy()
    produced = next(iter(runner(image=image.transpose(0, 2, 3, 1)).values()))
    np.testing.assert_allclose(produced, expected, atol=1e-4, rtol=1e-3)

    # Quantized work goes to onnx2tf 1.29 (the 2.x edge writes float32 only), not through a failure.
    plan = run_cli("convert", EXAMPLE, "--to", "tflite", "--quantize", "fp16", "--explain")
    assert "(torch2onnx, onnx2tf)" in plan.stdout, plan.stdout


@needs_python312
def test_the_protocol_reports_a_failing_conversion_as_exit_3_material(tmp_path):
    _installed()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    with pytest.raises(ConversionFailed) as failed:
        run("onnx2tf2", "convert.py", {"model": str(broken), "output_dir": str(tmp_path / "o")})
    assert failed.value.message.startswith("onnx2tf 2.x failed:"), failed.value.message
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.tflite"))


@needs_python312
def test_a_tflite_with_onnx2tf2s_custom_op_fallback_is_a_failed_conversion(tmp_path):
    """onnx2tf 2.x turns what it cannot lower into CUSTOM ONNX_* ops and exits 0 with a file LiteRT
    cannot run (seen: Einsum 'ii->i'). Here that is a conversion failure naming the op."""
    _installed()
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Einsum", ["x"], ["y"], equation="ii->i")
    graph = helper.make_graph([node], "diagonal", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "diagonal.onnx")
    forced = run_cli("convert", str(tmp_path / "diagonal.onnx"), "--to", "tflite", "--converter", "onnx2tf2",
                     "-o", str(tmp_path / "out"))
    assert forced.returncode == 3, forced.stderr
    assert "could not lower ONNX_EINSUM to TFLite builtin ops" in error_line(forced)
    assert not (tmp_path / "out" / "model.tflite").exists()


@needs_python312
def test_onnx2tf2_converts_what_onnx2tf_1_29_cannot(tmp_path):
    """An FFT (ONNX DFT): onnx2tf 1.29 fails on it (tests/cli/test_errors.py); onnx2tf 2.x writes a
    TFLite file that LiteRT runs and that matches the source model."""
    _installed()
    source = f"{ROOT / 'fixtures' / 'models' / 'tiny_cnn.py'}:build_spectrum"
    result = run_cli("convert", source, "--to", "tflite", "-o", str(tmp_path / "out"),
                     "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    target = json.loads((tmp_path / "r.json").read_text())["targets"][0]
    assert target["status"] == "passed" and target["conversion"]["converter"]["converter"].startswith("onnx2tf 2.")


class _ToolchainLiteRT(ToolchainRunner):
    """LiteRT as the onnx2tf2 toolchain ships it, behind modelport's Runner interface."""

    toolchain = "onnx2tf2"
    server = "serve_litert.py"


@needs_python312
def test_a_runner_in_a_toolchain_round_trips_through_the_protocol(models, tmp_path):
    """The toolchain's own LiteRT (2.1.2) runs a .tflite through the runner protocol and agrees with
    modelport's LiteRT (2.1.0) on the same inputs; a crash of its server is an error, not a hang."""
    _installed()
    from modelport.targets.isolated import IsolatedRunner

    converted = run_cli("convert", str(models["cnn_pt2"]), "--to", "tflite", "--no-validate", "-o", str(tmp_path))
    assert converted.returncode == 0, converted.stderr
    model = tmp_path / "model.tflite"
    image = np.random.default_rng(5).uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)
    with _ToolchainLiteRT(model) as remote, IsolatedRunner("modelport.targets.tflite:LiteRTRunner", model) as local:
        assert "toolchain" in remote.runtime and [s.name for s in remote.inputs] == [s.name for s in local.inputs]
        far, near = remote.run({"image": image}), local.run({"image": image})
        assert sorted(far) == sorted(near)
        for name in near:
            np.testing.assert_allclose(far[name], near[name], atol=1e-5)
        seconds = remote.time_runs({"image": image}, runs=5, warmup=1)
        assert len(seconds) == 5 and all(s > 0 for s in seconds)
        remote._proc.kill()  # the server dies: the next call says so
        with pytest.raises(ModelportError, match="runtime process died"):
            remote.run({"image": image})
