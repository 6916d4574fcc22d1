"""Validate produced artifacts against the source: same inputs, each on its own runtime.

The artifact's recorded I/O mapping says which source tensor each artifact tensor is and how it
was transposed; it is applied here, never guessed from shapes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Callable

from ..converters import graph
from ..errors import BackendMissing, ModelportError
from ..spec import dequantize, quantize
from ..targets.base import Tolerance
from .compare import compare_output
from .data import load_samples, make_feeds
from .latency import measure

if TYPE_CHECKING:
    import numpy as np

    from ..api import ConvertOptions, Progress, TargetResult
    from ..artifact import Artifact
    from ..targets.base import Runner


def inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    result = [0] * len(perm)
    for i, p in enumerate(perm):
        result[p] = i
    return tuple(result)


def to_artifact_feeds(artifact: Artifact, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    mapped = {}
    dtypes = {s.name: s.dtype for s in artifact.inputs}
    for link in artifact.io.inputs:
        value = feeds[link.source_name]
        value = value.transpose(link.perm).copy() if link.perm else value
        dtype = dtypes.get(link.name, "int8")
        if link.scale is not None and value.dtype.kind == "f" and dtype.startswith(("int", "uint")):
            value = quantize(value, link.scale, link.zero_point, dtype)
        mapped[link.name] = value
    return mapped


def to_source_outputs(artifact: Artifact, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    mapped = {}
    for link in artifact.io.outputs:
        if link.name not in outputs:
            raise ModelportError(f"The converted model has no output '{link.name}' (it has: {', '.join(outputs)}).",
                                 "The conversion dropped an output; run with --verbose.")
        value = outputs[link.name]
        if link.scale is not None and value.dtype.kind in "iu":
            value = dequantize(value, link.scale, link.zero_point)
        mapped[link.source_name] = value.transpose(inverse(link.perm)) if link.perm else value
    return mapped


def sample_feeds(model: Runner, options: ConvertOptions) -> list[dict[str, np.ndarray]]:
    if options.sample_inputs is not None:
        return load_samples(options.sample_inputs, list(model.inputs))[: max(options.samples, 1)]
    ranges = {r.name: r for r in options.input_ranges}
    return [make_feeds(list(model.inputs), seed=options.seed, sample=i, ranges=ranges)
            for i in range(max(options.samples, 1))]


def tolerance_for(name: str, base: Tolerance, options: ConvertOptions) -> Tolerance:
    """Target default < command-line flags < the config's per-output entry."""
    flags = Tolerance(options.atol if options.atol is not None else base.atol,
                      options.rtol if options.rtol is not None else base.rtol,
                      options.min_cosine if options.min_cosine is not None else base.min_cosine,
                      options.top_k if options.top_k is not None else base.top_k)
    override = (options.output_tolerances or {}).get(name)
    return replace(flags, **override) if override else flags


def validate_targets(model: Runner, items: list[TargetResult], options: ConvertOptions,
                     progress: Progress | None = None,
                     open_runner: Callable[[TargetResult], Runner] | None = None) -> None:
    """Run the reference once per sample, then each item's artifact on its runtime, and compare.

    `open_runner` gives the runner of an item's artifact; by default its target's runner."""
    from ..api import NumericResult

    todo = [t for t in items if t.status == "skipped" and t.artifact is not None]
    if not todo:
        return
    if progress:
        progress("start", "Running the reference model")
    feeds = sample_feeds(model, options)
    references = [model.run(f) for f in feeds]
    timed = getattr(options, "latency", True)
    reference_latency = (measure(model, feeds[0], options.latency_runs, options.latency_warmup, options.threads)
                         if timed else None)
    if progress:
        progress("done", "Reference outputs ready")
    for item in todo:
        artifact = item.artifact
        if open_runner is None:
            spec = graph.target_spec(item.target)
            base = spec.tolerance(artifact.quantization)
            runner_cm = spec.open_runner(artifact.path, options.threads)
        else:
            base = Tolerance(1e-4, 1e-3)
            runner_cm = open_runner(item)
        if progress:
            progress("start", f"Validating {item.target} on {runner_cm.runtime}")
        try:
            with runner_cm as runner:
                produced = [to_source_outputs(artifact, runner.run(to_artifact_feeds(artifact, f))) for f in feeds]
                if timed:
                    item.latency = measure(runner, to_artifact_feeds(artifact, feeds[0]), options.latency_runs,
                                           options.latency_warmup, options.threads)
        except BackendMissing as exc:  # the runtime is not installed here: say how to install it
            item.status, item.exit_code, item.error = "error", exc.exit_code, exc.one_line()
            continue
        except ModelportError as exc:
            item.status, item.exit_code = "error", 3
            item.error = f"The model does not run on its runtime: {exc.one_line()}"
            continue
        item.reference_latency = reference_latency
        comparisons = [compare_output(name, [r[name] for r in references], [p[name] for p in produced],
                                      tolerance_for(name, base, options))
                       for name in references[0] if name in produced[0]]
        missing = [name for name in references[0] if name not in produced[0]]
        tolerance = tolerance_for("", base, options)
        item.numeric = NumericResult(tolerance.atol, tolerance.rtol, len(feeds), comparisons)
        if missing:
            item.status, item.exit_code = "error", 3
            item.error = f"The model lacks the output(s) {', '.join(missing)} of the reference."
        elif item.numeric.passed:
            item.status = "passed"
        else:
            worst = item.numeric.worst()
            item.status, item.exit_code = "failed", 1
            item.error = (f"Output '{worst.name}' differs from the reference (sample {worst.worst_sample}): "
                          f"{worst.reason}, cosine {worst.cosine:.6f}.")
        if progress:
            progress("done", f"{item.target}: {item.status}")
