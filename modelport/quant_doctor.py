"""`quantize-doctor`: which layers an int8 model loses its accuracy in, and what keeping them in
float buys back.

The source is exported to the float format the target's layer debugger starts from (the same
edges `convert` uses: ONNX for onnx, a SavedModel for tflite), quantized to int8 with the user's
calibration data, and the float and int8 models are compared layer by layer on the same held-out
samples by the target's own debugger (`converters/layer_debug.py`: onnxruntime's QDQ quantizer
for ONNX, TensorFlow's QuantizationDebugger for TFLite). Layers are ranked by the signal-to-noise
ratio they lose (their worst channel's). `--keep-float N|auto` re-quantizes with the worst layers
left in float, and every choice is measured on the target's own runtime, against the float model.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .converters.layer_debug import LayerDebugger, LayerLoss
from .errors import BadInput
from .formats.base import FormatSpec, load_object
from .loading import load_source
from .options import ConvertOptions, Progress
from .placement import place
from .registry import Registry, default
from .runners import open_runner

if TYPE_CHECKING:
    import numpy as np

AUTO_STEPS = (1, 2, 4, 8, 16)
AUTO_MIN_COSINE = 0.99  # --keep-float auto: the bar, unless --min-cosine says otherwise


@dataclass(frozen=True)
class DoctorOptions(ConvertOptions):
    keep_float: str | None = None     # None: rank only; "N": try 0..N layers in float; "auto": until min_cosine holds
    write: Path | None = None         # where to write the chosen model


@dataclass
class Choice:
    kept_float: list[str]             # the layers chosen to stay float
    size_bytes: int
    cosine: float
    snr_db: float
    also_float: list[str] = field(default_factory=list)  # their consumers, kept float so the tensors stay float

    def to_json(self) -> dict[str, Any]:
        return {"kept_float": self.kept_float, "also_float": self.also_float, "size_bytes": self.size_bytes,
                "cosine": self.cosine, "snr_db": self.snr_db if math.isfinite(self.snr_db) else None}


@dataclass
class DoctorResult:
    source: str
    target: str
    samples: int
    float_size_bytes: int
    layers: list[LayerLoss] = field(default_factory=list)
    choices: list[Choice] = field(default_factory=list)
    chosen: int | None = None            # index into choices
    written: Path | None = None
    calibration: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"schema": "modelport.quantize-doctor/1", "source": self.source, "target": self.target,
                "samples": self.samples, "float_size_bytes": self.float_size_bytes, "calibration": self.calibration,
                "layers": [layer.to_json() for layer in self.layers],
                "choices": [c.to_json() for c in self.choices], "chosen": self.chosen,
                "written": str(self.written) if self.written else None}


def debuggable_targets(registry: Registry) -> list[str]:
    return [t for t in registry.targets() if (spec := registry.spec(t).target) is not None and spec.layer_debugger]


def _target_spec(options: DoctorOptions, registry: Registry) -> FormatSpec:
    able = debuggable_targets(registry)
    if len(options.targets) != 1 or options.targets[0] not in able:
        raise BadInput(f"quantize-doctor has no layer debugger for --to {','.join(options.targets)}.",
                       f"It diagnoses one of: {', '.join(able)}.")
    return registry.spec(options.targets[0])


def diagnose(source: str, options: DoctorOptions, progress: Progress | None = None,
             registry: Registry | None = None) -> DoctorResult:
    from .pipeline import calibration_for, check_precision, convert_loaded
    from .validators.validate import to_artifact_feeds

    registry = registry or default()
    spec = _target_spec(options, registry)
    assert spec.target is not None and spec.target.layer_debugger and spec.target.layer_debug_from
    options = replace(options, quantize="int8")
    check_precision(options, registry)
    budget = _keep_float_budget(options.keep_float)
    bar = options.min_cosine if options.min_cosine is not None else AUTO_MIN_COSINE
    model = load_source(source, options.load_options(), framework=options.framework, registry=registry)
    try:
        calibration = calibration_for(model, options)
        with tempfile.TemporaryDirectory(prefix="modelport-doctor-") as scratch_root:
            scratch = Path(scratch_root)
            start = spec.target.layer_debug_from
            if progress:
                progress("start", f"Exporting the float {start} model")
            floated = replace(options, targets=(start,), quantize="none", validate=False, output_dir=scratch / "float")
            item = convert_loaded(source, model, floated, None, registry).targets[0]
            if item.artifact is None or item.path is None:
                raise BadInput(f"The model could not be converted to {start}: {item.error}", "See `modelport convert`.")
            artifact = item.artifact.with_(path=item.path)
            calibrate = [to_artifact_feeds(artifact, f) for f in calibration.samples]
            evaluate = [to_artifact_feeds(artifact, f) for f in (calibration.held_out or calibration.samples)]
            if progress:
                progress("done", f"Float {start} model ready")
                progress("start", "Quantizing and comparing layer by layer")
            debugger: LayerDebugger = load_object(spec.target.layer_debugger)(
                artifact, calibrate, evaluate, scratch, options.signature)
            layers = debugger.rank()
            result = DoctorResult(source, spec.name, len(evaluate), debugger.float_model.stat().st_size, layers,
                                  calibration=calibration.to_json())
            reference = _run(spec, debugger.float_model, evaluate)
            suffix = Path(spec.target.file_name).suffix
            candidates: list[Path] = []
            for count in _counts(budget, len(layers)):
                chosen = [layer.node for layer in layers[:count]]
                path = scratch / f"int8-keep{count}{suffix}"
                kept = debugger.quantized(chosen, path)
                cosine, snr = _agreement(reference, _run(spec, path, evaluate))
                result.choices.append(Choice(chosen, path.stat().st_size, cosine, snr,
                                             [k for k in kept if k not in chosen]))
                candidates.append(path)
                if budget == "auto" and cosine >= bar:
                    break
            result.chosen = _choose(result.choices, bar if budget is not None else None)
            if options.write is not None and result.chosen is not None:
                place(candidates[result.chosen], options.write)
                result.written = options.write
            if progress:
                progress("done", "Layers ranked")
            return result
    finally:
        model.close()


def _keep_float_budget(text: str | None) -> int | str | None:
    if text is None or text == "auto":
        return text
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise BadInput(f"--keep-float '{text}': expected a number of layers or 'auto'.", "Example: --keep-float 3")
    return count


def _counts(budget: int | str | None, layers: int) -> list[int]:
    if budget is None:
        return [0]
    if budget == "auto":
        return [0, *(k for k in AUTO_STEPS if k < layers), layers] if layers else [0]
    assert isinstance(budget, int)
    return list(range(min(budget, layers) + 1))


def _choose(choices: list[Choice], min_cosine: float | None) -> int | None:
    """The smallest model reaching `min_cosine`; without a bar, the most accurate."""
    if not choices:
        return None
    if min_cosine is not None:
        good = [i for i, c in enumerate(choices) if c.cosine >= min_cosine]
        if good:
            return min(good, key=lambda i: choices[i].size_bytes)
    return max(range(len(choices)), key=lambda i: (choices[i].cosine, -choices[i].size_bytes))


def _run(spec: FormatSpec, model: Path, feeds: list[dict[str, Any]]) -> list[list[np.ndarray]]:
    """The model's outputs on its target's own runtime, as deployed (default session options)."""
    with open_runner(spec, model) as runner:
        results = [runner.run(feed) for feed in feeds]
    return [[outputs[name] for name in sorted(outputs)] for outputs in results]


def _agreement(reference: list[list[np.ndarray]], produced: list[list[np.ndarray]]) -> tuple[float, float]:
    """The worst output's cosine, and the SNR (dB) over all outputs and samples."""
    import numpy as np

    worst, signal, noise = 1.0, 0.0, 0.0
    for ref_sample, got_sample in zip(reference, produced):
        for ref, got in zip(ref_sample, got_sample):
            r, g = np.asarray(ref, np.float64).ravel(), np.asarray(got, np.float64).ravel()
            norms = float(np.linalg.norm(r) * np.linalg.norm(g))
            worst = min(worst, 1.0 if np.array_equal(r, g) else float(np.dot(r, g)) / norms if norms else 0.0)
            signal += float(np.dot(r, r))
            noise += float(np.dot(r - g, r - g))
    return worst, (math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-300) / noise))
