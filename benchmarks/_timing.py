"""What the side-by-side benchmarks (convert_overhead.py, to_all.py) print: each side's median,
min and max wall seconds."""

from __future__ import annotations

import statistics


def print_medians(times: dict[str, list[float]]) -> dict[str, float]:
    """Print one row per side and return the medians."""
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"{'side':<10}  {'median s':>9}  {'min s':>7}  {'max s':>7}")
    for name, ts in times.items():
        print(f"{name:<10}  {medians[name]:>9.2f}  {min(ts):>7.2f}  {max(ts):>7.2f}")
    return medians
