"""The model worker: every API call that opens a model runs in this one child process.

Why a separate process: the memory budget (RLIMIT_AS) belongs on the process that loads and runs
models, not on the command that reports on them. A model past the budget fails to allocate there;
a runtime that aborts on a failed allocation (std::bad_alloc in C++), crashes on a corrupt file or
is killed by the kernel ends the worker only. The command then reports it in one line (exit 2 for
an allocation failure) and, in `check`, goes on with the next model in a fresh worker.

The worker is reused call after call, so heavy frameworks are imported once per worker, not once
per model. Each call runs with the caller's environment variables and leaves the worker as it
found it (`preserved_process_state`). Its scratch files live in a folder the caller removes when
the worker ends, however it ends. Messages are framed pickles (`_channel.py`) between two ends of
this package; model files are opened only inside the worker.
"""

from __future__ import annotations

import atexit
import collections
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from ._channel import recv, send
from .errors import ModelportError, ModelProcessDied, TimedOut, UnexpectedError
from .options import Progress
from .safety import default_memory_budget, is_allocation_failure, over_budget

_LOG_LINES = 200  # the tail of the worker's log kept to explain how it died


class Worker:
    """One model-running child process, started on first use and again after it dies."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._scratch: Path | None = None
        self._blocked: tuple[str, ...] = ()
        self._log: collections.deque[str] = collections.deque(maxlen=_LOG_LINES)
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self.echo = False  # stream the worker's log to stderr (--verbose)

    # -- the caller's side -------------------------------------------------------------------------
    def call(self, function: str, *args: Any, progress: Progress | None = None, max_memory: int | None = None,
             verbose: bool = False, timeout: float | None = None, **kwargs: Any) -> Any:
        """Run `function` ("module:name") in the worker with `args` under the memory budget; its
        progress events come back to `progress`; its errors are raised here. Past `timeout`
        seconds the worker is stopped and the call is TimedOut."""
        with self._lock:
            blocked = _blocked_modules()
            if self._proc is None or self._proc.poll() is not None or blocked != self._blocked:
                self.close()
                self._start(blocked)
            proc = self._proc
            assert proc is not None and proc.stdin is not None and proc.stdout is not None
            self.echo = verbose
            limit = max_memory if max_memory is not None else default_memory_budget()
            try:
                send(proc.stdin, ("call", function, args, kwargs, limit, progress is not None, dict(os.environ)))
                deadline = time.monotonic() + timeout if timeout else None
                while True:
                    if deadline is not None and not _readable(proc.stdout, deadline - time.monotonic()):
                        self._kill()
                        raise TimedOut(f"The model did not finish within {timeout:g} s (--timeout); its process was "
                                       "stopped.", "Raise --timeout for a large model; a tiny model that takes this "
                                       "long may be built to keep a converter busy.")
                    message = recv(proc.stdout)
                    if message[0] == "progress" and progress is not None:
                        progress(message[1], message[2])
                    elif message[0] in ("ok", "error"):
                        break
            except (EOFError, BrokenPipeError, ConnectionResetError):
                raise self._died(limit) from None
            except KeyboardInterrupt:
                self._interrupt()
                raise
            except TimedOut:
                raise
            except BaseException:
                # Anything else while the worker works (a progress callback's error, an alarm):
                # its answer would be read by the next call, so this worker ends here.
                self._kill()
                raise
            if message[0] == "error":
                raise message[1]
            return message[1]

    def interrupt(self) -> None:
        """Ask a running worker to stop (from another thread than the one in `call`): it unwinds,
        removes its scratch, and that `call` ends with the worker's end."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)

    def close(self) -> None:
        """End the worker (if running) and remove its scratch folder."""
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if proc.poll() is None:
                    assert proc.stdin is not None
                    send(proc.stdin, ("exit",))
                    proc.stdin.close()
                    proc.wait(timeout=30)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
            self._join_reader()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _start(self, blocked: tuple[str, ...]) -> None:
        # TMPDIR: every scratch file of the worker (and of the runtimes it starts) lands in a folder
        # this process removes, even when the worker is killed before it can clean up.
        self._scratch = Path(tempfile.mkdtemp(prefix="modelport-worker-"))
        self._blocked = blocked
        self._log.clear()
        env = {**os.environ, "TMPDIR": str(self._scratch)}
        # Its own session: a Ctrl-C reaches this process only, which interrupts the worker once.
        # Unbuffered pipes (bufsize=0): select() on them sees every byte not yet read.
        self._proc = subprocess.Popen([sys.executable, "-c", "from modelport.worker import serve; serve()"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                      start_new_session=True, bufsize=0)
        assert self._proc.stdin is not None
        send(self._proc.stdin, blocked)
        self._reader = threading.Thread(target=self._read_log, args=(self._proc,), daemon=True)
        self._reader.start()

    def _read_log(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in io.BufferedReader(proc.stderr):  # type: ignore[type-var]  # (a raw FileIO: bufsize=0)
            line = raw.decode("utf-8", "replace")
            self._log.append(line)
            if self.echo:
                sys.stderr.write(line)
                sys.stderr.flush()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None

    def _died(self, limit: int | None) -> ModelportError:
        """Why the worker ended without answering, as the error to report."""
        proc = self._proc
        assert proc is not None
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        self._join_reader()
        log = "".join(self._log)
        self.close()
        if is_allocation_failure(log):
            return over_budget(limit)
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        tail = " ".join(line.strip() for line in log.strip().splitlines()[-3:])
        hint = ("The system's out-of-memory killer sends SIGKILL: set --max-memory below the free memory so the "
                "model fails cleanly." if code == -signal.SIGKILL else
                "The runtime crashed on this model; run with --verbose for its log.")
        return ModelProcessDied(f"The process running the model {how}: {tail or 'no message'}.", hint)

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self.close()

    def _interrupt(self) -> None:
        """Ctrl-C or SIGTERM here: let the worker unwind (its scratch removed, nothing half-written)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.close()


def _readable(stream: Any, seconds: float) -> bool:
    import select

    ready, _, _ = select.select([stream], [], [], max(seconds, 0.0))
    return bool(ready)


def _blocked_modules() -> tuple[str, ...]:
    """Modules this process has blocked (sys.modules[name] = None): blocked in the worker too."""
    return tuple(sorted(name for name, module in list(sys.modules.items()) if module is None))


_default: Worker | None = None


def default_worker() -> Worker:
    """The process's shared worker (ended when the process exits)."""
    global _default
    if _default is None:
        _default = Worker()
        atexit.register(_default.close)
    return _default


# -- the worker's side -----------------------------------------------------------------------------
def _die_with_parent() -> None:
    """On Linux, end with the process that started us: a killed command leaves no worker behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        except (OSError, AttributeError):
            pass


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _as_error(exc: BaseException, limit: int | None) -> BaseException:
    from .errors import first_line

    if isinstance(exc, ModelportError):
        return exc
    if isinstance(exc, MemoryError) or is_allocation_failure(str(exc)):
        return over_budget(limit)
    error = UnexpectedError(type(exc).__name__, str(exc) or first_line(exc))
    error.add_note("In the model worker:\n" + "".join(traceback.format_exception(exc)))
    return error


def run_call(function: str, args: tuple, kwargs: dict, limit: int | None, progress: Progress | None,
             environ: dict[str, str]) -> Any:
    """One call as the worker runs it: with the caller's environment and under the budget, leaving
    the process as it found it."""
    from ._lazy import preserved_process_state, restore_entries
    from .formats.base import load_object
    from .safety import memory_budget

    with preserved_process_state(), memory_budget(limit):
        restore_entries(os.environ, {**dict.fromkeys(os.environ), **environ,
                                     "TMPDIR": os.environ.get("TMPDIR")})  # (the caller's, but our scratch)
        if progress is not None:
            kwargs = {**kwargs, "progress": progress}
        return load_object(function)(*args, **kwargs)


def serve() -> None:
    channel = os.fdopen(os.dup(1), "wb")  # messages only: anything a library prints goes to the log
    os.dup2(2, 1)
    _die_with_parent()
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)
    requests = sys.stdin.buffer
    for name in recv(requests):
        sys.modules[name] = None  # type: ignore[assignment]  # (how Python spells "not importable")
    while True:
        try:
            message = recv(requests)
        except EOFError:
            break
        if message[0] == "exit":
            break
        _, function, args, kwargs, limit, with_progress, environ = message

        def progress(event: str, text: str) -> None:
            send(channel, ("progress", event, text))

        try:
            result = run_call(function, args, kwargs, limit, progress if with_progress else None, environ)
        except KeyboardInterrupt:
            break  # unwound: scratch folders are gone; the caller knows it asked us to stop
        except BaseException as exc:  # noqa: BLE001 - every error goes back to the caller to raise
            send(channel, ("error", _as_error(exc, limit)))
            continue
        try:
            send(channel, ("ok", result))  # (pickling fails before a byte is written)
        except Exception as exc:  # noqa: BLE001 - a result that cannot cross is our bug: say so
            send(channel, ("error", _as_error(exc, limit)))
    # Nothing here needs finalizing: every answer is sent, the runtimes' processes are closed and
    # the caller removes the scratch folder. The interpreter's teardown of TensorFlow and torch
    # (~2 s, which the command waited for) is skipped.
    sys.stdout.flush()
    sys.stderr.flush()
    channel.flush()
    os._exit(0)

