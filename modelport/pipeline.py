"""`convert`: plan a path per target, run its edges (sharing intermediates), place each artifact
atomically, then validate each on its own runtime. Leaves the process as it found it."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from ._lazy import captured_output
from .artifact import Artifact, dump_json, sha256_of, sidecar_path, size_of, write_sidecar
from .converters import graph
from .converters.base import EdgeContext
from .describe import describe_loaded
from .errors import BadInput, BackendMissing, ConversionFailed, ModelportError
from .formats.base import Edge, load_object
from .loading import load_source, source_node
from .options import ConvertOptions, Progress
from .placement import default_output_dir, output_lock, place, write_atomic
from .registry import ENTRY_KIND, Registry, default
from .calibration import RANDOM, CalibrationSet
from .results import ConvertResult, Status, TargetResult, Verdict
from .safety import check_output_dir, is_allocation_failure, over_budget
from .sources.base import SourceModel
from .sources.entry import resolve
from .validation import validate_targets


def _notify(progress: Progress | None, event: str, message: str) -> None:
    if progress:
        progress(event, message)


def convert(source: str, options: ConvertOptions, progress: Progress | None = None,
            registry: Registry | None = None) -> ConvertResult:
    """Convert SOURCE to each target, validate each on its own runtime, and return the results."""
    registry = registry or default()
    known = registry.targets()
    for name in options.targets:
        if name not in known and name != "all":
            raise BadInput(f"Unknown target '{name}'.", f"Targets: {', '.join(known)}, or all.")
    check_precision(options, registry)
    check_converters(options, registry)
    output = options.output_dir or default_output_dir(source)
    # (an entry point's .py file is code, not a model file an output could overwrite)
    check_output_dir(output, None if registry.detect(source).format == ENTRY_KIND else Path(source))
    _notify(progress, "start", f"Loading {source}")
    model = load_source(source, options.load_options(), framework=options.framework, registry=registry)
    try:
        _notify(progress, "done", f"Loaded {model.format} model")
        return convert_loaded(source, model, options, progress, registry)
    finally:
        model.close()


def convert_loaded(source: str, model: SourceModel, options: ConvertOptions, progress: Progress | None,
                   registry: Registry, calibration: CalibrationSet | None = None) -> ConvertResult:
    """`convert` on a model already loaded (package and quantize-doctor load it once for their own
    use too); `calibration`: the int8 set when the caller has read it already."""
    _check_before_converting(model, options)
    result = ConvertResult(source=describe_loaded(model, source))
    out_dir = options.output_dir or default_output_dir(source)
    src_node = source_node(model, registry)
    everything = "all" in options.targets
    targets = graph.reachable(src_node, registry) if everything else list(options.targets)
    with tempfile.TemporaryDirectory(prefix="modelport-") as scratch_root:
        scratch = Path(scratch_root)
        ctx = EdgeContext(opset=options.opset, verbose=options.verbose, seed=options.seed,
                          keep_layout=options.keep_layout, quantize=options.quantize, scratch=scratch,
                          signature=options.signature, source=model)
        origin = model.artifact()
        if model.format == "onnx" and options.opset:
            from .converters.onnx_opset import convert_opset

            origin = convert_opset(origin, options.opset, scratch)
        if options.quantize == "int8" and calibration is None:
            calibration = calibration_for(model, options)
        if options.sample_inputs is not None:
            from .validators.validate import sample_feeds

            ctx.examples = sample_feeds(model, options)
        if calibration is not None:
            ctx.calibration = calibration.samples
            result.calibration = calibration.to_json()
        produced: dict[tuple[str, ...], Artifact | ModelportError] = {(): origin}
        for name in targets:
            missing: ModelportError | None = _missing_backend(name, src_node, options, registry) if everything else None
            if missing is None and everything and options.quantize not in _precisions(name, registry):
                missing = BadInput(f"modelport has no --quantize {options.quantize} path to {name}.")
            if missing is None and everything:
                refused = _refused(name, src_node, model, options, registry)
                missing = BadInput(refused) if refused else None
            if missing is not None:  # `--to all` means what is installed (and quantizable) here: the rest is skipped
                item = TargetResult(target=name, verdict=Verdict.skipped(missing.one_line()))
                result.targets.append(item)
                continue
            result.targets.append(_convert_one(name, model, src_node, out_dir, options, ctx, produced, progress,
                                               registry))
        result.converter_runs = dict(ctx.runs)
        if options.validate:
            validate_targets(model, result.targets, options, progress, registry=registry,
                             feeds=comparison_feeds(model, options, calibration))
            if calibration is not None and calibration.origin == RANDOM:
                _mark_unverified(result.targets)
        for item in result.targets:
            _placed(item, out_dir)
    return result


def _placed(item: TargetResult, out_dir: Path) -> None:
    """Point a converted item's artifact at its placed copy (its scratch folder is about to go)."""
    if item.artifact is None or item.path is None:
        return
    artifact = item.artifact
    item.artifact = artifact.with_(path=item.path,
                                   companions=tuple(out_dir / rel for _, rel in artifact.companion_names()))


