"""A zoo in one run: `check --jobs N`, `--executor ray`, the result cache and `--resume`.

The zoo is tiny ONNX models (to the `onnx` target: the conversion is a check and the validation a
real onnxruntime run against the source), plus models that go wrong in each way a stranger's
model can: a corrupt file, a process that crashes, one that hangs past its timeout.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import error_line, interruptible, run_cli


def _mlp(path: Path, seed: int, width: int = 8) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.normal(size=(6, width)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(width, 3)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w1, w2])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


CRASH = "import os, signal\n\ndef build():\n    os.kill(os.getpid(), signal.SIGKILL)\n"
HANG = "import time\n\ndef build():\n    time.sleep(600)\n"


def _zoo(tmp_path: Path, good: int = 3, broken: bool = True) -> Path:
    models = tmp_path / "zoo"
    models.mkdir()
    entries = []
    for index in range(good):
        _mlp(models / f"mlp{index}.onnx", seed=index)
        entries.append(f'[[models]]\nname = "mlp{index}"\nsource = "zoo/mlp{index}.onnx"\ntargets = ["onnx"]\n')
    if broken:
        (models / "corrupt.onnx").write_bytes(b"\x08\x07garbage" * 10)
        (models / "crash.py").write_text(CRASH)
        (models / "hang" ).mkdir()
        (models / "hang" / "hang.py").write_text(HANG)
        entries.insert(1, '[[models]]\nname = "corrupt"\nsource = "zoo/corrupt.onnx"\ntargets = ["onnx"]\n')
        entries.insert(3, '[[models]]\nname = "crash"\nsource = "zoo/crash.py:build"\ntargets = ["onnx"]\n'
                          'inputs = ["x:1x6"]\n')
        entries.append('[[models]]\nname = "hang"\nsource = "zoo/hang/hang.py:build"\ntargets = ["onnx"]\n'
                       'inputs = ["x:1x6"]\ntimeout = 8\n')
    config = tmp_path / "modelport.toml"
    config.write_text("[defaults]\nsamples = 2\nlatency_runs = 2\n\n" + "\n".join(entries))
    return config


def _rows(report: Path) -> list[tuple[str, str, str]]:
    data = json.loads(report.read_text())
    return [(m["source"]["path"].rsplit("/", 1)[-1], t["target"], t["status"])
            for m in data["models"] for t in m["targets"]]


def _notes(report: Path) -> dict[str, list[str]]:
    data = json.loads(report.read_text())
    return {m["source"]["path"].rsplit("/", 1)[-1]: [n for t in m["targets"] for n in t.get("notes", [])]
            for m in data["models"]}


@pytest.mark.slow
def test_jobs_2_gives_the_serial_report_and_each_broken_model_is_its_own_error(tmp_path):
    config = _zoo(tmp_path)
    serial = run_cli("check", str(config), "--jobs", "1", "--no-cache", "-o", str(tmp_path / "serial"),
                     "--report", str(tmp_path / "serial.json"))
    parallel = run_cli("check", str(config), "--jobs", "2", "--no-cache", "-o", str(tmp_path / "parallel"),
                       "--report", str(tmp_path / "parallel.json"))
    assert serial.returncode == parallel.returncode == 3, parallel.stderr  # the crash and the hang: exit 3
    assert "Error: crash -> onnx: The process running the model was killed by SIGKILL" in error_line(parallel)
    rows = _rows(tmp_path / "parallel.json")
    assert rows == _rows(tmp_path / "serial.json")  # the config's order, the same verdicts
    assert [status for _, _, status in rows] == ["passed", "error", "passed", "error", "passed", "error"]
    data = json.loads((tmp_path / "parallel.json").read_text())
    errors = {m["source"]["path"].rsplit("/", 1)[-1]: m["targets"][0]["error"] for m in data["models"]}
    assert "corrupt.onnx" in errors["corrupt.onnx"] or "not" in errors["corrupt.onnx"]
    assert "did not finish within 8 s" in errors["hang.py:build"]
    for name in ("mlp0", "mlp1", "mlp2"):  # each model's files in its own folder, complete
        assert (tmp_path / "parallel" / name / "model.onnx").is_file()
    # Progress on a pipe: one line per finished model, counted against the zoo.
    assert "[6/6]" in parallel.stderr and "mlp2: 1 passed" in parallel.stderr


def test_cache_reuses_unchanged_models_and_converts_the_changed_one(tmp_path):
    config = _zoo(tmp_path, good=3, broken=False)
    cache, out = tmp_path / "cache", tmp_path / "out"
    first = run_cli("check", str(config), "--cache", str(cache), "-o", str(out), "--report", str(tmp_path / "1.json"))
    assert first.returncode == 0, first.stderr
    assert not any(_notes(tmp_path / "1.json").values())
    _mlp(tmp_path / "zoo" / "mlp1.onnx", seed=99)  # one model changes
    second = run_cli("check", str(config), "--cache", str(cache), "-o", str(out), "--report", str(tmp_path / "2.json"))
    assert second.returncode == 0, second.stderr
    notes = _notes(tmp_path / "2.json")
    assert all(n.startswith("cached: ") for n in notes["mlp0.onnx"] + notes["mlp2.onnx"])
    assert notes["mlp1.onnx"] == []  # converted again
    assert "mlp0: 1 passed (cached)" in second.stderr
    # The cached artifacts are placed like converted ones; each equals what the first run wrote.
    first_sha = {m["source"]["path"]: m["targets"][0]["sha256"] for m in json.loads((tmp_path / "1.json").read_text())["models"]}
    second_data = json.loads((tmp_path / "2.json").read_text())
    for model in second_data["models"]:
        if model["source"]["path"].endswith("mlp0.onnx"):
            assert model["targets"][0]["sha256"] == first_sha[model["source"]["path"]]
    # Options are in the key: another tolerance is another result.
    config.write_text(config.read_text().replace("samples = 2", "samples = 3"))
    third = run_cli("check", str(config), "--cache", str(cache), "-o", str(out), "--report", str(tmp_path / "3.json"))
    assert third.returncode == 0 and not any(_notes(tmp_path / "3.json").values())


def test_a_tampered_cache_is_a_miss_and_its_payload_never_runs(tmp_path):
    config = _zoo(tmp_path, good=1, broken=False)
    cache, out = tmp_path / "cache", tmp_path / "out"
    assert run_cli("check", str(config), "--cache", str(cache), "-o", str(out)).returncode == 0
    [entry] = [p.parent for p in cache.rglob("result.json")]
    # 1. An artifact altered in the cache: the entry is not trusted.
    model = entry / "files" / "model.onnx"
    model.write_bytes(model.read_bytes()[:-8] + b"\x00" * 8)
    again = run_cli("check", str(config), "--cache", str(cache), "-o", str(out), "--report", str(tmp_path / "a.json"))
    assert again.returncode == 0 and _notes(tmp_path / "a.json")["mlp0.onnx"] == []
    # 2. A record naming a type outside the result types, and a path leaving the entry: a miss, no code run.
    [entry] = [p.parent for p in cache.rglob("result.json")]
    marker = tmp_path / "pwned"
    document = json.loads((entry / "result.json").read_text())
    document["result"]["targets"][0]["verdict"] = {"$type": "subprocess.Popen", "args": ["touch", str(marker)]}
    (entry / "result.json").write_text(json.dumps(document))
    hostile = run_cli("check", str(config), "--cache", str(cache), "-o", str(out), "--report", str(tmp_path / "b.json"))
    assert hostile.returncode == 0 and _notes(tmp_path / "b.json")["mlp0.onnx"] == [] and not marker.exists()
    [entry] = [p.parent for p in cache.rglob("result.json")]
    document = json.loads((entry / "result.json").read_text())
    document["files"] = {"../../../../../etc/passwd": "0" * 64}
    (entry / "result.json").write_text(json.dumps(document))
    escape = run_cli("check", str(config), "--cache", str(cache), "-o", str(out), "--report", str(tmp_path / "c.json"))
    assert escape.returncode == 0 and _notes(tmp_path / "c.json")["mlp0.onnx"] == []
    assert not (out / "etc").exists()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_resume_continues_an_interrupted_run(tmp_path, jobs):
    config = _zoo(tmp_path, good=2, broken=False)
    (tmp_path / "zoo" / "hang").mkdir()
    (tmp_path / "zoo" / "hang" / "hang.py").write_text(HANG)
    config.write_text(config.read_text() + '\n[[models]]\nname = "slow"\nsource = "zoo/hang/hang.py:build"\n'
                                           'targets = ["onnx"]\ninputs = ["x:1x6"]\n')
    out = tmp_path / "out"
    code = "import sys\nfrom modelport.cli import main\nsys.argv = ['modelport', *sys.argv[1:]]\nmain()"
    run = subprocess.Popen([sys.executable, "-c", code, "check", str(config), "--jobs", jobs, "--no-cache",
                            "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           stdin=subprocess.DEVNULL, preexec_fn=interruptible)
    journal = out / ".modelport-run"
    deadline = time.monotonic() + 240
    while len(list(journal.rglob("result.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)  # the two quick models finish; the third hangs
    assert len(list(journal.rglob("result.json"))) == 2, run.stderr if run.poll() is not None else "timed out"
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130 and "Interrupted" in stderr
    assert "slow: error" not in stderr  # the model cut short is not reported as a result
    # Resumed (the hanging model fixed meanwhile): only it is converted again.
    (tmp_path / "zoo" / "hang" / "hang.py").write_text(
        "import torch\n\ndef build():\n    return torch.nn.Linear(6, 3).eval()\n")
    resumed = run_cli("check", str(config), "--resume", "--no-cache", "-o", str(out),
                      "--report", str(tmp_path / "r.json"))
    assert resumed.returncode == 0, resumed.stderr
    notes = _notes(tmp_path / "r.json")
    assert all(n.startswith("resumed: ") for n in notes["mlp0.onnx"] + notes["mlp1.onnx"])
    assert notes["hang.py:build"] == []


def test_bad_zoo_invocations_are_exit_2_and_a_missing_ray_exit_4(tmp_path):
    config = _zoo(tmp_path, good=1, broken=False)
    nothing = run_cli("check", str(config), "--resume", "-o", str(tmp_path / "fresh"))
    assert nothing.returncode == 2
    assert "Nothing to resume: no earlier `modelport check` wrote to" in error_line(nothing)
    both = run_cli("check", str(config), "--no-cache", "--cache", str(tmp_path / "c"))
    assert both.returncode == 2 and "--cache and --no-cache contradict" in error_line(both)
    address = run_cli("check", str(config), "--address", "127.0.0.1:6379")
    assert address.returncode == 2 and "it needs --executor ray" in error_line(address)
    nobody = run_cli("check", str(config), "--executor", "ray", "--address", "127.0.0.1:1", "--no-cache")
    assert nobody.returncode == 2 and "Nothing answers at the Ray address 127.0.0.1:1" in error_line(nobody)
    no_ray = run_cli("check", str(config), "--executor", "ray", "--no-cache",
                     python_prelude="import sys; sys.modules['ray'] = None")
    assert no_ray.returncode == 4 and "pip install 'modelport[ray]'" in error_line(no_ray)
    jobs = run_cli("check", str(config), "--jobs", "0")
    assert jobs.returncode == 2 and "--jobs" in jobs.stderr


KILL_PARENT = "import os, signal\n\ndef build():\n    os.kill(os.getppid(), signal.SIGKILL)\n"


@pytest.mark.slow
def test_ray_runs_the_zoo_and_a_raising_task_or_a_killed_worker_is_that_models_error(tmp_path):
    pytest.importorskip("ray")
    config = _zoo(tmp_path, good=2, broken=False)
    (tmp_path / "zoo" / "corrupt.onnx").write_bytes(b"\x08\x07garbage" * 10)
    (tmp_path / "zoo" / "killer").mkdir()
    (tmp_path / "zoo" / "killer" / "kill_parent.py").write_text(KILL_PARENT)  # kills the Ray worker under it
    config.write_text(config.read_text()
                      + '\n[[models]]\nname = "corrupt"\nsource = "zoo/corrupt.onnx"\ntargets = ["onnx"]\n'
                      + '\n[[models]]\nname = "killer"\nsource = "zoo/killer/kill_parent.py:build"\n'
                        'targets = ["onnx"]\ninputs = ["x:1x6"]\n')
    result = run_cli("check", str(config), "--executor", "ray", "--jobs", "2", "--no-cache",
                     "-o", str(tmp_path / "out"), "--report", str(tmp_path / "ray.json"), timeout=600)
    rows = _rows(tmp_path / "ray.json")
    assert [status for _, _, status in rows] == ["passed", "passed", "error", "error"], result.stderr
    data = json.loads((tmp_path / "ray.json").read_text())
    corrupt, killed = (m["targets"][0]["error"] for m in data["models"][2:])
    assert "corrupt.onnx" in corrupt and "Ray" not in corrupt  # the task's own error, as modelport words it
    assert "The Ray worker running the model died" in killed
    assert result.returncode == 3  # the worst row: the dead worker (exit 3) over the corrupt file (exit 2)
