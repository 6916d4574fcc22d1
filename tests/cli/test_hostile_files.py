"""Files from strangers, through every command that loads a model: the payload never runs, the
refusal is one line with exit 2 saying what to do.

Each hostile file carries a payload that would create a marker file if it ran; every test
checks that the marker does not exist afterwards."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, error_line, run_cli

EXAMPLE = ROOT / "examples" / "tiny_classifier.pt2"


class Payload:
    """Unpickling this creates the marker file (os.system is what a real attacker would call)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _rewrite(source: Path, target: Path, replace: dict[str, bytes]) -> Path:
    """A copy of a zip archive with some members' bytes replaced (matched by name suffix)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = next((v for k, v in replace.items() if info.filename.endswith(k)), None)
            new.writestr(info, old.read(info.filename) if data is None else data)
    return target


def hostile_pt2(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    marker = tmp_path / f"pwned-{kind}"
    evil = pickle.dumps(Payload(marker), protocol=2)
    if kind == "sample_inputs":
        path = _rewrite(EXAMPLE, tmp_path / "evil_inputs.pt2", {"data/sample_inputs/model.pt": evil})
    else:  # a weight marked use_pickle: torch.export.load unpickles it with weights_only=False
        with zipfile.ZipFile(EXAMPLE) as archive:
            name = next(n for n in archive.namelist() if n.endswith("model_weights_config.json"))
            config = json.loads(archive.read(name))
        config["config"]["body.0.weight"]["use_pickle"] = True
        path = _rewrite(EXAMPLE, tmp_path / "evil_weight.pt2",
                        {"model_weights_config.json": json.dumps(config).encode(), "data/weights/weight_0": evil})
    return path, marker


def _every_command(model: Path, tmp_path: Path, reference: Path) -> dict[str, list[str]]:
    config = tmp_path / "modelport.toml"
    config.write_text(f'[[models]]\nsource = "{model}"\ntargets = ["onnx"]\n')
    return {
        "convert": ["convert", str(model), "--to", "onnx", "-o", str(tmp_path / "out")],
        "validate": ["validate", str(model), str(reference)],
        "bench": ["bench", str(model), "--runs", "2", "--warmup", "0"],
        "inspect": ["inspect", str(model)],
        "check": ["check", str(config), "-o", str(tmp_path / "checked")],
    }


@pytest.mark.parametrize("kind", ["sample_inputs", "use_pickle_weight"])
def test_pt2_with_a_pickle_payload_is_refused_by_every_command(tmp_path, kind):
    path, marker = hostile_pt2(tmp_path, kind)
    for command, argv in _every_command(path, tmp_path, EXAMPLE).items():
        result = run_cli(*argv)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        if command != "check":  # check prints its table, then the one line for the model's row
            line = error_line(result)
        else:
            line = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")][0]
        assert "unsafe unpickler" in line and "--trust-remote-code" in line, (command, line)
        assert ("sample_inputs" if kind == "sample_inputs" else "weight_0") in line, (command, line)
        assert not marker.exists(), f"{command} ran the payload"


def test_pt2_constants_legacy_members_and_native_code_are_checked_too(tmp_path):
    marker = tmp_path / "pwned-more"
    evil = pickle.dumps(Payload(marker), protocol=2)
    with zipfile.ZipFile(EXAMPLE) as archive:
        root = archive.namelist()[0].split("/")[0]
    # An opaque constant: torch.export.load would pickle.loads it.
    constants = {"config": {"secret": {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": False,
                                       "tensor_meta": None}}}
    cases = {
        "constant": (_rewrite(EXAMPLE, tmp_path / "constant.pt2",
                              {"model_constants_config.json": json.dumps(constants).encode()}),
                     {f"{root}/data/constants/opaque_obj_0": evil}, "opaque_obj_0"),
        "native": (EXAMPLE, {f"{root}/data/aotinductor/model/model.so": b"\x7fELF"}, "native code"),
    }
    for name, (base, extra, fragment) in cases.items():
        path = tmp_path / f"{name}-final.pt2"
        with zipfile.ZipFile(base) as old, zipfile.ZipFile(path, "w") as new:
            for info in old.infolist():
                new.writestr(info, old.read(info.filename))
            for member, data in extra.items():
                new.writestr(member, data)
        result = run_cli("inspect", str(path))
        assert result.returncode == 2, (name, result.stderr)
        line = error_line(result)
        assert fragment in line and "--trust-remote-code" in line, (name, line)
    # The legacy (torch 2.7) layout: members fed to torch.load at the top of the archive.
    legacy = tmp_path / "legacy.pt2"
    with zipfile.ZipFile(legacy, "w") as archive:
        archive.writestr("archive_format", "pt2")
        archive.writestr("version", "8.0")
        archive.writestr("serialized_exported_program.json", "{}")
        archive.writestr("serialized_example_inputs.pt", evil)
    result = run_cli("inspect", str(legacy))
    assert result.returncode == 2 and "serialized_example_inputs.pt" in error_line(result), result.stderr
    assert not marker.exists()


def test_a_pickled_module_is_refused_by_every_command(tmp_path):
    marker = tmp_path / "pwned-pickle"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Payload(marker), protocol=2))
    for command, argv in _every_command(evil, tmp_path, EXAMPLE).items():
        result = run_cli(*argv)
        assert result.returncode == 2, (command, result.stderr)
        line = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")][0]
        assert "--trust-remote-code" in line, (command, line)
        assert not marker.exists(), f"{command} ran the payload"


def test_a_real_pt2_still_loads(tmp_path):
    result = run_cli("inspect", str(EXAMPLE), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["format"] == "pt2"


def test_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    config = tmp_path / "modelport.toml"
    config.write_text(f'[[models]]\nsource = "{fifo}"\ntargets = ["onnx"]\n')
    for argv in (["convert", str(fifo), "--to", "onnx"], ["inspect", str(fifo)], ["bench", str(fifo)],
                 ["validate", str(EXAMPLE), str(fifo)], ["validate", str(fifo), str(EXAMPLE)],
                 ["check", str(config), "-o", str(tmp_path / "checked")]):
        started = time.monotonic()
        result = run_cli(*argv, timeout=60)
        assert result.returncode == 2, (argv, result.stderr)
        assert "FIFO" in error_line(result)
        assert time.monotonic() - started < 60


def test_a_symlink_out_of_a_model_folder_is_refused(tmp_path, models):
    secret = tmp_path / "secret.txt"
    secret.write_text("not part of any model")
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"x")
    (folder / "variables").symlink_to(tmp_path)
    result = run_cli("inspect", str(folder))
    assert result.returncode == 2
    assert "symlink leading outside the model folder" in error_line(result)


@pytest.mark.parametrize("where", ["source", "holds", "inside", "file"])
def test_output_that_would_touch_the_source_is_refused_before_any_work(tmp_path, models, where):
    source = tmp_path / "model.onnx"
    source.write_bytes(models["mlp_onnx"].read_bytes())
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"x")
    cases = {"source": (source, source), "holds": (source, tmp_path), "inside": (folder, folder / "out"),
             "file": (source, tmp_path / "existing.txt")}
    model, output = cases[where]
    if where == "file":
        output.write_text("keep me")
    before = source.read_bytes()
    started = time.monotonic()
    result = run_cli("convert", str(model), "--to", "onnx", "-o", str(output))
    assert result.returncode == 2, result.stderr
    line = error_line(result)
    assert {"source": "is the source", "holds": "holds the source", "inside": "inside the source",
            "file": "existing file"}[where] in line
    assert source.read_bytes() == before and time.monotonic() - started < 30
    assert not (folder / "out").exists()


def test_npz_with_objects_strings_or_complex_numbers_names_the_array(tmp_path, models):
    cases = {"objects": np.array([{"a": 1}], dtype=object), "strings": np.array(["a", "b"]),
             "complex": np.ones((1, 6), np.complex64)}
    for what, array in cases.items():
        path = tmp_path / f"{what}.npz"
        if what == "objects":
            np.savez(path, x=array, allow_pickle=True)
        else:
            np.savez(path, x=array)
        result = run_cli("convert", str(models["mlp_onnx"]), "--to", "onnx", "--inputs", str(path),
                         "-o", str(tmp_path / what))
        assert result.returncode == 2, (what, result.stderr)
        line = error_line(result)
        assert "array 'x'" in line and {"objects": "objects", "strings": "strings",
                                         "complex": "complex"}[what] in line, line
        assert not (tmp_path / what).exists()


def test_input_that_contradicts_the_model_is_refused_before_converting(tmp_path, models):
    out = tmp_path / "out"
    for spec, fragment in (("image:1x3x16", "rank 3"), ("image:1x4x16x16", "fixes it at 3")):
        result = run_cli("convert", str(models["cnn_pt2"]), "--to", "onnx", "--input", spec, "-o", str(out))
        assert result.returncode == 2, result.stderr
        line = error_line(result)
        assert fragment in line and "1x3x16x16" in line, line
        assert not out.exists()


def test_text_with_brackets_is_printed_as_is_not_read_as_markup(tmp_path, models):
    weird = tmp_path / "[bold]model[red].onnx"
    weird.write_bytes(models["mlp_onnx"].read_bytes())
    result = run_cli("convert", str(weird), "--to", "onnx", "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "[bold]model[red].onnx" in result.stdout  # the table's title names the source as it is
    broken = tmp_path / "[red]broken[dim].onnx"
    broken.write_text("[red]not a model[/red]\n")
    result = run_cli("inspect", str(broken))
    assert result.returncode == 2 and "[red]broken[dim].onnx" in error_line(result)


def test_sigterm_cleans_up_and_exits_143(tmp_path, models):
    out = tmp_path / "out"
    code = ("import sys\nfrom modelport.cli import main\n"
            f"sys.argv = ['modelport', 'convert', {str(models['cnn_pt2'])!r}, '--to', 'tflite', '-o', {str(out)!r}]\n"
            "main()")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    process = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("modelport-worker-*/modelport-*")) and time.monotonic() < deadline:
        time.sleep(0.2)  # wait until converting has started (the worker's scratch folder exists)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1].startswith("Terminated")
    assert "Traceback" not in stderr
    assert not list(tmp_path.glob("modelport-*")), "the scratch folder was left behind"
    assert not out.exists() or not any(out.iterdir())


def test_inspect_never_runs_the_model(tmp_path):
    marker = tmp_path / "forward-ran"
    (tmp_path / "net.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        f"        open({str(marker)!r}, 'w').write('ran')\n"
        "        return x * 2\n"
        "def build():\n"
        "    return Net(), (torch.ones(1, 4),)\n")
    result = run_cli("inspect", f"{tmp_path / 'net.py'}:build", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["inputs"][0]["shape"] == [1, 4]
    assert not marker.exists(), "inspect ran the model's forward"
    pt2 = json.loads(run_cli("inspect", str(EXAMPLE), "--json").stdout)
    assert pt2["outputs"] == [{"name": "output", "shape": [1, 10], "dtype": "float32"}]  # recorded, not run


def _tfjs_model(folder: Path, shard: str) -> Path:
    """A hand-written TF.js graph model: y = x + w, with w read from the weight file `shard`."""
    folder.mkdir(parents=True)
    floats = {"dtype": {"type": "DT_FLOAT"}}
    spec = {"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": "1"}, {"size": "3"}]}}
    topology = {"node": [
        {"name": "x", "op": "Placeholder", "attr": {**floats, "shape": {"shape": {"dim": [{"size": "1"}, {"size": "3"}]}}}},
        {"name": "w", "op": "Const", "attr": {**floats, "value": {"tensor": {"dtype": "DT_FLOAT",
                                                                             "tensorShape": {"dim": [{"size": "3"}]}}}}},
        {"name": "y", "op": "AddV2", "input": ["x", "w"], "attr": {"T": {"type": "DT_FLOAT"}}}],
        "versions": {"producer": 1}}
    document = {"format": "graph-model", "generatedBy": "test", "convertedBy": "hand", "modelTopology": topology,
                "signature": {"inputs": {"x:0": {"name": "x:0", **spec}}, "outputs": {"y:0": {"name": "y:0", **spec}}},
                "weightsManifest": [{"paths": [shard], "weights": [{"name": "w", "shape": [3], "dtype": "float32"}]}]}
    (folder / "model.json").write_text(json.dumps(document))
    (folder / "weights.bin").write_bytes(np.array([1, 2, 3], np.float32).tobytes())
    return folder


@pytest.mark.parametrize("shard", ["../secret.bin", "/etc/hostname", "sub/../../secret.bin"])
def test_tfjs_weights_outside_the_model_are_refused(tmp_path, shard):
    (tmp_path / "secret.bin").write_bytes(np.array([7, 7, 7], np.float32).tobytes())
    honest = run_cli("bench", str(_tfjs_model(tmp_path / "honest", "weights.bin")), "--runs", "2", "--warmup", "0")
    assert honest.returncode == 0, honest.stderr  # the hand-written model itself runs in TF.js
    hostile = _tfjs_model(tmp_path / "hostile", shard)
    for argv in (["bench", str(hostile), "--runs", "2"], ["validate", str(EXAMPLE), str(hostile)]):
        result = run_cli(*argv)
        assert result.returncode == 2, (argv[0], result.stderr)
        line = error_line(result)
        assert "outside the model's folder" in line and shard in line, (argv[0], line)
