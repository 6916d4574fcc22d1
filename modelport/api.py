"""The Python API under the CLI: plain functions taking frozen options, returning results."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ._lazy import captured_output
from .artifact import Artifact, dump_json, sha256_of, size_of, write_sidecar
from .converters import graph
from .describe import describe_loaded
from .converters.base import EdgeContext
from .errors import BadInput, ConversionFailed, ModelportError
from .sources import LoadOptions, load_source
from .spec import InputRange, TensorSpec
from .validators.compare import OutputComparison
from .validators.latency import Latency

Progress = Callable[[str, str], None]  # (event: "start"|"done", message)


@dataclass(frozen=True)
class ConvertOptions:
    targets: tuple[str, ...] = ("onnx",)
    output_dir: Path | None = None
    inputs: tuple[TensorSpec, ...] = ()
    input_ranges: tuple[InputRange, ...] = ()
    framework: str | None = None
    signature: str | None = None
    opset: int | None = None
    via: tuple[str, ...] = ()
    keep_layout: bool = False
    simplify: bool = False
    quantize: str = "none"                    # TFLite: none | fp16 | dynamic | int8
    calibration_data: Path | None = None      # int8: representative inputs (.npz or test_data_set dirs)
    calibration_samples: int = 32             # seeded samples when no calibration data is given
    validate: bool = True
    sample_inputs: Path | None = None
    samples: int = 3
    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None
    top_k: int | None = None
    output_tolerances: dict[str, dict] | None = None  # per output name: {"atol": .., "min_cosine": ..}
    seed: int = 0
    trust_remote_code: bool = False
    verbose: bool = False
    latency_runs: int = 20
    latency_warmup: int = 3
    threads: int = 1


@dataclass
class NumericResult:
    atol: float
    rtol: float
    samples: int
    outputs: list[OutputComparison]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def worst(self) -> OutputComparison:
        failing = [o for o in self.outputs if not o.passed] or self.outputs
        return max(failing, key=lambda o: (o.max_abs_diff, -o.cosine))

    def to_json(self) -> dict:
        return {"atol": self.atol, "rtol": self.rtol, "samples": self.samples,
                "outputs": [o.to_json() for o in self.outputs]}


@dataclass
class TargetResult:
    target: str
    status: str = "error"  # passed | failed | error | skipped
    error: str | None = None
    exit_code: int = 0
    artifact: Artifact | None = None
    path: Path | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    seconds: float = 0.0
    numeric: NumericResult | None = None
    latency: Latency | None = None
    reference_latency: Latency | None = None
    plan: tuple[str, ...] = ()
    budgets: list[dict] = field(default_factory=list)  # `check`: each budget, its limit, value, verdict


@dataclass
class ConvertResult:
    source: dict
    targets: list[TargetResult] = field(default_factory=list)
    converter_runs: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(t.status in ("passed", "skipped") for t in self.targets)

    @property
    def exit_code(self) -> int:
        return max((t.exit_code for t in self.targets), default=0)


def _notify(progress: Progress | None, event: str, message: str) -> None:
    if progress:
        progress(event, message)


def default_output_dir(source: str) -> Path:
    stem = Path(source.rpartition(":")[2] if ":" in source and not Path(source).exists() else source).name
    for suffix in (".tflite", ".onnx", ".pt2", ".pt", ".pth", ".ts", ".keras", ".h5", ".py"):
        stem = stem.removesuffix(suffix)
    return Path("modelport-out") / (stem or "model")


def _place(artifact_path: Path, final: Path) -> None:
    """Move a finished artifact into place: copy beside it under a hidden name, then rename, so
    the destination never holds half a file or folder."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.partial-{os.getpid()}"
    try:
        if artifact_path.is_dir():
            shutil.copytree(artifact_path, staging)
        else:
            shutil.copyfile(artifact_path, staging)
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging) if staging.is_dir() else staging.unlink()


