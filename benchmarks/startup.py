"""Startup cost of the modelport CLI, relative to the bare import of its UI libraries.

Measures the wall time of `python -m modelport --help` and `python -m modelport convert --help`
against `python -c "import click, rich"` (the floor any click/rich CLI pays), each in a fresh
subprocess. Runs are interleaved so that drift in machine load hits every command alike; the
median of each is reported together with the ratio to the baseline.

Run:  .venv/bin/python benchmarks/startup.py [--runs N]     (default N=10)
      make bench                                             (runs this and convert_overhead.py)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BASELINE = "import click, rich"
COMMANDS: dict[str, list[str]] = {
    BASELINE: [sys.executable, "-c", BASELINE],
    "modelport --help": [sys.executable, "-m", "modelport", "--help"],
    "modelport convert --help": [sys.executable, "-m", "modelport", "convert", "--help"],
}


def time_once(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one subprocess run; a failing command aborts the benchmark."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(argv)} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (default 10)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    # One untimed run of each warms the OS file cache, so run 1 is not an outlier.
    for argv in COMMANDS.values():
        time_once(argv, env)

    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):  # interleaved: A B C A B C ...
        for name, argv in COMMANDS.items():
            times[name].append(time_once(argv, env))

    medians = {name: statistics.median(ts) for name, ts in times.items()}
    width = max(map(len, COMMANDS))
    print(f"startup, {args.runs} runs each (python {sys.version.split()[0]})")
    print(f"{'command':<{width}}  {'median s':>9}  {'min s':>7}  {'max s':>7}")
    for name, ts in times.items():
        print(f"{name:<{width}}  {medians[name]:>9.3f}  {min(ts):>7.3f}  {max(ts):>7.3f}")
    base = medians[BASELINE]
    for name in COMMANDS:
        if name != BASELINE:
            print(f"ratio ({name} / {BASELINE}): {medians[name] / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