_MAX_HELD_OUT = 64


def comparison_feeds(model: SourceModel, options: ConvertOptions,
                     calibration: CalibrationSet | None) -> list[dict[str, Any]]:
    """The samples a converted model is judged on: int8 on the held-out part of the user's
    calibration data, not on noise (unless --inputs gives real samples); else `sample_feeds`."""
    if calibration is not None and calibration.held_out and options.sample_inputs is None:
        return calibration.held_out[:_MAX_HELD_OUT]
    from .validators.validate import sample_feeds

    return sample_feeds(model, options)


def _precisions(target: str, registry: Registry) -> tuple[str, ...]:
    spec = registry.spec(target).target
    return spec.precisions if spec is not None else ("none",)


def check_precision(options: ConvertOptions, registry: Registry) -> None:
    """Refuse before any work a precision a target cannot have, or int8 without calibration data."""
    if options.quantize == "none":
        return
    if options.quantize == "int8" and options.calibration_data is None:
        raise BadInput("--quantize int8 needs --calibration-data PATH: representative inputs (an .npz, a folder of "
                       ".npy files or images, a test_data_set_N folder); a fifth is held out to judge the result.",
                       "Pass real samples; or --calibration-data random to calibrate on seeded noise (the result "
                       "is then reported 'unverified', never 'passed').")
    if "all" in options.targets:
        return
    unable = [t for t in options.targets if options.quantize not in _precisions(t, registry)]
    if unable:
        able = [t for t in registry.targets() if options.quantize in _precisions(t, registry)]
        raise BadInput(f"modelport has no --quantize {options.quantize} path to {', '.join(unable)}.",
                       f"Targets with one: {', '.join(able)}; convert the others in a run without --quantize.")


def _mark_unverified(items: list[TargetResult]) -> None:
    """Random calibration: a quantized target whose numbers matched is 'unverified', never 'passed'."""
    for item in items:
        if item.verdict.status is Status.PASSED and item.artifact is not None and item.artifact.quantization == "int8":
            item.verdict = Verdict.unverified("int8 calibrated and compared on seeded random inputs, not on real "
                                              "data: accuracy on real inputs is unknown. Pass --calibration-data.")


def _refused(target: str, src_node: str, model: SourceModel, options: ConvertOptions,
             registry: Registry) -> str | None:
    """Why no path to `target` can take this source (every path has an edge refusing it), or None."""
    reasons = []
    for edges in candidate_paths(src_node, target, options, registry):
        reason = next((r for e in edges if (r := e.refusal(model)) is not None), None)
        if reason is None:
            return None
        reasons.append(reason)
    return reasons[0] if reasons else None


def _missing_backend(target: str, src_node: str, options: ConvertOptions,
                     registry: Registry) -> BackendMissing | None:
    """Why `target` cannot be made (or run) here, or None when some path to it is installed."""
    spec = registry.spec(target)
    if options.validate:
        problem = spec.requirement.problem(f"to run {target} models")
        if problem is not None:
            return problem
    paths = _usable_first(candidate_paths(src_node, target, options, registry))
    first: BackendMissing | None = None
    for edges in paths:
        problems = [p for e in edges if (p := e.requirement.problem(f"for {e.name}")) is not None]
        if not problems:
            return None
        first = first or problems[0]
    return first


