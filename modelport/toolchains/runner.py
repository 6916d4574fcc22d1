"""A Runner whose runtime lives in a toolchain: a server script of the toolchain, started once per
model, answers JSON lines on its stdin/stdout; arrays travel as .npz files in a private folder.

    {"cmd": "load", "path": P, "threads": N}  -> {"ok": true, "inputs": [...], "outputs": [...], "runtime": "..."}
    {"cmd": "run", "inputs": A.npz, "outputs": B.npz}                    -> {"ok": true}
    {"cmd": "time", "inputs": A.npz, "runs": R, "warmup": W}            -> {"ok": true, "seconds": [...]}
    {"cmd": "describe"}                                                   -> {"ok": true, ...}
    any failure                                                           -> {"ok": false, "error": "..."}

The server keeps fd 1 for these lines and sends everything else it or its libraries print to the
log (stderr), shown with --verbose. See docs/toolchains.md.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelportError
from ..spec import TensorSpec
from ..targets.base import Runner
from . import clean_env, get, problem

if TYPE_CHECKING:
    import numpy as np


class ToolchainRunner(Runner):
    """Subclasses name the toolchain and its server script."""

    toolchain: str = ""
    server: str = "serve.py"

    def _load(self) -> None:
        missing = problem(self.toolchain, f"to run {self.path.name}")
        if missing is not None:
            raise missing
        chain = get(self.toolchain)
        self._scratch = tempfile.TemporaryDirectory(prefix=f"modelport-{self.toolchain}-run-")
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen([str(chain.interpreter), "-I", str(chain.script(self.server))],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                      env=clean_env(chain, Path(self._scratch.name)), cwd=self._scratch.name,
                                      text=True, bufsize=1)
        try:
            found = self._ask({"cmd": "load", "path": str(self.path.resolve()), "threads": self.threads})
        except BaseException:
            self._close()
            raise
        self.inputs = [TensorSpec(t["name"], tuple(t["shape"]) if t["shape"] is not None else None, t["dtype"])
                       for t in found["inputs"]]
        self.outputs = [TensorSpec(t["name"], tuple(t["shape"]) if t["shape"] is not None else None, t["dtype"])
                        for t in found["outputs"]]
        self.runtime = found.get("runtime", self.toolchain)
        self.details = found

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            self._proc.wait()
            self._log.seek(0)
            tail = self._log.read().decode("utf-8", "replace").strip().splitlines()[-3:]
            raise ModelportError(f"The {self.toolchain} runtime process died (exit {self._proc.returncode}) while "
                                 f"running '{self.path.name}': {' '.join(tail) or 'no message'}",
                                 "The runtime crashed on this model; run with --verbose for its log.")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise ModelportError(f"{self.runtime} could not run '{self.path.name}': {answer.get('error')}",
                                 "Check that the model runs on its own runtime with these inputs.")
        return answer

    def _arrays(self, name: str, arrays: dict[str, np.ndarray]) -> str:
        import numpy as np

        path = Path(self._scratch.name) / name
        np.savez(path, **arrays)
        return str(path)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import numpy as np

        out = Path(self._scratch.name) / "outputs.npz"
        self._ask({"cmd": "run", "inputs": self._arrays("inputs.npz", feeds), "outputs": str(out)})
        with np.load(out, allow_pickle=False) as produced:
            return {name: produced[name] for name in produced.files}

    def time_runs(self, feeds: dict[str, np.ndarray], runs: int, warmup: int) -> list[float]:
        self.load()  # the timing loop runs in the server, next to the model
        answer = self._ask({"cmd": "time", "inputs": self._arrays("timing.npz", feeds), "runs": runs,
                            "warmup": warmup})
        return [float(s) for s in answer["seconds"]]

    def _close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            try:
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        if getattr(self, "_scratch", None) is not None:
            self._scratch.cleanup()
