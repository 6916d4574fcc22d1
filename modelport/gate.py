"""`check`: convert and validate every model of a config, then hold each target to its budgets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .check_cache import ResultStore, Uncacheable, cache_key, cacheable
from .config import ModelCheck, find_config, load_config
from .errors import ModelportError
from .executors import ModelJob, Outcome, RunModels, Unwatched, ZooEvents
from .options import ConvertOptions, PackageOptions
from .pipeline import convert as convert_here
from .placement import OUTPUT_ROOT, default_output_dir
from .registry import Registry
from .results import CheckResult, ConvertResult, Status, TargetResult, Verdict
from .spec import parse_input, parse_input_range


def apply_budgets(result: ConvertResult, budget: dict[str, Any]) -> None:
    """Record each budget's value and verdict; a broken one turns a passed target into failed."""
    for item in result.targets:
        checks = []
        limit = budget.get("latency_p50_ms", {}).get(item.target)
        if limit is not None and item.latency:
            checks.append(("latency_p50_ms", limit, item.latency.p50))
        if "latency_ratio" in budget and item.latency and item.reference_latency and item.reference_latency.p50:
            checks.append(("latency_ratio", budget["latency_ratio"], item.latency.p50 / item.reference_latency.p50))
        limit = budget.get("size_mb", {}).get(item.target)
        if limit is not None and item.size_bytes is not None:
            checks.append(("size_mb", limit, item.size_bytes / 2**20))
        for name, value in _drift_values(item).items():  # lower bounds: quantization may not cost more
            limit = budget.get(name, {}).get(item.target)
            if limit is not None:
                checks.append((name, limit, value))
        for name, limit, value in checks:
            passed = value >= limit if name in LOWER_BOUNDS else value <= limit
            item.budgets.append({"name": name, "limit": limit, "value": round(value, 4), "passed": passed})
            if not passed and item.verdict.status in (Status.PASSED, Status.UNVERIFIED):
                sign = "<" if name in LOWER_BOUNDS else ">"
                item.verdict = Verdict.failed(f"Budget {name} broken: {value:.3g} {sign} {limit:g}.")


LOWER_BOUNDS = ("min_cosine", "top1_agreement", "size_reduction")


def _drift_values(item: TargetResult) -> dict[str, float]:
    """What the drift budgets bound: the worst output's cosine and top-1 agreement, and the size
    reduction against the float32 model (0 for a float target; unknown without a float32 model)."""
    values: dict[str, float] = {}
    outputs = item.numeric.outputs if item.numeric else []
    if outputs:
        values["min_cosine"] = min(o.cosine for o in outputs)
        agreements = [o.top1_agreement for o in outputs if o.top1_agreement is not None]
        if agreements:
            values["top1_agreement"] = min(agreements)
    if item.artifact is not None and item.artifact.quantization in ("none", None):
        values["size_reduction"] = 0.0
    elif item.float_size_bytes and item.size_bytes:
        values["size_reduction"] = 1 - item.size_bytes / item.float_size_bytes
    return values


def convert_options(entry: ModelCheck, output_dir: Path | None, folder: str | None = None) -> ConvertOptions:
    """A config entry as the options `convert` takes (paths already relative to the config);
    `folder`: its output folder's name under `output_dir` (default: the source's name)."""
    opts = dict(entry.options)
    ranges = tuple(parse_input_range(r) for r in opts.pop("input_ranges", []))
    sample_inputs = opts.pop("sample_inputs", None)
    calibration = opts.pop("calibration_data", None)
    via = tuple(opts.pop("via", ()))
    if opts.get("quantize") == "none":
        opts.pop("quantize")
    out = ((output_dir or OUTPUT_ROOT) / (folder or default_output_dir(entry.source).name)).absolute()
    return ConvertOptions(
        targets=tuple(entry.targets), output_dir=out, inputs=tuple(parse_input(i) for i in entry.inputs),
        input_ranges=ranges, sample_inputs=Path(sample_inputs).absolute() if sample_inputs else None, via=via,
        calibration_data=(calibration if calibration == "random" else Path(calibration).absolute())
        if calibration else None, output_tolerances=entry.tolerance or None, **opts)


def output_folders(entries: list[ModelCheck]) -> list[str]:
    """One output folder per model: the source's name, with -2, -3... where two models share it
    (the same model twice, at two precisions, must not write over each other's files)."""
    names: list[str] = []
    for entry in entries:
        base = default_output_dir(entry.source).name
        name, number = base, 1
        while name in names:
            number += 1
            name = f"{base}-{number}"
        names.append(name)
    return names


Bundle = Callable[[str, PackageOptions], Any]


