"""Validate produced artifacts against the source: the same inputs, each on its own runtime."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from pathlib import Path
from typing import Any, Protocol

from .errors import BackendMissing, ModelportError
from .options import Progress, ValidationOptions
from .registry import Registry, default
from .results import NumericResult, Status, TargetResult, Verdict
from .runners import open_runner
from .safety import over_budget
from .targets.base import Runner
from .validators.compare import Tolerance, compare_output
from .validators.latency import measure
from .validators.validate import sample_feeds, to_artifact_feeds, to_source_outputs, tolerance_for

_INTEGER_PRECISIONS = ("int8", "int16", "dynamic")


def _cpu_note() -> str:
    """Integer kernels differ across CPUs (onnxruntime's saturate without VNNI): say where this ran."""
    from .validators.report import cpu_features

    cpu = cpu_features()
    return (f"integer kernels validated on {cpu['model']} ({'with' if cpu['vnni'] else 'without'} VNNI; "
            f"{', '.join(cpu['features']) or 'no SIMD flags read'}): results can differ on other CPUs")


def _measure_float_counterpart(item: TargetResult, options: ValidationOptions, registry: Registry) -> None:
    """A quantized target's drift report: the same model in float32 (kept by its converter), its
    size and its latency on the same runtime, and one line saying what quantizing bought."""
    from .artifact import human_size, size_of
    from .validators.data import make_feeds

    assert item.artifact is not None
    counterpart = item.artifact.extra.get("float_artifact")
    parts = []
    if counterpart:
        path = Path(counterpart["path"])
        item.float_size_bytes = size_of(path)
        if options.latency:
            try:
                with open_runner(registry.spec(counterpart["format"]), path, options.threads) as runner:
                    item.float_latency = measure(runner, make_feeds(list(runner.inputs), seed=options.seed),
                                                 options.latency_runs, options.latency_warmup, options.threads)
            except ModelportError as exc:  # the float model is only a yardstick: say why it is missing
                item.notes.append(f"float32 latency not measured: {exc.one_line()}")
    if item.float_size_bytes and item.size_bytes:
        reduction = 1 - item.size_bytes / item.float_size_bytes
        parts.append(f"{human_size(item.float_size_bytes)} float32 -> {human_size(item.size_bytes)} "
                     f"({abs(reduction):.0%} {'smaller' if reduction >= 0 else 'larger'})")
    if item.float_latency and item.latency:
        parts.append(f"p50 {item.latency.p50:.3g} ms vs {item.float_latency.p50:.3g} ms float32")
    if item.numeric:
        for output in item.numeric.outputs:
            quality = [f"cosine {output.cosine:.4f}"]
            if output.snr_db is not None:
                quality.append("exact" if output.snr_db == float("inf") else f"SNR {output.snr_db:.1f} dB")
            if output.top1_agreement is not None:
                quality.append(f"top-1 agreement {output.top1_agreement:.0%}")
            parts.append(f"{output.name}: {', '.join(quality)}")
    if not counterpart:
        parts.append("no float32 counterpart kept by this converter")
    item.notes.append(f"{item.artifact.quantization}: " + "; ".join(parts))


_GIVEN_MODEL_TOLERANCE = Tolerance(1e-4, 1e-3)  # `validate A B`: two models said to be the same


class RunnerContext(Protocol):
    """What `open_candidate` returns: a context manager giving a loaded Runner, named by its runtime
    (a Runner itself, or a wrapper over one already open)."""

    runtime: str

    def __enter__(self) -> Runner: ...

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None, /) -> None: ...


def validate_targets(model: Runner, items: list[TargetResult], options: ValidationOptions,
                     progress: Progress | None = None,
                     open_candidate: Callable[[TargetResult], RunnerContext] | None = None,
                     registry: Registry | None = None, feeds: list[dict[str, Any]] | None = None) -> None:
    """Run the reference once per sample, then each converted item's artifact on its runtime, and
    compare. `open_candidate` gives the runner of an item's artifact; by default its target's.
    `feeds`: the samples to compare on (held-out calibration samples); default: `sample_feeds`."""
    registry = registry or default()
    todo = [t for t in items if t.verdict.status is Status.CONVERTED and t.artifact is not None]
    if not todo:
        return
    if progress:
        progress("start", "Running the reference model")
    feeds = feeds or sample_feeds(model, options)
    references = [model.run(f) for f in feeds]
    reference_latency = (measure(model, feeds[0], options.latency_runs, options.latency_warmup, options.threads)
                         if options.latency else None)
    if progress:
        progress("done", "Reference outputs ready")
    for item in todo:
        artifact = item.artifact
        assert artifact is not None
        try:
            if open_candidate is None:
                spec = registry.spec(item.target)
                assert spec.target is not None
                base = spec.target.tolerance(artifact.quantization)
                runner_cm: RunnerContext = open_runner(spec, artifact.path, options.threads)
            else:
                base = _GIVEN_MODEL_TOLERANCE
                runner_cm = open_candidate(item)
            if progress:
                progress("start", f"Validating {item.target} on {runner_cm.runtime}")
            with runner_cm as runner:
                produced = [to_source_outputs(artifact, runner.run(to_artifact_feeds(artifact, f))) for f in feeds]
                if options.latency:
                    item.latency = measure(runner, to_artifact_feeds(artifact, feeds[0]), options.latency_runs,
                                           options.latency_warmup, options.threads)
                item.runtime = runner.runtime  # (TF.js names its backend only once it has run)
        except MemoryError:
            item.verdict = Verdict.error(over_budget())
            continue
        except BackendMissing as exc:  # the runtime is not installed here: say how to install it
            item.verdict = Verdict.error(exc)
            continue
        except ModelportError as exc:
            item.verdict = Verdict.error(f"The model does not run on its runtime: {exc.one_line()}", 3)
            continue
        item.reference_latency = reference_latency
        comparisons = [compare_output(name, [r[name] for r in references], [p[name] for p in produced],
                                      tolerance_for(name, base, options))
                       for name in references[0] if name in produced[0]]
        missing = [name for name in references[0] if name not in produced[0]]
        tolerance = tolerance_for("", base, options)
        item.numeric = NumericResult(tolerance.atol, tolerance.rtol, len(feeds), comparisons)
        if missing:
            item.verdict = Verdict.error(f"The model lacks the output(s) {', '.join(missing)} of the reference.", 3)
        elif item.numeric.passed:
            item.verdict = Verdict.passed()
        else:
            worst = item.numeric.worst()
            item.verdict = Verdict.failed(f"Output '{worst.name}' differs from the reference (sample "
                                          f"{worst.worst_sample}): {worst.reason}, cosine {worst.cosine:.6f}.")
        if artifact.quantization in _INTEGER_PRECISIONS:
            item.notes.append(_cpu_note())
        if artifact.quantization not in ("none", None):
            _measure_float_counterpart(item, options, registry)
        if progress:
            progress("done", f"{item.target}: {item.status}")
