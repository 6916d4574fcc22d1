"""torch -> onnx and torch -> tflite for real: the exporter, onnx2tf, onnxruntime and the LiteRT
interpreter, numbers compared. The produced artifacts are also re-run independently here."""

import json
import textwrap

import numpy as np

from modelport import api
from modelport.spec import parse_input
from tests.conftest import error_line, litert_in_clean_process, run_cli


def _convert(source, tmp_path, targets=("onnx", "tflite"), **options):
    return api.convert(str(source), api.ConvertOptions(targets=targets, output_dir=tmp_path / "out", **options))


def _torch_reference(source, feeds):
    import torch

    program = torch.export.load(str(source))
    with torch.no_grad():
        outputs = program.module()(*(torch.from_numpy(v) for v in feeds))
    return [o.numpy() for o in outputs]


def test_pt2_to_onnx_and_tflite_validates_and_an_independent_rerun_agrees(models, tmp_path):
    result = _convert(models["cnn_pt2"], tmp_path)
    assert result.exit_code == 0, [t.error for t in result.targets]
    by_target = {t.target: t for t in result.targets}
    assert [t.status for t in result.targets] == ["passed", "passed"]
    tflite = by_target["tflite"]
    assert tflite.artifact.layout == "nhwc"
    links = {link.source_name: link.perm for link in tflite.artifact.io.outputs}
    # The feature map comes out NHWC from onnx2tf 1.29, NCHW from onnx2tf 2.x: the mapping records which.
    assert links["output_0"] in ((0, 2, 3, 1), None) and links["output_1"] is None, links
    for item in result.targets:
        worst = max(o.max_abs_diff for o in item.numeric.outputs)
        assert worst < 1e-4 and min(o.cosine for o in item.numeric.outputs) > 0.9999
        assert item.latency.p50 > 0 and item.reference_latency.p50 > 0

    # Independent check of the "passed": torch itself vs. LiteRT in a process without TensorFlow.
    image = np.random.default_rng(7).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    features, probs = _torch_reference(models["cnn_pt2"], [image])
    produced = litert_in_clean_process(tflite.path, {"image": image.transpose(0, 2, 3, 1)})
    perm = links["output_0"]
    np.testing.assert_allclose(produced["output_0"], features.transpose(perm) if perm else features, atol=1e-4)
    np.testing.assert_allclose(produced["output_1"], probs, atol=1e-5)

    import onnxruntime as ort

    session = ort.InferenceSession(str(by_target["onnx"].path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"image": image})
    np.testing.assert_allclose(onnx_out[1], probs, atol=1e-5)


def test_dynamic_batch_stays_dynamic(models, tmp_path):
    result = _convert(models["cnn_dynamic_pt2"], tmp_path, samples=2)
    assert result.exit_code == 0, [t.error for t in result.targets]
    assert isinstance(result.source["inputs"][0]["shape"][0], str)  # symbolic dim reported as a name
    import onnx

    onnx_input = onnx.load(str(tmp_path / "out" / "model.onnx")).graph.input[0]
    assert onnx_input.type.tensor_type.shape.dim[0].dim_param  # still a named, dynamic dim
    image = np.random.default_rng(1).uniform(-1, 1, (3, 16, 16, 3)).astype(np.float32)  # batch 3, NHWC
    produced = litert_in_clean_process(tmp_path / "out" / "model.tflite", {"image": image})
    assert produced["output_1"].shape == (3, 5)


def test_torchscript_with_input_and_entry_point(models, entry_file, tmp_path):
    ts = _convert(models["cnn_torchscript"], tmp_path / "ts", inputs=(parse_input("image:1x3x16x16"),))
    assert [t.status for t in ts.targets] == ["passed", "passed"]
    entry = _convert(f"{entry_file}:build", tmp_path / "entry", targets=("tflite",))
    assert entry.targets[0].status == "passed"
    assert entry.targets[0].artifact.path_taken == ("torch", "onnx", "tflite")


def test_named_dim_from_input_flag_stays_dynamic(entry_file, tmp_path):
    result = _convert(f"{entry_file}:build_mlp", tmp_path, targets=("onnx",), inputs=(parse_input("x:batchx6"),))
    assert result.targets[0].status == "passed"
    assert result.source["inputs"][0]["shape"] == ["batch", 6]


