"""`validate REFERENCE CANDIDATE`: any two models, each on its own runtime, on the same inputs."""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType

from .artifact import Artifact, IOMapping, sha256_of, size_of
from .bundles import opened_bundle
from .describe import describe_loaded
from .loading import load_source
from .options import ModelOptions, Progress, ValidateOptions
from .registry import Registry, default
from .results import ConvertResult, TargetResult, Verdict
from .runners import open_runner
from .spec import TensorSpec
from .targets.base import Runner
from .validation import validate_targets
from .validators.data import check_sample_budget, make_feeds
from .validators.matching import link_tensors, parse_map, read_sidecar
from .validators.validate import sample_feeds, to_artifact_feeds


def open_model(path: str, options: ModelOptions, registry: Registry | None = None) -> Runner:
    """A runner for any model: its target's runtime where its format is a target, else its source reader."""
    registry = registry or default()
    detected = registry.detect(path)
    if detected.spec:
        spec = registry.spec(detected.spec)
        if spec.target is not None:
            runner = open_runner(spec, Path(path), options.threads)
            runner.trust_remote_code = options.trust_remote_code  # (runners that can run code read it)
            return runner
    return load_source(path, options.load_options(), registry=registry)


class _Reopen:
    """Context manager over an already loaded runner (the candidate is opened once)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.runtime = runner.runtime

    def __enter__(self) -> Runner:
        return self.runner

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        pass


def validate(reference: str, candidate: str, options: ValidateOptions, progress: Progress | None = None,
             registry: Registry | None = None) -> ConvertResult:
    """Compare CANDIDATE with REFERENCE; the result has one target entry: the candidate. Either may
    be a bundle from `package` (its model is compared)."""
    with opened_bundle(reference) as ref_path, opened_bundle(candidate) as cand_path:
        return _validate(ref_path, cand_path, options, progress, registry)


def _validate(reference: str, candidate: str, options: ValidateOptions, progress: Progress | None = None,
              registry: Registry | None = None) -> ConvertResult:
    registry = registry or default()
    maps = [parse_map(m) for m in options.maps]
    if progress:
        progress("start", f"Loading {reference}")
    ref = load_source(reference, options.load_options(), registry=registry)
    try:
        check_sample_budget(list(ref.inputs), options.samples)
        result = ConvertResult(source=describe_loaded(ref, reference))
        started = time.perf_counter()
        cand_path = Path(candidate)
        with open_model(candidate, options, registry) as runner:
            runner.load()
            if progress:
                progress("done", f"Loaded {reference} and {candidate}")
            sidecar = read_sidecar(cand_path) if cand_path.exists() else None
            inputs = link_tensors(list(ref.inputs), list(runner.inputs), maps, sidecar, "inputs")
            # Outputs are paired on what the candidate really returns (some runtimes do not declare them).
            kind = registry.detect(candidate).format
            probe = Artifact(path=cand_path, format=kind, io=IOMapping(inputs, ()), inputs=tuple(runner.inputs))
            feeds = sample_feeds(ref, options)[0] if options.sample_inputs else make_feeds(list(ref.inputs),
                                                                                            options.seed)
            produced = runner.run(to_artifact_feeds(probe, feeds))
            produced_specs = [TensorSpec(name, tuple(v.shape), str(v.dtype)) for name, v in produced.items()]
            expected = [TensorSpec(name, tuple(v.shape), str(v.dtype)) for name, v in ref.run(feeds).items()]
            outputs = link_tensors(expected, produced_specs, maps, sidecar, "outputs")
            artifact = probe.with_(io=IOMapping(inputs, outputs), outputs=tuple(produced_specs),
                                   path_taken=tuple(sidecar.get("path", ())) if sidecar else (),
                                   layout=sidecar.get("layout", "?") if sidecar else "?",
                                   quantization=sidecar.get("quantization", "none") if sidecar else "none")
            item = TargetResult(target=kind, verdict=Verdict.converted(), artifact=artifact, path=cand_path,
                                size_bytes=size_of(cand_path) if cand_path.exists() else None,
                                sha256=sha256_of(cand_path) if cand_path.exists() else None)
            item.seconds = time.perf_counter() - started
            result.targets.append(item)
            validate_targets(ref, result.targets, options, progress, open_candidate=lambda _: _Reopen(runner),
                             registry=registry)
    finally:
        ref.close()
    return result
