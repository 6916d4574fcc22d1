"""`check`: convert and validate every model of a config, then hold each target to its budgets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import ModelCheck, find_config, load_config
from .errors import ModelportError
from .options import ConvertOptions, PackageOptions, Progress
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


def check(config_path: Path | None = None, output_dir: Path | None = None, progress: Progress | None = None,
          registry: Registry | None = None, convert: ConvertOne | None = None,
          bundle: Bundle | None = None) -> CheckResult:
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
        if entry.package is not None:
            _package(entry, options, result, bundle)
        results.append((entry.name, result))
        if progress:
            progress("done", f"Checked {entry.name}")
    return CheckResult(config=path, models=results)
