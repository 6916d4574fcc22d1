"""Feeding an artifact the source's inputs and reading its outputs back as the source's.

The artifact's recorded I/O mapping says which source tensor each artifact tensor is and how it
was transposed; it is applied here, never guessed from shapes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import ModelportError
from ..spec import dequantize, quantize
from .compare import Tolerance
from .data import load_samples, make_feeds

if TYPE_CHECKING:
    import numpy as np

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
        value = value.reshape(1) if link.scalar else value
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
        if link.scalar and value.size == 1:
            value = value.reshape(())
        mapped[link.source_name] = value.transpose(inverse(link.perm)) if link.perm else value
    return mapped


def sample_feeds(model: Runner, options: Any) -> list[dict[str, np.ndarray]]:
    if options.sample_inputs is not None:
        return load_samples(options.sample_inputs, list(model.inputs))[: max(options.samples, 1)]
    ranges = {r.name: r for r in options.input_ranges}
    return [make_feeds(list(model.inputs), seed=options.seed, sample=i, ranges=ranges)
            for i in range(max(options.samples, 1))]


def tolerance_for(name: str, base: Tolerance, options: Any) -> Tolerance:
    """Target default < command-line flags < the config's per-output entry."""
    flags = Tolerance(options.atol if options.atol is not None else base.atol,
                      options.rtol if options.rtol is not None else base.rtol,
                      options.min_cosine if options.min_cosine is not None else base.min_cosine,
                      options.top_k if options.top_k is not None else base.top_k)
    override = (options.output_tolerances or {}).get(name)
    return replace(flags, **override) if override else flags
