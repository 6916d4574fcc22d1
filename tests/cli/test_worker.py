"""The model worker: whatever a model does to the process running it (asks for more memory than
the budget, is killed, crashes), the command survives, says so in one line, removes its scratch,
and `check` goes on with the next model."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.conftest import error_line, run_cli

KILLER = '''
import os, signal
import torch

class Net(torch.nn.Module):
    def forward(self, x):
        os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's out-of-memory killer does
        return x * 2

def build():
    return Net(), (torch.ones(1, 4),)
'''


def _greedy_torchscript(path: Path) -> Path:
    """A TorchScript file whose forward asks for a 25.6 GB tensor."""
    import torch

    class Greedy(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.zeros(40000, 40000, 4).sum()

    torch.jit.save(torch.jit.script(Greedy()), str(path))
    return path


def test_a_reference_past_the_budget_is_exit_2(tmp_path):
    model = _greedy_torchscript(tmp_path / "greedy.pt")
    for argv in (["validate", str(model), str(model)], ["bench", str(model), "--runs", "1", "--warmup", "0"]):
        result = run_cli(*argv, "--input", "x:1", "--max-memory", "3G")
        assert result.returncode == 2, (argv[0], result.stderr[-2000:])
        assert "needs more than 3.0 GB to run" in error_line(result), argv[0]


def test_a_killed_model_process_is_one_line_and_check_goes_on(tmp_path, models):
    (tmp_path / "killer.py").write_text(KILLER)
    config = tmp_path / "modelport.toml"
    config.write_text(f'[[models]]\nname = "killer"\nsource = "{tmp_path / "killer.py"}:build"\ntargets = ["onnx"]\n\n'
                      f'[[models]]\nname = "fine"\nsource = "{models["mlp_onnx"]}"\ntargets = ["onnx"]\n')
    env_tmp = tmp_path / "tmp"
    env_tmp.mkdir()
    report = tmp_path / "report.json"
    result = run_cli("check", str(config), "-o", str(tmp_path / "out"), "--report", str(report),
                     python_prelude=f"import os; os.environ['TMPDIR'] = {str(env_tmp)!r}")
    assert result.returncode == 3, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    killer, fine = json.loads(report.read_text())["models"]  # (in the config's order)
    killed = killer["targets"][0]
    assert killed["status"] == "error" and "killed by SIGKILL" in killed["error"], killed
    assert fine["targets"][0]["status"] == "passed"
    assert not list(env_tmp.iterdir()), "the dead worker's scratch was left behind"

    alone = run_cli("convert", f"{tmp_path / 'killer.py'}:build", "--to", "onnx", "-o", str(tmp_path / "o2"))
    assert alone.returncode == 3
    line = error_line(alone)
    assert "The process running the model was killed by SIGKILL" in line and "--max-memory" in line


def test_the_command_process_never_imports_a_framework(tmp_path, models):
    """Models open only in the worker: the command's own process stays light."""
    probe = ("import atexit, sys\n"
             "atexit.register(lambda: print('HEAVY=' + ','.join(sorted(m for m in ('torch', 'tensorflow', "
             "'onnxruntime', 'jax') if m in sys.modules)), file=sys.stderr))\n")
    result = run_cli("convert", str(models["mlp_onnx"]), "--to", "onnx", "-o", str(tmp_path / "out"),
                     python_prelude=probe)
    assert result.returncode == 0, result.stderr
    assert "HEAVY=\n" in result.stderr or result.stderr.rstrip().endswith("HEAVY="), result.stderr


SLEEPER = '''
import time
import torch

class Net(torch.nn.Module):
    def forward(self, x):
        time.sleep(3600)  # what a converter stuck folding a huge constant looks like from outside
        return x * 2

def build():
    return Net(), (torch.ones(1, 4),)
'''


def test_timeout_stops_the_model_and_check_goes_on(tmp_path, models):
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    started = time.monotonic()
    alone = run_cli("convert", f"{tmp_path / 'sleeper.py'}:build", "--to", "onnx", "-o", str(tmp_path / "o"),
                    "--timeout", "8")
    assert alone.returncode == 3, alone.stderr[-2000:]
    assert "did not finish within 8 s (--timeout)" in error_line(alone)
    assert time.monotonic() - started < 60
    assert not (tmp_path / "o").exists()

    config = tmp_path / "modelport.toml"
    config.write_text(f'[[models]]\nname = "sleeper"\nsource = "{tmp_path / "sleeper.py"}:build"\ntargets = ["onnx"]\n'
                      f'timeout = 8\n\n'
                      f'[[models]]\nname = "fine"\nsource = "{models["mlp_onnx"]}"\ntargets = ["onnx"]\n')
    report = tmp_path / "report.json"
    result = run_cli("check", str(config), "-o", str(tmp_path / "out"), "--report", str(report))
    assert result.returncode == 3, result.stderr[-2000:]
    sleeper, fine = json.loads(report.read_text())["models"]
    assert "did not finish within 8 s" in sleeper["targets"][0]["error"]
    assert fine["targets"][0]["status"] == "passed"
