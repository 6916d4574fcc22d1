"""The public Python API: plain functions taking frozen options, returning results.

Thin on purpose; each job lives in its own module: options (`options.py`), the convert pipeline
(`pipeline.py`), validation of two models (`comparison.py`), timing (`benchmark.py`), the gate
(`gate.py`), file placement (`placement.py`), statuses and exit codes (`results.py`). Every call
that opens a model runs in the model worker (`worker.py`), under the memory budget: this process
never loads a model, so no model can take it down.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from .benchmark import BenchResult
from .errors import BadInput, ModelportError
from .executors import RunModels, ZooEvents
from .gate import check as _check
from .packaging import PackageResult
from .debug import DebugOptions, DebugResult
from .quant_doctor import DoctorOptions, DoctorResult
from .options import (BenchOptions, ConvertOptions, ModelOptions, PackageOptions, Progress, ValidateOptions,
                      ValidationOptions)
from .placement import OUTPUT_ROOT, default_output_dir, write_atomic
from .results import CheckResult, ConvertResult, NumericResult, Status, TargetResult, Verdict
from .worker import default_worker


def _in_worker(function: str, *args: Any, options: ModelOptions, progress: Progress | None = None,
               **kwargs: Any) -> Any:
    return default_worker().call(function, *args, progress=progress, max_memory=options.max_memory,
                                 verbose=options.verbose, timeout=options.timeout, **kwargs)


def convert(source: str, options: ConvertOptions, progress: Progress | None = None) -> ConvertResult:
    """Convert SOURCE to each target, validate each on its own runtime, and return the results."""
    result: ConvertResult = _in_worker("modelport.pipeline:convert", source, options, options=options,
                                       progress=progress)
    return result


def validate(reference: str, candidate: str, options: ValidateOptions,
             progress: Progress | None = None) -> ConvertResult:
    """Compare any two models on the same inputs, each on its own runtime."""
    result: ConvertResult = _in_worker("modelport.comparison:validate", reference, candidate, options,
                                       options=options, progress=progress)
    return result


def bench(model: str, options: BenchOptions) -> list[BenchResult]:
    """Time MODEL (and `options.against`, in the same process) on seeded inputs."""
    results: list[BenchResult] = _in_worker("modelport.benchmark:bench", model, options, options=options)
    return results


def check(config_path: Path | None = None, output_dir: Path | None = None, events: ZooEvents | None = None,
          max_memory: int | None = None, timeout: float | None = None, jobs: int = 1, executor: str = "local",
          address: str | None = None, cpus_per_model: float = 1.0, cache: Path | None = None,
          resume: bool = False, verbose: bool = False) -> CheckResult:
    """Convert and validate every model of a modelport.toml / [tool.modelport] config, with budgets.
    Each model runs in a model worker (`jobs` of them here, or Ray tasks with executor="ray"): one
    that crashes, runs out of memory or past `timeout` seconds is that model's error, the rest go
    on. Results are cached under `cache` (None: no cache); `resume` reuses what an interrupted run
    of the same output folder finished."""
    from dataclasses import replace

    from .check_cache import ResultStore
    from .executors import Limits, run_local, run_ray
    from .gate import Reuse

    limits = Limits(max_memory=max_memory, timeout=timeout, verbose=verbose)
    if executor == "ray":
        run_models: RunModels = functools.partial(run_ray, address=address, cpus_per_model=cpus_per_model,
                                                  workers=jobs, limits=limits)
    elif executor == "local":
        run_models = functools.partial(run_local, workers=jobs, limits=limits)
    else:
        raise BadInput(f"Unknown executor '{executor}'.", "Use --executor local or --executor ray.")
    journal = ResultStore((output_dir or OUTPUT_ROOT) / ".modelport-run", copies=False)
    if resume and not journal.exists():
        raise BadInput(f"Nothing to resume: no earlier `modelport check` wrote to {journal.root.parent}.",
                       "Resume with the same -o as the interrupted run, or run without --resume.")
    if not resume:
        journal.clear()
    reuse = Reuse(cache=ResultStore(cache) if cache is not None else None, journal=journal, resume=resume)

    def package_in_worker(source: str, options: PackageOptions) -> PackageResult:
        options = replace(options, max_memory=max_memory if max_memory is not None else options.max_memory,
                          timeout=timeout if timeout is not None else options.timeout)
        return package(source, options)

    return _check(config_path, output_dir, events, run_models=run_models, bundle=package_in_worker, reuse=reuse)


def package(model: str, options: PackageOptions, progress: Progress | None = None) -> PackageResult:
    """Convert MODEL to one target, validate it, and write a bundle (folder, .zip or .tar.gz)."""
    result: PackageResult = _in_worker("modelport.packaging:package", model, options, options=options,
                                       progress=progress)
    return result


def quantize_doctor(source: str, options: DoctorOptions, progress: Progress | None = None) -> DoctorResult:
    """Rank the layers an int8 model loses accuracy in; with `keep_float`, what float layers buy back."""
    result: DoctorResult = _in_worker("modelport.quant_doctor:diagnose", source, options, options=options,
                                      progress=progress)
    return result


def debug(reference: str, candidate: str | None, options: DebugOptions,
          progress: Progress | None = None) -> DebugResult:
    """Where CANDIDATE drifts from REFERENCE, layer by layer; without CANDIDATE, REFERENCE is a
    source converted to `options.targets[0]` first (through ONNX, the reference)."""
    if candidate is None:
        result: DebugResult = _in_worker("modelport.debug:debug_conversion", reference, options, options=options,
                                         progress=progress)
    else:
        result = _in_worker("modelport.debug:debug", reference, candidate, options, options=options,
                            progress=progress)
    return result


def explain(source: str, options: ConvertOptions) -> dict[str, str]:
    """The path each target would take, without converting anything."""
    plans: dict[str, str] = _in_worker("modelport.pipeline:explain", source, options, options=options)
    return plans


def inspect(model: str, options: ModelOptions, framework: str | None = None) -> dict[str, Any]:
    """What MODEL is: format, framework, I/O, parameters, size, ops (nothing is converted or run)."""
    described: dict[str, Any] = _in_worker("modelport.loading:describe_source", model,
                                           options.load_options(describe_only=True), framework, options=options)
    return described


__all__ = ["DebugOptions", "DebugResult", "debug", "BenchOptions", "BenchResult", "CheckResult", "ConvertOptions", "ConvertResult", "ModelOptions",
           "ModelportError", "NumericResult", "PackageOptions", "PackageResult", "package",
           "DoctorOptions", "DoctorResult", "quantize_doctor", "Status", "TargetResult", "ValidateOptions", "ValidationOptions",
           "Verdict", "bench", "check", "convert", "default_output_dir", "explain", "inspect", "validate",
           "write_atomic"]
