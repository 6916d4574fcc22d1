"""Latency: warm-up, timed runs, percentiles in milliseconds."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from ..targets.base import Runner


@dataclass(frozen=True)
class Latency:
    runs: int
    warmup: int
    threads: int
    p50: float
    p90: float
    p99: float
    mean: float
    min: float

    def to_json(self) -> dict:
        return asdict(self)


def measure(runner: Runner, feeds: dict[str, np.ndarray], runs: int = 20, warmup: int = 3,
            threads: int = 1) -> Latency:
    import numpy as np

    seconds = np.asarray(runner.time_runs(feeds, runs, warmup)) * 1000.0
    p50, p90, p99 = (float(x) for x in np.percentile(seconds, [50, 90, 99]))
    return Latency(runs, warmup, threads, p50, p90, p99, float(seconds.mean()), float(seconds.min()))
