"""Opening a model on its format's runtime, as the registry declares it."""

from __future__ import annotations

from pathlib import Path

from .formats.base import FormatSpec, load_object
from .targets.base import Runner
from .targets.isolated import IsolatedRunner


def open_runner(spec: FormatSpec, path: Path, threads: int | None = None) -> Runner:
    """A runner (not yet loaded) for `path` on the runtime of `spec`'s target side."""
    if spec.target is None:
        raise ValueError(f"format '{spec.name}' is not a target")
    spec.requirement.ensure(f"to run {spec.name} models")
    if spec.target.isolate:
        return IsolatedRunner(spec.target.runner, path, threads)
    runner: Runner = load_object(spec.target.runner)(path, threads)
    return runner
