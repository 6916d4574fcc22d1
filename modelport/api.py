"""The public Python API: plain functions taking frozen options, returning results.

Thin on purpose; each job lives in its own module: options (`options.py`), the convert pipeline
(`pipeline.py`), validation of two models (`comparison.py`), timing (`benchmark.py`), the gate
(`gate.py`), file placement (`placement.py`), statuses and exit codes (`results.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._lazy import preserved_process_state
from .benchmark import BenchResult
from .benchmark import bench as _bench
from .comparison import validate as _validate
from .gate import check as _check
from .loading import describe_source
from .options import BenchOptions, ConvertOptions, ModelOptions, Progress, ValidateOptions, ValidationOptions
from .pipeline import convert as _convert
from .pipeline import explain as _explain
from .placement import default_output_dir, write_atomic
from .safety import memory_budget, over_budget
from .results import CheckResult, ConvertResult, NumericResult, Status, TargetResult, Verdict


@contextlib.contextmanager
def _library_call(max_memory: int | None) -> Iterator[None]:
    """Every public call: under the memory budget, and leaving the process as it found it."""
    with preserved_process_state(), memory_budget(max_memory):
        try:
            yield
        except MemoryError:
            raise over_budget() from None


def convert(source: str, options: ConvertOptions, progress: Progress | None = None) -> ConvertResult:
    """Convert SOURCE to each target, validate each on its own runtime, and return the results."""
    with _library_call(options.max_memory):
        return _convert(source, options, progress)


def validate(reference: str, candidate: str, options: ValidateOptions,
             progress: Progress | None = None) -> ConvertResult:
    """Compare any two models on the same inputs, each on its own runtime."""
    with _library_call(options.max_memory):
        return _validate(reference, candidate, options, progress)


def bench(model: str, options: BenchOptions) -> list[BenchResult]:
    """Time MODEL (and `options.against`, in the same process) on seeded inputs."""
    with _library_call(options.max_memory):
        return _bench(model, options)


def check(config_path: Path | None = None, output_dir: Path | None = None,
          progress: Progress | None = None, max_memory: int | None = None) -> CheckResult:
    """Convert and validate every model of a modelport.toml / [tool.modelport] config, with budgets."""
    with _library_call(max_memory):
        return _check(config_path, output_dir, progress)


def explain(source: str, options: ConvertOptions) -> dict[str, str]:
    """The path each target would take, without converting anything."""
    with _library_call(options.max_memory):
        return _explain(source, options)


def inspect(model: str, options: ModelOptions, framework: str | None = None) -> dict[str, Any]:
    """What MODEL is: format, framework, I/O, parameters, size, ops (nothing is converted)."""
    with _library_call(options.max_memory):
        return describe_source(model, options.load_options(describe_only=True), framework)


__all__ = ["BenchOptions", "BenchResult", "CheckResult", "ConvertOptions", "ConvertResult", "ModelOptions",
           "NumericResult", "Status", "TargetResult", "ValidateOptions", "ValidationOptions", "Verdict", "bench",
           "check", "convert", "default_output_dir", "explain", "inspect", "validate", "write_atomic"]
