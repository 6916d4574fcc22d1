"""`bench`: time a model on its own runtime (and a reference beside it) on seeded inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bundles import opened_bundle
from .comparison import open_model
from .errors import BadInput
from .options import BenchOptions
from .registry import Registry
from .spec import TensorSpec
from .validators.data import make_feeds
from .validators.latency import Latency, measure
from .validators.matching import read_sidecar


@dataclass
class BenchResult:
    model: str
    runtime: str
    latency: Latency
    peak_rss_bytes: int | None
    inputs: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "runtime": self.runtime, "latency_ms": self.latency.to_json(),
                "peak_rss_mb": round(self.peak_rss_bytes / 2**20, 1) if self.peak_rss_bytes else None,
                "inputs": self.inputs}


def _bench_specs(path: str, specs: list[TensorSpec], given: list[TensorSpec]) -> list[TensorSpec]:
    """The runner's input specs, completed by --input (by name, else in order) and by the shapes a
    modelport sidecar recorded."""
    sidecar = read_sidecar(Path(path)) if Path(path).exists() else None
    recorded = {s["name"]: s for s in (sidecar or {}).get("inputs", [])}
    by_name = {s.name: s for s in given}
    completed = []
    for index, spec in enumerate(specs):
        if spec.name in by_name:
            spec = TensorSpec(spec.name, by_name[spec.name].shape, by_name[spec.name].dtype)
        elif given and len(given) == len(specs) and not set(by_name) & {s.name for s in specs}:
            spec = TensorSpec(spec.name, given[index].shape, given[index].dtype)
        elif spec.shape is None and spec.name in recorded and recorded[spec.name]["shape"] is not None:
            spec = TensorSpec(spec.name, tuple(recorded[spec.name]["shape"]), recorded[spec.name]["dtype"])
        completed.append(spec)
    return completed


def bench(model: str, options: BenchOptions, registry: Registry | None = None) -> list[BenchResult]:
    """Time MODEL (and --against REF, in the same process) on seeded inputs."""
    results = []
    for given in [model, *([options.against] if options.against else [])]:
        with opened_bundle(given) as path, open_model(path, options, registry) as runner:
            runner.load()
            specs = _bench_specs(path, list(runner.inputs), list(options.inputs))
            unknown = [s for s in specs if s.shape is None]
            if unknown:
                raise BadInput(f"'{path}' does not record the shape of {', '.join(s.name for s in unknown)}.",
                               f"Pass --input {unknown[0].name}:1x3x224x224 (its real shape).")
            feeds = make_feeds(specs, seed=options.seed)
            latency = measure(runner, feeds, options.runs, options.warmup, options.threads)
            results.append(BenchResult(given, runner.runtime, latency, runner.peak_rss_bytes(),
                                       [s.to_json() for s in specs]))
    return results