def _write_atomic(text: str, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def convert(source: str, options: ConvertOptions, progress: Progress | None = None) -> ConvertResult:
    """Convert SOURCE to each target, validate each on its own runtime, and return the results."""
    targets = list(options.targets)
    for name in targets:
        if name not in graph.TARGETS and name != "all":
            raise BadInput(f"Unknown target '{name}'.", f"Targets: {', '.join(graph.TARGETS)}, or all.")
    _notify(progress, "start", f"Loading {source}")
    model = load_source(source, LoadOptions(inputs=options.inputs, trust_remote_code=options.trust_remote_code,
                                            signature=options.signature, verbose=options.verbose),
                        framework=options.framework)
    _notify(progress, "done", f"Loaded {model.format.value} model")
    _check_before_converting(model, options)
    result = ConvertResult(source=describe_loaded(model, source))
    out_dir = options.output_dir or default_output_dir(source)
    src_node = graph.NODE_OF_FORMAT[model.format]
    if "all" in targets:
        targets = graph.reachable(src_node)
    with tempfile.TemporaryDirectory(prefix="modelport-") as scratch_root:
        scratch = Path(scratch_root)
        ctx = EdgeContext(opset=options.opset, verbose=options.verbose, seed=options.seed,
                          keep_layout=options.keep_layout, quantize=options.quantize, scratch=scratch,
                          signature=options.signature)
        origin = model.artifact()
        if model.format.value == "onnx" and options.opset:
            from .converters.onnx_opset import convert_opset

            origin = convert_opset(origin, options.opset, scratch)
        if options.quantize == "int8":
            ctx.calibration = _calibration(model, options)
        produced: dict[tuple[str, ...], Artifact] = {(): origin}
        for name in targets:
            result.targets.append(_convert_one(name, model, src_node, out_dir, options, ctx, produced, progress))
        result.converter_runs = dict(ctx.runs)
        if options.validate:
            from .validators.validate import validate_targets

            validate_targets(model, result.targets, options, progress)
    model.close()
    return result


@dataclass(frozen=True)
class ValidateOptions:
    inputs: tuple[TensorSpec, ...] = ()
    input_ranges: tuple[InputRange, ...] = ()
    maps: tuple[str, ...] = ()               # --map REF=CAND[:PERM]
    sample_inputs: Path | None = None
    samples: int = 3
    seed: int = 0
    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None
    top_k: int | None = None
    output_tolerances: dict[str, dict] | None = None
    latency: bool = False
    latency_runs: int = 50
    latency_warmup: int = 5
    threads: int = 1
    signature: str | None = None
    trust_remote_code: bool = False
    verbose: bool = False


def validate(reference: str, candidate: str, options: ValidateOptions, progress: Progress | None = None) -> ConvertResult:
    """Compare any two models on the same inputs, each on its own runtime."""
    from .compare_models import validate as run

    return run(reference, candidate, options, progress)


@dataclass(frozen=True)
class BenchOptions:
    inputs: tuple[TensorSpec, ...] = ()
    runs: int = 50
    warmup: int = 5
    threads: int = 1
    against: str | None = None
    seed: int = 0
    signature: str | None = None
    trust_remote_code: bool = False
    verbose: bool = False


@dataclass
class BenchResult:
    model: str
    runtime: str
    latency: Latency
    peak_rss_bytes: int | None
    inputs: list[dict]

    def to_json(self) -> dict:
        return {"model": self.model, "runtime": self.runtime, "latency_ms": self.latency.to_json(),
                "peak_rss_mb": round(self.peak_rss_bytes / 2**20, 1) if self.peak_rss_bytes else None,
                "inputs": self.inputs}


def _bench_specs(path: str, specs: list[TensorSpec], given: list[TensorSpec]) -> list[TensorSpec]:
    """The runner's input specs, completed by --input (by name, else in order) and by the shapes a
    modelport sidecar recorded."""
    from .validators.matching import read_sidecar

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


def bench(model: str, options: BenchOptions) -> list[BenchResult]:
    """Time MODEL (and --against REF, in the same process) on seeded inputs."""
    from .compare_models import open_model
    from .validators.data import make_feeds
    from .validators.latency import measure

    results = []
    for path in [model, *([options.against] if options.against else [])]:
        with open_model(path, options) as runner:
            runner.load()
            specs = _bench_specs(path, list(runner.inputs), list(options.inputs))
            unknown = [s for s in specs if s.shape is None]
            if unknown:
                raise BadInput(f"'{path}' does not record the shape of {', '.join(s.name for s in unknown)}.",
                               f"Pass --input {unknown[0].name}:1x3x224x224 (its real shape).")
            feeds = make_feeds(specs, seed=options.seed)
            latency = measure(runner, feeds, options.runs, options.warmup, options.threads)
            results.append(BenchResult(path, runner.runtime, latency, runner.peak_rss_bytes(),
                                       [s.to_json() for s in specs]))
    return results


@dataclass
class CheckResult:
    config: Path
    models: list[tuple[str, ConvertResult]]

    @property
    def exit_code(self) -> int:
        return max((r.exit_code for _, r in self.models), default=0)

    @property
    def passed(self) -> bool:
        return all(r.passed for _, r in self.models)


def _apply_budgets(result: ConvertResult, budget: dict) -> None:
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
            if not passed and item.status == "passed":
                item.status, item.exit_code = "failed", 1
                item.error = f"Budget {name} broken: {value:.3g} > {limit:g}."


def check(config_path: Path | None = None, output_dir: Path | None = None,
          progress: Progress | None = None) -> CheckResult:
    """Convert and validate every model of a modelport.toml / [tool.modelport] config, with budgets."""
    from .config import find_config, load_config
    from .spec import parse_input, parse_input_range

    path = config_path or find_config()
    config = load_config(path)
    results = []
    for entry in config.models:
        opts = dict(entry.options)
        ranges = tuple(parse_input_range(r) for r in opts.pop("input_ranges", []))
        sample_inputs = opts.pop("sample_inputs", None)
        calibration = opts.pop("calibration_data", None)
        via = tuple(opts.pop("via", ()))
        if opts.get("quantize") == "none":
            opts.pop("quantize")
        out = (output_dir or Path("modelport-out")) / default_output_dir(entry.source).name
        options = ConvertOptions(
            targets=tuple(entry.targets), output_dir=out, inputs=tuple(parse_input(i) for i in entry.inputs),
            input_ranges=ranges, sample_inputs=Path(sample_inputs) if sample_inputs else None, via=via,
            calibration_data=Path(calibration) if calibration else None,
            output_tolerances=entry.tolerance or None, **opts)
        _notify(progress, "start", f"Checking {entry.name}")
        try:
            result = convert(entry.source, options, progress)
        except ModelportError as exc:  # the model itself could not be loaded: one error row
            result = ConvertResult(source={"path": entry.source, "format": None, "framework": None, "sha256": None,
                                           "inputs": [], "outputs": []},
                                   targets=[TargetResult(target=t, status="error", error=exc.one_line(),
                                                         exit_code=exc.exit_code) for t in entry.targets])
        _apply_budgets(result, entry.budget)
        results.append((entry.name, result))
        _notify(progress, "done", f"Checked {entry.name}")
    return CheckResult(config=path, models=results)


def explain(source: str, options: ConvertOptions) -> dict[str, str]:
    """The path each target would take, without converting anything."""
    from .formats import Format, detect

    detected = detect(source)
    fmt = detected.format
    if fmt == Format.PYTHON_ENTRY:
        from .sources.entry import resolve

        _, kind = resolve(source)  # imports the user's module to learn its framework
        node = {"function": "jax"}.get(kind, kind)
    else:
        node = graph.NODE_OF_FORMAT[fmt]
    targets = graph.reachable(node) if "all" in options.targets else list(options.targets)
    plans = {}
    for target in targets:
        try:
            plans[target] = graph.explain(node, target, options.via)
        except BadInput as exc:
            plans[target] = f"unreachable: {exc.message}"
    return plans


def _check_before_converting(model, options: ConvertOptions) -> None:
    """Catch what would fail after minutes of conversion: bad sample data, impossible --samples,
    tolerances for outputs the model does not have."""
    from .validators.data import check_sample_budget, load_samples

    if options.validate:
        check_sample_budget(list(model.inputs), options.samples)
        if options.sample_inputs is not None:
            load_samples(options.sample_inputs, list(model.inputs))
    known = [s.name for s in model.outputs]
    unknown = [name for name in (options.output_tolerances or {}) if name not in known]
    if unknown:
        raise BadInput(f"A tolerance is set for output '{unknown[0]}', which the model does not have.",
                       f"Its outputs: {', '.join(known)}.")


def _calibration(model, options: ConvertOptions) -> list[dict]:
    """int8 calibration samples: the user's data, else seeded inputs (then the report says so:
    seeded noise calibrates ranges poorly, so accuracy on real data may be worse)."""
    from .validators.data import load_samples, make_feeds

    if options.calibration_data is not None:
        return load_samples(options.calibration_data, list(model.inputs))
    ranges = {r.name: r for r in options.input_ranges}
    return [make_feeds(list(model.inputs), seed=options.seed + 1000, sample=i, ranges=ranges)
            for i in range(options.calibration_samples)]


def _run_path(edges, src_node, options, ctx, produced, progress) -> Artifact:
    """Run a chain of edges, reusing intermediates (and failures) an earlier target produced."""
    artifact = produced[()]
    for depth, edge in enumerate(edges):
        key = tuple(e.name for e in edges[: depth + 1])
        if key in produced:  # an earlier target already made this intermediate, or failed to
            if isinstance(produced[key], ModelportError):
                raise produced[key]
            artifact = produced[key]
            continue
        _notify(progress, "start", f"{edge.src} -> {edge.dst} ({edge.name})")
        workdir = Path(ctx.scratch) / "-".join(key)
        workdir.mkdir(parents=True, exist_ok=True)
        ctx.count(edge.name)
        try:
            with captured_output(options.verbose):  # backends print at import time, before edges can
                artifact = edge.load()(artifact, workdir, ctx)
            if artifact.format.value == "onnx":
                from .targets.onnx import check_model

                check_model(artifact.path)
        except ModelportError as exc:
            produced[key] = exc
            raise
        produced[key] = artifact
        _notify(progress, "done", f"{edge.src} -> {edge.dst} ({edge.name})")
    if not edges:  # the source already is the target's format: the artifact is a copy of it
        artifact = artifact.with_(path_taken=(src_node,))
    return artifact


def _convert_one(name, model, src_node, out_dir, options, ctx, produced, progress) -> TargetResult:
    spec = graph.target_spec(name)
    started = time.perf_counter()
    item = TargetResult(target=name)
    try:
        # --via forces one path; otherwise the cheapest, then the next ones if a converter fails.
        paths = [graph.plan(src_node, name, options.via)] if options.via else (
            graph.alternatives(src_node, name) or [graph.plan(src_node, name)])
        failures: list[ConversionFailed] = []
        for edges in paths:
            item.plan = (src_node, *(e.dst for e in edges))
            try:
                artifact = _run_path(edges, src_node, options, ctx, produced, progress)
                break
            except ConversionFailed as exc:
                failures.append(exc)
        else:
            item.plan = (src_node, *(e.dst for e in paths[0]))  # report the path that was meant
            first = failures[0]
            others = list(dict.fromkeys(f.message for f in failures[1:] if f.message != first.message))
            if others:
                tried = "; ".join(others)
                raise ConversionFailed(f"{first.message} (other paths failed too: {tried})", first.hint)
            raise first
        if failures:
            artifact = artifact.with_(extra={**artifact.extra, "fallback_from": [f.message for f in failures]})
        if name == "onnx" and options.simplify:
            from .converters.onnx_simplify import simplify

            artifact = simplify(artifact, Path(ctx.scratch), options.verbose)
        final = out_dir / f"model{spec.suffix}" if spec.suffix else out_dir / name
        _place(artifact.path, final)
        _write_atomic(dump_json(write_sidecar(artifact, str(model.display))), final.with_name(final.name + ".modelport.json"))
        item.artifact = artifact.with_(path=final)
        item.path = final
        item.size_bytes = size_of(final)
        item.sha256 = sha256_of(final)
        item.status = "skipped"
    except ModelportError as exc:
        item.status, item.error, item.exit_code = "error", exc.one_line(), exc.exit_code
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a converter bug we did not foresee: report it, keep other targets going
        if options.verbose:
            raise
        item.status, item.error, item.exit_code = "error", f"{type(exc).__name__}: {exc}", 3
    item.seconds = time.perf_counter() - started
    return item


__all__ = ["BenchOptions", "BenchResult", "CheckResult", "ConvertOptions", "ConvertResult", "TargetResult",
           "ValidateOptions", "bench", "check", "convert", "explain", "validate"]