def explain(source: str, options: ConvertOptions, registry: Registry | None = None) -> dict[str, str]:
    """The path each target would take, without converting anything."""
    registry = registry or default()
    check_converters(options, registry)
    detected = registry.detect(source)
    if detected.format == ENTRY_KIND:  # imports the user's module to learn its framework
        _, name = resolve(source, registry.entry_frameworks(), registry.function_format(),
                          registry.extra_for_module())
        node = registry.spec(name).node
    else:
        node = registry.spec(detected.spec).node
    targets = graph.reachable(node, registry) if "all" in options.targets else list(options.targets)
    plans = {}
    for target in targets:
        try:
            edges = _usable_first(candidate_paths(node, target, options, registry))[0]
            plans[target] = " -> ".join([node, *(e.dst for e in edges)]) + (
                f"  ({', '.join(e.name for e in edges)})" if edges else "")
        except BadInput as exc:
            plans[target] = f"unreachable: {exc.message}"
    return plans


def _check_before_converting(model: SourceModel, options: ConvertOptions) -> None:
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


def calibration_for(model: SourceModel, options: ConvertOptions) -> CalibrationSet:
    """int8 calibration samples: the user's data (a part held out to judge the result), or seeded
    noise when asked for by name."""
    from .calibration import Preprocess, load_calibration

    assert options.calibration_data is not None  # check_precision refused int8 without it
    ranges = {r.name: r for r in options.input_ranges}
    preprocess = Preprocess.parse(options.preprocess) if options.preprocess else None
    return load_calibration(options.calibration_data, list(model.inputs), preprocess, seed=options.seed,
                            random_count=options.calibration_samples, ranges=ranges)


def check_converters(options: ConvertOptions, registry: Registry) -> None:
    known = {e.name for e in registry.edges}
    unknown = [c for c in options.converters if c not in known]
    if unknown:
        raise BadInput(f"--converter names '{unknown[0]}', which is not a converter of this modelport.",
                       f"Converters: {', '.join(sorted(known))} (see `modelport doctor`).")


def candidate_paths(src_node: str, target: str, options: ConvertOptions, registry: Registry) -> list[list[Edge]]:
    """The paths `convert` tries for `target`, cheapest first: the one --via forces, else the
    alternatives. With --converter, a named converter replaces its rivals (the other converters
    of the same step), and where a path goes through one, only such paths remain. Paths through
    converters that cannot write --quantize come last."""
    allowed = list(registry.edges)
    if options.converters:
        steps = {(e.src, e.dst) for e in allowed if e.name in options.converters}
        allowed = [e for e in allowed if e.name in options.converters or (e.src, e.dst) not in steps]
    paths = [graph.plan(src_node, target, options.via, registry, allowed)] if options.via else (
        graph.alternatives(src_node, target, registry=registry, edges_allowed=allowed)
        or [graph.plan(src_node, target, (), registry, allowed)])
    if options.converters:  # where some path goes through a named converter, only those
        paths = [p for p in paths if any(e.name in options.converters for e in p)] or paths
    able = [p for p in paths if all(e.precisions is None or options.quantize in e.precisions for e in p)]
    return able + [p for p in paths if p not in able]


def _usable_first(paths: list[list[Edge]]) -> list[list[Edge]]:
    """The paths whose converters are all installed (a toolchain edge is preferred only where it is
    built); the others only if none is, toolchain-free ones first, so the error names what the base
    install lacks."""
    usable = [p for p in paths if all(e.requirement.problem(e.name) is None for e in p)]
    return usable or sorted(paths, key=lambda p: any(e.requirement.toolchain for e in p))


