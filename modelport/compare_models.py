"""`validate REFERENCE CANDIDATE`: any two models, each on its own runtime, on the same inputs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .artifact import Artifact, IOMapping, sha256_of, size_of
from .describe import describe_loaded
from .formats import Format, detect
from .sources import LoadOptions, load_source
from .spec import TensorSpec
from .targets.base import Runner

# Deployable formats are run on their target's runtime; others are loaded as sources.
TARGET_OF_FORMAT = {Format.ONNX: "onnx", Format.TFLITE: "tflite", Format.TORCHSCRIPT: "torchscript",
                    Format.SAVEDMODEL: "savedmodel", Format.TFJS: "tfjs"}


def open_model(path: str, options: Any) -> Runner:
    """A runner for any model: its target's runtime where it has one, else its source loader."""
    detected = detect(path)
    target = TARGET_OF_FORMAT.get(detected.format)
    if target:
        from .converters import graph

        return graph.target_spec(target).open_runner(Path(path), options.threads)
    return load_source(path, LoadOptions(inputs=options.inputs, trust_remote_code=options.trust_remote_code,
                                         signature=options.signature, verbose=options.verbose))


class _Reopen:
    """Context manager over an already loaded runner (the candidate is opened once)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.runtime = runner.runtime

    def __enter__(self) -> Runner:
        return self.runner

    def __exit__(self, *exc: Any) -> None:
        pass


def validate(reference: str, candidate: str, options: Any, progress: Any = None):
    """Compare CANDIDATE with REFERENCE; the result has one target entry: the candidate."""
    from .api import ConvertResult, TargetResult
    from .validators.data import make_feeds
    from .validators.matching import link_tensors, parse_map, read_sidecar
    from .validators.validate import sample_feeds, to_artifact_feeds, validate_targets

    maps = [parse_map(m) for m in options.maps]
    if progress:
        progress("start", f"Loading {reference}")
    ref = load_source(reference, LoadOptions(inputs=options.inputs, trust_remote_code=options.trust_remote_code,
                                             signature=options.signature, verbose=options.verbose))
    from .validators.data import check_sample_budget

    check_sample_budget(list(ref.inputs), options.samples)
    result = ConvertResult(source=describe_loaded(ref, reference))
    started = time.perf_counter()
    cand_path = Path(candidate)
    with open_model(candidate, options) as runner:
        runner.load()
        if progress:
            progress("done", f"Loaded {reference} and {candidate}")
        sidecar = read_sidecar(cand_path) if cand_path.exists() else None
        inputs = link_tensors(list(ref.inputs), list(runner.inputs), maps, sidecar, "inputs")
        # Outputs are paired on what the candidate really returns (some runtimes do not declare them).
        probe = Artifact(path=cand_path, format=detect(candidate).format, io=IOMapping(inputs, ()),
                         inputs=tuple(runner.inputs))
        feeds = sample_feeds(ref, options)[0] if options.sample_inputs else make_feeds(list(ref.inputs), options.seed)
        produced = runner.run(to_artifact_feeds(probe, feeds))
        produced_specs = [TensorSpec(name, tuple(v.shape), str(v.dtype)) for name, v in produced.items()]
        expected = [TensorSpec(name, tuple(v.shape), str(v.dtype)) for name, v in ref.run(feeds).items()]
        outputs = link_tensors(expected, produced_specs, maps, sidecar, "outputs")
        artifact = probe.with_(io=IOMapping(inputs, outputs), outputs=tuple(produced_specs),
                               path_taken=tuple(sidecar.get("path", ())) if sidecar else (),
                               layout=sidecar.get("layout", "?") if sidecar else "?",
                               quantization=sidecar.get("quantization", "none") if sidecar else "none")
        item = TargetResult(target=artifact.format.value, status="skipped", artifact=artifact, path=cand_path,
                            size_bytes=size_of(cand_path) if cand_path.exists() else None,
                            sha256=sha256_of(cand_path) if cand_path.exists() else None)
        item.seconds = time.perf_counter() - started
        result.targets.append(item)
        validate_targets(ref, result.targets, options, progress, open_runner=lambda _: _Reopen(runner))
    ref.close()
    return result