def test_erf_is_replaced_so_the_tflite_has_no_flex_ops(tmp_path):
    (tmp_path / "gelu.py").write_text(textwrap.dedent("""
        import torch
        class Gelu(torch.nn.Module):
            def forward(self, x):
                return torch.special.erf(x) * torch.nn.functional.gelu(x)
        def build():
            return Gelu(), (torch.randn(1, 8),)
    """))
    # onnx2tf 1.29 writes Erf as a Flex op unless modelport replaces it (onnx2tf 2.x lowers it itself)
    result = _convert(f"{tmp_path / 'gelu.py'}:build", tmp_path, targets=("tflite",), converters=("onnx2tf",))
    item = result.targets[0]
    assert item.status == "passed", item.error
    assert b"Flex" not in item.path.read_bytes()
    assert any("Erf" in w for w in item.artifact.extra["workarounds"])


def test_flex_only_model_is_an_error_not_a_pass(tmp_path):
    (tmp_path / "det.py").write_text(textwrap.dedent("""
        import torch
        class Det(torch.nn.Module):
            def forward(self, x):
                return torch.linalg.det(x)
        def build():
            return Det(), (torch.randn(1, 4, 4),)
    """))
    result = run_cli("convert", f"{tmp_path / 'det.py'}:build", "--to", "onnx,tflite", "-o", str(tmp_path / "out"))
    assert result.returncode == 3
    assert "FlexMatrixDeterminant" in error_line(result)
    assert "│ onnx   │ passed" in result.stdout  # one target's failure does not stop the others
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.onnx", "model.onnx.modelport.json"]


def test_tolerance_failure_exits_1_naming_the_worst_output(models, tmp_path):
    result = run_cli("convert", str(models["cnn_pt2"]), "--to", "tflite", "--atol", "0", "--rtol", "0",
                     "-o", str(tmp_path), "--report", str(tmp_path / "r.json"))
    assert result.returncode == 1
    line = error_line(result)
    assert "Output 'output_" in line and "max abs diff" in line and "sample" in line
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] is False and report["targets"][0]["status"] == "failed"


def test_user_inputs_npz_are_used(models, tmp_path):
    feeds = np.random.default_rng(0).uniform(0, 1, (2, 1, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", image=feeds)
    result = _convert(models["cnn_pt2"], tmp_path, targets=("onnx",), sample_inputs=tmp_path / "inputs.npz")
    assert result.targets[0].numeric.samples == 2 and result.targets[0].status == "passed"


REPORT_KEYS = {"schema", "modelport_version", "passed", "source", "environment", "targets"}
TARGET_KEYS = {"target", "status", "error", "path", "size_bytes", "sha256", "conversion", "numeric",
               "latency_ms", "reference_latency_ms"}


def test_cli_report_follows_the_schema(models, tmp_path):
    report_path = tmp_path / "report.json"
    result = run_cli("convert", str(models["cnn_pt2"]), "--to", "onnx,tflite", "-o", str(tmp_path / "out"),
                     "--report", str(report_path))
    assert result.returncode == 0, result.stderr
    for column in ("target", "status", "size", "max abs diff", "cosine", "p50 ms", "conversion path"):
        assert column in result.stdout
    report = json.loads(report_path.read_text())
    assert REPORT_KEYS <= set(report) and report["schema"] == "modelport.report/1" and report["passed"] is True
    assert {"path", "format", "framework", "sha256", "inputs", "outputs"} <= set(report["source"])
    assert report["source"]["inputs"] == [{"name": "image", "shape": [1, 3, 16, 16], "dtype": "float32"}]
    assert {"python", "packages", "threads"} <= set(report["environment"])
    for target in report["targets"]:
        assert TARGET_KEYS <= set(target)
        assert {"path", "seconds", "layout", "quantization"} <= set(target["conversion"])
        assert {"atol", "rtol", "samples", "outputs"} <= set(target["numeric"])
        for output in target["numeric"]["outputs"]:
            assert {"name", "max_abs_diff", "max_rel_diff", "mean_abs_diff", "cosine", "passed"} <= set(output)
        assert {"runs", "warmup", "threads", "p50", "p90", "p99", "mean", "min"} <= set(target["latency_ms"])
    tflite = report["targets"][1]
    assert tflite["conversion"]["path"] == ["pt2", "onnx", "tflite"] and tflite["conversion"]["layout"] == "nhwc"
    assert tflite["sha256"] and tflite["size_bytes"] == (tmp_path / "out" / "model.tflite").stat().st_size