def _run_path(edges: list[Edge], src_node: str, options: ConvertOptions, ctx: EdgeContext,
              produced: dict[tuple[str, ...], Artifact | ModelportError], progress: Progress | None) -> Artifact:
    """Run a chain of edges, reusing intermediates (and failures) an earlier target produced."""
    first = produced[()]
    assert isinstance(first, Artifact)
    artifact = first
    for depth, edge in enumerate(edges):
        key = tuple(e.name for e in edges[: depth + 1])
        if key in produced:  # an earlier target already made this intermediate, or failed to
            earlier = produced[key]
            if isinstance(earlier, ModelportError):
                raise earlier
            artifact = earlier
            continue
        edge.requirement.ensure(f"for {edge.name} ({edge.src} -> {edge.dst})")
        _notify(progress, "start", f"{edge.src} -> {edge.dst} ({edge.name})")
        assert ctx.scratch is not None
        workdir = ctx.scratch / "-".join(key)
        workdir.mkdir(parents=True, exist_ok=True)
        ctx.count(edge.name)
        try:
            earlier_workarounds = list(artifact.extra.get("workarounds") or ())
            with captured_output(options.verbose):  # backends print at import time, before edges can
                artifact = edge.load()(artifact, workdir, ctx)
            # what an earlier edge worked around shaped this artifact too: the report says so
            own = list(artifact.extra.get("workarounds") or ())
            carried = [w for w in earlier_workarounds if w not in own]
            if carried:
                artifact = artifact.with_(extra={**artifact.extra, "workarounds": carried + own})
            if artifact.format == "onnx":
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


def _convert_one(name: str, model: SourceModel, src_node: str, out_dir: Path, options: ConvertOptions,
                 ctx: EdgeContext, produced: dict[tuple[str, ...], Artifact | ModelportError],
                 progress: Progress | None, registry: Registry) -> TargetResult:
    spec = registry.spec(name)
    assert spec.target is not None
    started = time.perf_counter()
    item = TargetResult(target=name)
    try:
        # --via forces one path; otherwise the cheapest, then the next ones if a converter fails.
        paths = _usable_first(candidate_paths(src_node, name, options, registry))
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
                raise ConversionFailed(f"{first.message} (other paths failed too: {'; '.join(others)})", first.hint)
            raise first
        if failures:
            artifact = artifact.with_(extra={**artifact.extra, "fallback_from": [f.message for f in failures]})
        if name == "onnx" and options.simplify:
            from .converters.onnx_simplify import simplify

            assert ctx.scratch is not None
            artifact = simplify(artifact, ctx.scratch, options.verbose)
        if options.quantize != "none" and spec.target.quantizer:
            assert ctx.scratch is not None
            workdir = ctx.scratch / f"quantize-{name}"
            workdir.mkdir(exist_ok=True)
            with captured_output(options.verbose):
                artifact = load_object(spec.target.quantizer)(artifact, workdir, ctx)
        final = out_dir / spec.target.file_name
        # Another process may be writing the same folder (the same model's default output): the
        # lock keeps this target's files from one run; each lands by an atomic rename.
        with output_lock(out_dir):
            for companion, relative in artifact.companion_names():  # first: the model is complete once it lands
                place(companion, out_dir / relative)
            place(artifact.path, final)
            write_atomic(dump_json(write_sidecar(artifact, str(model.display))),
                         sidecar_path(final))
        # Validation and the hash read this run's own copy in scratch, never the placed one, which
        # a concurrent run may be replacing; `_placed` points the result at `final` afterwards.
        item.artifact = artifact
        item.path = final
        item.size_bytes = size_of(artifact.path)
        item.sha256 = sha256_of(artifact.path)
        item.verdict = Verdict.converted()
    except ModelportError as exc:  # a converter (or its child process) that ran out of budget says so in its log
        item.verdict = Verdict.error(over_budget() if is_allocation_failure(exc.message) else exc)
    except KeyboardInterrupt:
        raise
    except MemoryError:
        item.verdict = Verdict.error(over_budget())
    except Exception as exc:  # a converter bug we did not foresee: report it, keep other targets going
        if is_allocation_failure(str(exc)):
            item.verdict = Verdict.error(over_budget())
        elif options.verbose:
            raise
        else:
            item.verdict = Verdict.error(f"{type(exc).__name__}: {exc}", 3)
    item.seconds = time.perf_counter() - started
    return item
