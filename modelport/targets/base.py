"""The one runner interface every runtime sits behind (sources' reference models included).

A runner's base class owns the checks and the timing; a concrete runner implements only
`_load`, `_run` and `_close` (the shape of Polygraphy's runners).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

from ..errors import BadInput, ModelportError, error_summary
from ..safety import is_allocation_failure, over_budget

if TYPE_CHECKING:
    import numpy as np

    from ..spec import TensorSpec

_T = TypeVar("_T")


@dataclass
class Tapped:
    """One intermediate tensor of a run (`Runner.tap`): float values, dequantized where the runtime
    holds integers."""

    name: str       # the tensor's name in this runtime
    op: str         # the op that wrote it (the runtime's op name: Conv, CONV_2D, ...)
    value: np.ndarray
    node: str = ""  # the node that wrote it, where the runtime names nodes (ONNX)


class Runner:
    """Load a model on its runtime and run it on named numpy feeds. Use as a context manager."""

    runtime: str = "?"
    trust_remote_code: bool = False  # --trust-remote-code: runtimes whose models can run code check it
    describe_only: bool = False      # inspect: load for the I/O only (no graph optimization, nothing folded)

    def __init__(self, path: Path | str, threads: int | None = None) -> None:
        self.path = Path(path)
        self.threads = threads
        self._loaded = False
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def load(self) -> Self:
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    def close(self) -> None:
        if self._loaded:
            self._close()
            self._loaded = False

    def __enter__(self) -> Self:
        return self.load()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- running -----------------------------------------------------------------------------
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.load()
        expected = {s.name for s in self.inputs}
        missing = expected - set(feeds)
        if missing:
            raise BadInput(f"Missing input(s) for {self.runtime}: {', '.join(sorted(missing))}.",
                           f"The model's inputs are: {', '.join(s.name for s in self.inputs)}.")
        return self._guarded(self._run, {k: v for k, v in feeds.items() if k in expected})

    def _guarded(self, run: Callable[..., _T], *args: Any) -> _T:
        """A model that fails on its own runtime is reported as such (exit 3), one that asks for
        more than the memory budget as exit 2: never as modelport's own bug."""
        try:
            return run(*args)
        except ModelportError:
            raise
        except MemoryError:
            raise over_budget() from None
        except Exception as exc:  # noqa: BLE001 - any runtime's own exception type
            if is_allocation_failure(str(exc)):
                raise over_budget() from None
            raise ModelportError(f"{self.runtime} could not run '{self.path.name}': {error_summary(exc)}",
                                 "Check that the model runs on its own runtime with these inputs; --verbose "
                                 "shows the full error.") from exc

    def time_runs(self, feeds: dict[str, np.ndarray], runs: int, warmup: int) -> list[float]:
        """Seconds per run, after `warmup` untimed runs. Remote runners override this so the
        timing loop runs next to the model, not across a pipe."""
        self.load()
        return self._guarded(self._timed_runs, feeds, runs, warmup)

    def _timed_runs(self, feeds: dict[str, np.ndarray], runs: int, warmup: int) -> list[float]:
        for _ in range(warmup):
            self._run(feeds)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self._run(feeds)
            times.append(time.perf_counter() - start)
        return times

    def peak_rss_bytes(self) -> int | None:
        """High-water mark of resident memory of the process running the model (Linux)."""
        return read_vmhwm("self")

    def quantization(self) -> dict[str, dict]:
        """Scale and zero point of each quantized input and output (runtimes that have them)."""
        return {}

    def tap(self, feeds: dict[str, np.ndarray]) -> list[Tapped]:
        """Run once and return every intermediate tensor, in execution order (`modelport debug`).
        Runtimes that cannot expose their intermediates say so."""
        raise BadInput(f"modelport cannot read the intermediate tensors of {self.runtime} models yet.",
                       "`modelport debug` reads ONNX, TFLite, TorchScript, SavedModel and TF.js models' layers; compare the "
                       "others' outputs "
                       "with `modelport validate`.")

    # -- to implement ------------------------------------------------------------------------
    def _load(self) -> None:
        raise NotImplementedError

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _close(self) -> None:
        pass


def read_vmhwm(pid: int | str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
