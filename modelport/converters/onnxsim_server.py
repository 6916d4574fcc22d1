"""onnx2tf 1.29 runs the `onnxsim` command three times per conversion, each a new Python that
spends ~0.7 s importing onnx and onnxsim before it simplifies anything. This keeps one helper
process per modelport process that imports onnxsim once and forks per request; each fork runs the
command's own `main()` with the same arguments, so a crash or failure is still that one step's
exit status (onnx2tf then warns and goes on without simplifying, as with the command).

The helper is a child of this process (not a fork of it: this process has TensorFlow's threads),
started on first use, and ends when this process closes its stdin or exits.
"""

from __future__ import annotations

import atexit
import json
import subprocess
import sys
import threading
from typing import Any

_SERVER = r"""
import json, os, sys, tempfile, traceback
import onnxsim
from onnxsim import main as onnxsim_main
answers = os.fdopen(os.dup(1), "w", buffering=1)
for line in sys.stdin:
    argv = json.loads(line)
    with tempfile.TemporaryFile() as printed:
        sys.stdout.flush(); sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.dup2(printed.fileno(), 1); os.dup2(printed.fileno(), 2)
                sys.argv = argv
                try:
                    code = onnxsim_main() or 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush(); sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        printed.seek(0)
        output = printed.read().decode("utf-8", "replace")
    answers.write(json.dumps({"code": os.waitstatus_to_exitcode(status), "output": output}) + "\n")
"""

_lock = threading.Lock()
_server: subprocess.Popen | None = None


def _helper() -> subprocess.Popen:
    global _server
    if _server is None or _server.poll() is not None:
        _server = subprocess.Popen([sys.executable, "-I", "-c", _SERVER], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd="/")
        atexit.register(_close)
    return _server


def _close() -> None:
    global _server
    if _server is not None and _server.stdin is not None:
        _server.stdin.close()
        _server.wait(timeout=10)
    _server = None


def run_onnxsim(command: list[str]) -> bytes:
    """`subprocess.check_output(["onnxsim", ...])`, answered by the helper."""
    with _lock:
        helper = _helper()
        assert helper.stdin is not None and helper.stdout is not None
        try:
            helper.stdin.write(json.dumps(command) + "\n")
            helper.stdin.flush()
            answer = json.loads(helper.stdout.readline())
        except (OSError, ValueError):  # the helper itself died: the command's way, once
            return subprocess.check_output(command, stderr=subprocess.PIPE)
    if answer["code"] != 0:
        raise subprocess.CalledProcessError(answer["code"], command, output=answer["output"].encode())
    return answer["output"].encode()


class SubprocessWithWarmOnnxsim:
    """Stands in for the `subprocess` module inside onnx2tf.onnx2tf while it converts: its
    `check_output` of the `onnxsim` command goes to the helper; everything else is subprocess's."""

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    def check_output(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(command, list) and command and command[0] == "onnxsim":
            return run_onnxsim([str(part) for part in command])
        return subprocess.check_output(command, *args, **kwargs)

