"""`check`: convert and validate every model of a config, then hold each target to its budgets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import ModelCheck, find_config, load_config
from .errors import ModelportError
from .options import ConvertOptions, Progress
from .pipeline import convert as convert_here
from .placement import default_output_dir
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
        for name, limit, value in checks:
            passed = value <= limit
            item.budgets.append({"name": name, "limit": limit, "value": round(value, 4), "passed": passed})
            if not passed and item.verdict.status is Status.PASSED:
                item.verdict = Verdict.failed(f"Budget {name} broken: {value:.3g} > {limit:g}.")


def convert_options(entry: ModelCheck, output_dir: Path | None) -> ConvertOptions:
    """A config entry as the options `convert` takes (paths already relative to the config)."""
    opts = dict(entry.options)
    ranges = tuple(parse_input_range(r) for r in opts.pop("input_ranges", []))
    sample_inputs = opts.pop("sample_inputs", None)
    calibration = opts.pop("calibration_data", None)
    via = tuple(opts.pop("via", ()))
    if opts.get("quantize") == "none":
        opts.pop("quantize")
    out = (output_dir or Path("modelport-out")) / default_output_dir(entry.source).name
    return ConvertOptions(
        targets=tuple(entry.targets), output_dir=out, inputs=tuple(parse_input(i) for i in entry.inputs),
        input_ranges=ranges, sample_inputs=Path(sample_inputs) if sample_inputs else None, via=via,
        calibration_data=(calibration if calibration == "random" else Path(calibration)) if calibration else None,
        output_tolerances=entry.tolerance or None, **opts)


ConvertOne = Callable[[str, ConvertOptions, "Progress | None"], ConvertResult]


def check(config_path: Path | None = None, output_dir: Path | None = None, progress: Progress | None = None,
          registry: Registry | None = None, convert: ConvertOne | None = None) -> CheckResult:
    """Convert and validate every model of a modelport.toml / [tool.modelport] config, with budgets.
    `convert` runs one model (default: here, in this process; the API passes the model worker)."""
    path = config_path or find_config()
    config = load_config(path)
    results = []
    for entry in config.models:
        options = convert_options(entry, output_dir)
        if progress:
            progress("start", f"Checking {entry.name}")
        try:
            result = (convert(entry.source, options, progress) if convert is not None
                      else convert_here(entry.source, options, progress, registry))
        except ModelportError as exc:  # the model itself could not be loaded: one error row per target
            result = ConvertResult(source={"path": entry.source, "format": None, "framework": None, "sha256": None,
                                           "inputs": [], "outputs": []},
                                   targets=[TargetResult(target=t, verdict=Verdict.error(exc)) for t in entry.targets])
        apply_budgets(result, entry.budget)
        results.append((entry.name, result))
        if progress:
            progress("done", f"Checked {entry.name}")
    return CheckResult(config=path, models=results)
