"""Run any runner in a clean child process, behind the same Runner interface.

Why: LiteRT silently uses the Flex delegate in a process that imported TensorFlow, so a .tflite
with Flex ops would "pass" here and fail on every device. The child imports only the runner's
own runtime. Messages are pickles framed by length on the child's stdin and a private fd; both
ends are this package, so nothing untrusted is unpickled.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._channel import recv as _recv
from .._channel import send as _send
from ..errors import ModelportError
from ..safety import is_allocation_failure, over_budget
from .base import Runner, Tapped

if TYPE_CHECKING:
    import numpy as np


def load_runner_class(import_string: str) -> type[Runner]:
    module, _, name = import_string.partition(":")
    return getattr(importlib.import_module(module), name)


class IsolatedRunner(Runner):
    """Proxy to `runner_class` living in a child Python process."""

    def __init__(self, runner: str, path: Path | str, threads: int | None = None) -> None:
        super().__init__(path, threads)
        self._runner_import = runner
        self.runtime = runner.rsplit(":", 1)[-1]

    def _call(self, command: str, *args: Any) -> Any:
        assert self._proc.stdin is not None and self._proc.stdout is not None  # opened with PIPE
        try:
            _send(self._proc.stdin, (command, args))
            status, value = _recv(self._proc.stdout)
        except (EOFError, BrokenPipeError):
            self._proc.wait()
            self._log.seek(0)
            log = self._log.read().decode("utf-8", "replace")
            if is_allocation_failure(log):
                raise over_budget() from None
            tail = log.strip().splitlines()[-3:]
            raise ModelportError(
                f"The {self.runtime} process died (exit {self._proc.returncode}) while running "
                f"'{self.path.name}': {' '.join(tail) or 'no message'}",
                "The runtime crashed on this model; run with --verbose for its log.") from None
        if status == "error":
            raise value
        return value

    def _load(self) -> None:
        self._log = tempfile.TemporaryFile()
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "modelport.targets.isolated"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env)
        try:
            self.inputs, self.outputs, self.runtime = self._call("load", self._runner_import, str(self.path), self.threads)
        except BaseException:
            self._close()  # a model the runtime refused must not leave its child process waiting
            raise

    def _run(self, feeds):
        return self._call("run", feeds)

    def time_runs(self, feeds: dict[str, np.ndarray], runs: int, warmup: int) -> list[float]:
        self.load()
        return self._call("time", feeds, runs, warmup)

    def tap(self, feeds: dict[str, np.ndarray]) -> list[Tapped]:
        self.load()
        tapped: list[Tapped] = self._call("call", "tap", feeds)
        return tapped

    def call(self, method: str, *args: Any) -> Any:
        """Call another method of the remote runner (e.g. `quantization`)."""
        self.load()
        return self._call("call", method, *args)

    def peak_rss_bytes(self) -> int | None:
        from .base import read_vmhwm

        return read_vmhwm(self._proc.pid) if self._loaded else None

    def _close(self) -> None:
        assert self._proc.stdin is not None  # opened with stdin=PIPE
        try:
            _send(self._proc.stdin, ("exit", ()))
            self._proc.stdin.close()
            self._proc.wait(timeout=10)
        except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
            self._proc.kill()
        self._log.close()


def _serve() -> None:
    # Keep a private copy of stdout for messages; anything a library prints goes to stderr.
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    runner: Runner | None = None
    while True:
        try:
            command, args = _recv(requests)
        except EOFError:
            break
        if command == "exit":
            break
        try:
            if command == "load":
                runner = load_runner_class(args[0])(args[1], threads=args[2]).load()
                result: Any = (runner.inputs, runner.outputs, f"{runner.runtime} (isolated)")
            elif command == "run":
                assert runner is not None  # the parent always sends "load" first
                result = runner.run(args[0])
            elif command == "time":
                assert runner is not None  # the parent always sends "load" first
                result = runner.time_runs(*args)
            else:
                result = getattr(runner, args[0])(*args[1:])
            _send(channel, ("ok", result))
        except Exception as exc:  # noqa: BLE001 - every error goes back to the parent to raise
            if isinstance(exc, MemoryError) or is_allocation_failure(str(exc)):
                exc = over_budget()  # (the budget this process inherited)
            elif not isinstance(exc, ModelportError):
                exc = ModelportError(f"{type(exc).__name__}: {exc}")
            _send(channel, ("error", exc))
    if runner is not None:
        runner.close()


if __name__ == "__main__":
    _serve()
