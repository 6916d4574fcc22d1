"""The pre-deploy gate: validate, bench, check, doctor, end to end from the CLI."""

import json

import numpy as np
import pytest

from tests.conftest import error_line, run_cli


@pytest.fixture(scope="module")
def converted(models, tmp_path_factory):
    """The pt2 CNN converted to onnx, tflite and tfjs once, for the comparisons below."""
    out = tmp_path_factory.mktemp("converted")
    result = run_cli("convert", str(models["cnn_pt2"]), "--to", "onnx,tflite,tfjs", "-o", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_validate_pt2_against_tflite_uses_the_recorded_mapping(models, converted, tmp_path):
    report = tmp_path / "v.json"
    result = run_cli("validate", str(models["cnn_pt2"]), str(converted / "model.tflite"), "--latency",
                     "--report", str(report))
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    target = data["targets"][0]
    assert target["status"] == "passed" and target["latency_ms"]["p50"] > 0
    assert target["reference_latency_ms"]["p50"] > 0
    assert {o["name"] for o in target["numeric"]["outputs"]} == {"output_0", "output_1"}
    assert target["conversion"]["layout"] == "nhwc"


def test_validate_onnx_against_tfjs_and_top_k(converted):
    result = run_cli("validate", str(converted / "model.onnx"), str(converted / "tfjs"), "--top-k", "1")
    assert result.returncode == 0, result.stderr
    assert "│ tfjs" in result.stdout and "passed" in result.stdout


def test_validate_without_sidecar_needs_map_for_a_layout_change(models, converted, tmp_path):
    bare = tmp_path / "bare.tflite"
    bare.write_bytes((converted / "model.tflite").read_bytes())  # no .modelport.json beside it
    refused = run_cli("validate", str(models["cnn_pt2"]), str(bare))
    assert refused.returncode == 2
    line = error_line(refused)
    assert "Shape mismatch for input 'image'" in line and "[1, 3, 16, 16]" in line and "[1, 16, 16, 3]" in line
    # The maps a user would pass are what the sidecar recorded (onnx2tf 1.29 makes the feature map
    # NHWC; onnx2tf 2.x gives it back NCHW).
    io = json.loads((converted / "model.tflite.modelport.json").read_text())["io"]
    maps = [f"{link['source']}={link['name']}:{','.join(map(str, link['perm']))}"
            for link in (*io["inputs"], *io["outputs"]) if link["perm"]]
    assert maps[0] == "image=image:0,2,3,1", maps
    mapped = run_cli("validate", str(models["cnn_pt2"]), str(bare), *[a for m in maps for a in ("--map", m)])
    assert mapped.returncode == 0, mapped.stderr


def test_validate_failure_names_worst_output_and_sample(models, converted):
    result = run_cli("validate", str(models["cnn_pt2"]), str(converted / "model.onnx"), "--atol", "0", "--rtol", "0")
    assert result.returncode == 1
    line = error_line(result)
    assert "Output 'output_" in line and "(sample " in line and "max abs diff" in line


def test_validate_reads_onnx_test_data_sets(models, converted, tmp_path):
    from onnx import numpy_helper

    for n in range(2):
        folder = tmp_path / "data" / f"test_data_set_{n}"
        folder.mkdir(parents=True)
        image = np.random.default_rng(n).uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)
        (folder / "input_0.pb").write_bytes(numpy_helper.from_array(image, "image").SerializeToString())
    result = run_cli("validate", str(converted / "model.onnx"), str(converted / "model.tflite"),
                     "--inputs", str(tmp_path / "data"), "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["targets"][0]["numeric"]["samples"] == 2


def test_validate_malformed_map_is_exit_2(models, converted):
    result = run_cli("validate", str(models["cnn_pt2"]), str(converted / "model.onnx"), "--map", "image")
    assert result.returncode == 2 and "Malformed --map" in error_line(result)


def test_bench_against_reference(converted, tmp_path):
    report = tmp_path / "b.json"
    result = run_cli("bench", str(converted / "model.tflite"), "--against", str(converted / "model.onnx"),
                     "--runs", "10", "--warmup", "2", "--threads", "1", "--report", str(report))
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    first, second = data["results"]
    for item in (first, second):
        lat = item["latency_ms"]
        assert lat["runs"] == 10 and lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
        assert item["peak_rss_mb"] and item["peak_rss_mb"] > 0
    assert "isolated" in first["runtime"]  # LiteRT ran in a process without TensorFlow
    assert data["p50_ratio"] == pytest.approx(first["latency_ms"]["p50"] / second["latency_ms"]["p50"])
    assert "p50 ratio" in result.stdout


def _config(tmp_path, models, body):
    (tmp_path / "model.pt2").write_bytes(models["cnn_pt2"].read_bytes())
    (tmp_path / "modelport.toml").write_text(body)
    return tmp_path / "modelport.toml"


GATE = """
[defaults]
samples = 2

[[models]]
source = "model.pt2"
targets = ["onnx", "tflite"]
[models.tolerance]
output_1 = { atol = 1e-3, min_cosine = 0.999, top_k = 1 }
[models.budget]
latency_p50_ms = { tflite = 1000.0 }
size_mb = { onnx = 0.001 }
"""


def test_check_runs_the_gate_with_one_table_and_one_exit_code(models, tmp_path):
    config = _config(tmp_path, models, GATE)
    result = run_cli("check", str(config), "-o", str(tmp_path / "out"), "--report", str(tmp_path / "c.json"),
                     cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # the onnx size budget (1 KB) is broken on purpose
    assert "BROKEN size_mb" in result.stdout and "ok latency_p50_ms" in result.stdout
    assert "Budget size_mb broken" in error_line(result)
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["schema"] == "modelport.check/1" and data["passed"] is False
    targets = {t["target"]: t for t in data["models"][0]["targets"]}
    assert targets["tflite"]["status"] == "passed" and targets["onnx"]["status"] == "failed"
    probs = next(o for o in targets["tflite"]["numeric"]["outputs"] if o["name"] == "output_1")
    assert probs["top_k"] == 1 and probs["topk_agreement"] == 1.0
    # Found in the current directory when no path is given; a passing config exits 0.
    (tmp_path / "modelport.toml").write_text(GATE.replace("size_mb = { onnx = 0.001 }", "size_mb = { onnx = 5 }"))
    passing = run_cli("check", "-o", str(tmp_path / "out2"), cwd=tmp_path)
    assert passing.returncode == 0, passing.stderr


@pytest.mark.parametrize("body, fragment", [
    ("[defaults]\natoll = 1\n[[models]]\nsource = 'model.pt2'\n", "modelport.toml:2: unknown key 'atoll' in [defaults]"),
    ("[[models]]\nsource = 'model.pt2'\n[models.budget]\nlatency = 3\n", "unknown key 'latency'"),
    ("[[models]]\nsource = 'model.pt2'\nsamples = 'three'\n", "'samples' in [[models]] #1 must be int"),
    ("[[models]]\ntargets = ['onnx']\n", "has no 'source'"),
    ("[defaults\n", "not valid TOML"),
])
def test_malformed_config_is_exit_2_pointing_at_the_key(models, tmp_path, body, fragment):
    config = _config(tmp_path, models, body)
    result = run_cli("check", str(config))
    assert result.returncode == 2
    assert fragment in error_line(result)


def test_pyproject_tool_table(models, tmp_path):
    (tmp_path / "model.pt2").write_bytes(models["cnn_pt2"].read_bytes())
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n\n[tool.modelport]\n[[tool.modelport.models]]\n"
                                             "source = 'model.pt2'\ntargets = ['onnx']\n")
    result = run_cli("check", "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_doctor_json():
    result = run_cli("doctor", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["backends"]["torch"]["installed"] and data["backends"]["node"]["installed"]
    assert data["targets"]["tflite"]["works"] and data["targets"]["tfjs"]["works"]
    assert set(data["sources"]) and set(data["targets"]) == {"onnx", "tflite", "torchscript", "savedmodel", "tfjs", "ort",
                                                             "executorch"}
    # The toolchains make install builds, with their Python and versions; their converters work.
    chains = {t["name"]: t for t in data["toolchains"]}
    assert chains["executorch"]["installed"] and chains["executorch"]["versions"]["executorch"] == "1.5.1"
    assert chains["onnx2tf2"]["installed"] and chains["onnx2tf2"]["versions"]["onnx2tf"] == "2.6.9"
    assert data["targets"]["executorch"]["works"]


def test_check_bounds_int8_drift_and_bundles_what_passed(models, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", image=rng.uniform(-1, 1, (10, 1, 3, 32, 32)).astype(np.float32))
    entry = (f'source = "{models["classifier_pt2"]}"\ntargets = ["onnx"]\nquantize = "int8"\n'
             f'calibration_data = "calib.npz"\n')
    (tmp_path / "modelport.toml").write_text(
        f'[[models]]\nname = "good"\n{entry}package = {{ target = "onnx", path = "dist/good.zip" }}\n'
        '[models.budget]\nmin_cosine = { onnx = 0.99 }\ntop1_agreement = { onnx = 0.9 }\n'
        'size_reduction = { onnx = 0.01 }\n\n'
        f'[[models]]\nname = "too_big"\n{entry}package = {{ target = "onnx", path = "dist/too_big.zip" }}\n'
        '[models.budget]\nsize_reduction = { onnx = 0.9 }\n')
    report = tmp_path / "report.json"
    result = run_cli("check", str(tmp_path / "modelport.toml"), "-o", str(tmp_path / "out"), "--report", str(report))
    assert result.returncode == 1, result.stderr
    good, too_big = json.loads(report.read_text())["models"]
    budgets = {b["name"]: b for b in good["targets"][0]["budgets"]}
    assert set(budgets) == {"min_cosine", "top1_agreement", "size_reduction"} and all(b["passed"] for b in budgets.values())
    assert good["targets"][0]["status"] == "passed" and (tmp_path / "dist" / "good.zip").is_file()
    failed = too_big["targets"][0]
    assert failed["status"] == "failed" and "Budget size_reduction broken" in failed["error"] and "< 0.9" in failed["error"]
    assert not (tmp_path / "dist" / "too_big.zip").exists()  # only what passed is bundled