def _package(entry: ModelCheck, options: ConvertOptions, result: ConvertResult, bundle: Bundle | None) -> None:
    """`package = {target, path}`: bundle that target once it passed its checks (budgets included);
    a bundle that cannot be written turns the target into an error."""
    from dataclasses import asdict

    assert entry.package is not None
    item = next((t for t in result.targets if t.target == entry.package["target"]), None)
    if item is None or item.verdict.status not in (Status.PASSED, Status.UNVERIFIED):
        return
    fields = {k: v for k, v in asdict(options).items() if k in PackageOptions.__dataclass_fields__}
    package_options = PackageOptions(**{**fields, "targets": (item.target,), "output_dir": None,
                                        "bundle": Path(entry.package["path"])})
    if bundle is None:  # (the API passes the packager; this layer does not reach up to it)
        item.notes.append("not bundled: no packager given to check()")
        return
    try:
        written = bundle(entry.source, package_options)
        item.notes.append(f"bundled: {written.bundle}")
    except ModelportError as exc:
        item.verdict = Verdict.error(f"package: {exc.one_line()}", exc.exit_code)


def _error_result(entry: ModelCheck, exc: ModelportError) -> ConvertResult:
    """A model that could not be loaded (or whose worker died): one error row per target."""
    return ConvertResult(source={"path": entry.source, "format": None, "framework": None, "sha256": None,
                                 "inputs": [], "outputs": []},
                         targets=[TargetResult(target=t, verdict=Verdict.error(exc)) for t in entry.targets])


def _serial_here(registry: Registry | None) -> RunModels:
    """Models one after another in this process (no worker): the library's plain default."""
    def run(jobs: list[ModelJob], events: ZooEvents, done: Callable[[ModelJob, Outcome], None]) -> None:
        for job in jobs:
            events.started(0, job)
            try:
                outcome: Outcome = convert_here(job.source, job.options,
                                                lambda e, m: events.step(0, e, m), registry)
            except ModelportError as exc:
                outcome = exc
            done(job, outcome)
            events.finished(0, job, outcome)
    return run


@dataclass(frozen=True)
class Reuse:
    """Where finished results are kept and read back: the cache (None: off), and the run journal
    in the output folder, read only when resuming."""
    cache: ResultStore | None = None
    journal: ResultStore | None = None
    resume: bool = False


def check(config_path: Path | None = None, output_dir: Path | None = None, events: ZooEvents | None = None,
          registry: Registry | None = None, run_models: RunModels | None = None,
          bundle: Bundle | None = None, reuse: Reuse = Reuse()) -> CheckResult:
    """Convert and validate every model of a modelport.toml / [tool.modelport] config, with budgets.
    `run_models` runs the models that need it (default: here, one after another; the API passes
    the local worker pool or Ray); the results come back in the config's order either way."""
    path = config_path or find_config()
    config = load_config(path)
    events = events or Unwatched()
    entries = config.models
    events.planned(len(entries))
    options = [convert_options(e, output_dir, folder) for e, folder in zip(entries, output_folders(entries))]
    skip = frozenset(p.absolute() for p in (output_dir or OUTPUT_ROOT,
                                            *(s.root for s in (reuse.cache, reuse.journal) if s)))
    keys: dict[int, str] = {}
    results: dict[int, ConvertResult] = {}
    jobs: list[ModelJob] = []
    uncached: dict[int, str] = {}
    stores = [s for s in ((reuse.journal if reuse.resume else None), reuse.cache) if s is not None]
    for index, (entry, opts) in enumerate(zip(entries, options)):
        job = ModelJob(index, entry.name, entry.source, opts)
        if reuse.cache is not None or reuse.journal is not None:
            try:
                keys[index] = cache_key(entry.source, opts, skip)
            except Uncacheable as exc:
                uncached[index] = f"not cached: {exc}"
        key = keys.get(index)
        assert opts.output_dir is not None
        hit = next((r for s in stores if key and (r := s.get(key, opts.output_dir)) is not None), None)
        if hit is not None:
            results[index] = hit
            events.finished(-1, job, hit, cached=True)
        else:
            jobs.append(job)

    def done(job: ModelJob, outcome: Outcome) -> None:  # (called as each model finishes, maybe from a thread)
        key = keys.get(job.index)
        if isinstance(outcome, ModelportError):
            results[job.index] = _error_result(entries[job.index], outcome)
            return
        results[job.index] = outcome
        if key and cacheable(outcome) and job.options.output_dir is not None:
            for store in (reuse.journal, reuse.cache):
                if store is not None:
                    store.put(key, outcome, job.options.output_dir)

    if jobs:
        (run_models or _serial_here(registry))(jobs, events, done)
    ordered = []
    for index, entry in enumerate(entries):
        result = results[index]
        if index in uncached:
            for item in result.targets:
                item.notes.append(uncached[index])
        apply_budgets(result, entry.budget)
        if entry.package is not None:
            _package(entry, options[index], result, bundle)
        ordered.append((entry.name, result))
    return CheckResult(config=path, models=ordered)
