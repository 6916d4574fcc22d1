"""`quantize-doctor`: which layers an int8 model loses its accuracy in, and what keeping them in
float buys back.

The source is exported to float ONNX (the same edges `convert` uses), quantized to int8 QDQ with
the user's calibration data (`onnx_quantize.quantize_onnx`), and both models are run on the same
held-out samples with every intermediate tensor exposed (onnxruntime's own `qdq_loss_debug`).
Each node is ranked by the signal-to-quantization-noise ratio it loses: the SNR of its output
against the float model's, below the worst SNR of its inputs. `--keep-float N|auto` re-quantizes
with the worst nodes left in float (each with its consumers, so the tensor it makes stays float:
in QDQ a tensor is quantized once for all who read it) and measures size and accuracy per choice.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BadInput
from .loading import load_source
from .options import ConvertOptions, Progress
from .placement import place
from .registry import Registry, default

if TYPE_CHECKING:
    import numpy as np

_QUANTIZED_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Relu", "Clip", "MaxPool", "AveragePool",
                  "GlobalAveragePool", "Concat", "Sigmoid", "Softmax", "LeakyRelu", "Resize", "Reshape", "Transpose",
                  "Squeeze", "Unsqueeze", "Flatten", "Split", "Gather", "ReduceMean", "Where", "Pad", "Slice"}
AUTO_STEPS = (1, 2, 4, 8, 16)
AUTO_MIN_COSINE = 0.99  # --keep-float auto: the bar, unless --min-cosine says otherwise


@dataclass(frozen=True)
class DoctorOptions(ConvertOptions):
    keep_float: str | None = None     # None: rank only; "N": try 0..N nodes in float; "auto": until min_cosine holds
    write: Path | None = None         # where to write the chosen model


@dataclass
class LayerLoss:
    node: str
    op_type: str
    tensor: str
    snr_db: float         # the node's output in the int8 model against the float model
    input_snr_db: float   # the worst of its inputs'
    lost_db: float        # what this node adds: input_snr_db - snr_db

    def to_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in vars(self).items()}


@dataclass
class Choice:
    kept_float: list[str]
    size_bytes: int
    cosine: float
    snr_db: float

    def to_json(self) -> dict[str, Any]:
        return {"kept_float": self.kept_float, "size_bytes": self.size_bytes, "cosine": self.cosine,
                "snr_db": self.snr_db if math.isfinite(self.snr_db) else None}


@dataclass
class DoctorResult:
    source: str
    samples: int
    float_size_bytes: int
    layers: list[LayerLoss] = field(default_factory=list)
    choices: list[Choice] = field(default_factory=list)
    chosen: int | None = None            # index into choices
    written: Path | None = None
    calibration: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"schema": "modelport.quantize-doctor/1", "source": self.source, "samples": self.samples,
                "float_size_bytes": self.float_size_bytes, "calibration": self.calibration,
                "layers": [layer.to_json() for layer in self.layers],
                "choices": [c.to_json() for c in self.choices], "chosen": self.chosen,
                "written": str(self.written) if self.written else None}


def diagnose(source: str, options: DoctorOptions, progress: Progress | None = None,
             registry: Registry | None = None) -> DoctorResult:
    from .converters.onnx_quantize import quantize_onnx
    from .pipeline import calibration_for, check_precision, convert_loaded
    from .validators.validate import to_artifact_feeds

    registry = registry or default()
    if options.targets != ("onnx",):
        raise BadInput(f"quantize-doctor works on --to onnx in this version (got {', '.join(options.targets)}).",
                       "Run it with --to onnx: its per-layer ranking is the ONNX model's.")
    options = replace(options, quantize="int8")
    check_precision(options, registry)
    budget = _keep_float_budget(options.keep_float)
    target = options.min_cosine if options.min_cosine is not None else AUTO_MIN_COSINE
    model = load_source(source, options.load_options(), framework=options.framework, registry=registry)
    try:
        calibration = calibration_for(model, options)
        with tempfile.TemporaryDirectory(prefix="modelport-doctor-") as scratch_root:
            scratch = Path(scratch_root)
            if progress:
                progress("start", "Exporting the float ONNX model")
            floated = replace(options, quantize="none", validate=False, output_dir=scratch / "float")
            item = convert_loaded(source, model, floated, None, registry).targets[0]
            if item.artifact is None or item.path is None:
                raise BadInput(f"The model could not be exported to ONNX: {item.error}", "See `modelport convert`.")
            artifact = item.artifact.with_(path=item.path)
            calibrate = [to_artifact_feeds(artifact, f) for f in calibration.samples]
            evaluate = [to_artifact_feeds(artifact, f) for f in (calibration.held_out or calibration.samples)]
            if progress:
                progress("done", "Float ONNX model ready")
                progress("start", "Quantizing and comparing layer by layer")
            quantized = scratch / "int8.onnx"
            quantize_onnx(item.path, quantized, "int8", calibrate)
            layers = rank_layers(item.path, quantized, evaluate, scratch)
            result = DoctorResult(source, len(evaluate), item.path.stat().st_size, layers,
                                  calibration=calibration.to_json())
            reference = _run(item.path, evaluate)
            candidates: list[Path] = []
            for count in _counts(budget, len(layers)):
                kept = _exclusion(item.path, [layer.node for layer in layers[:count]])
                path = quantized if count == 0 else scratch / f"int8-keep{count}.onnx"
                if count:
                    quantize_onnx(item.path, path, "int8", calibrate, exclude_nodes=kept)
                cosine, snr = _agreement(reference, _run(path, evaluate))
                result.choices.append(Choice([layer.node for layer in layers[:count]], path.stat().st_size,
                                             cosine, snr))
                candidates.append(path)
                if budget == "auto" and cosine >= target:
                    break
            result.chosen = _choose(result.choices, target if budget is not None else None)
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


def rank_layers(float_model: Path, int8_model: Path, feeds: list[dict[str, np.ndarray]],
                scratch: Path) -> list[LayerLoss]:
    """Every measured node of the float model, ranked by the SNR its output loses in the int8 model.

    A tensor's SNR is its worst channel's (axis 1): one outlier channel makes a per-tensor int8
    scale crush every other channel, which an SNR over the whole tensor (dominated by the outlier)
    would hide. Nodes whose outputs the quantizer fuses away (a Conv before its Relu) are measured
    at the node that ends the fused group."""
    import onnx

    float_acts = _activations(_with_every_tensor_out(float_model, scratch / "float-all.onnx"), feeds)
    int8_acts = _activations(_with_every_tensor_out(int8_model, scratch / "int8-all.onnx"), feeds)
    snr = {}
    for name, values in float_acts.items():
        # The int8 model's view of a float tensor X: what its DequantizeLinear gives back (QDQ names
        # it X_DequantizeLinear_Output), or X itself where the tensor was left in float.
        seen = int8_acts.get(f"{name}_DequantizeLinear_Output", int8_acts.get(name))
        if seen is not None:
            snr[name] = worst_channel_snr(values, seen)
    graph = onnx.load(str(float_model), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}

    def input_snr(name: str, seen: set[str]) -> float:
        """The SNR a tensor arrives with: measured, else that of its (fused, unmeasured) producer's inputs."""
        if name in snr:
            return snr[name]
        node = producer.get(name)
        if node is None or node.name in seen:
            return math.inf
        seen.add(node.name)
        return min((input_snr(i, seen) for i in node.input if i), default=math.inf)

    layers = []
    for node in graph.node:
        measured = [snr[o] for o in node.output if o in snr]
        if not measured:
            continue
        out = min(measured)
        worst_in = min((input_snr(i, {node.name}) for i in node.input if i), default=math.inf)
        lost = worst_in - out if math.isfinite(worst_in) and math.isfinite(out) else 0.0
        layers.append(LayerLoss(node.name, node.op_type, node.output[0], out, worst_in, lost))
    return sorted(layers, key=lambda layer: -layer.lost_db)


def _with_every_tensor_out(model: Path, out: Path) -> Path:
    """A copy of the model whose every typed intermediate tensor is also a graph output (shapes kept:
    onnxruntime's own qdq_loss_debug flattens them, and the channel axis matters here)."""
    import onnx

    proto = onnx.load(str(model))
    inferred = onnx.shape_inference.infer_shapes(proto)
    typed = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.output)}
    present = {o.name for o in proto.graph.output}
    for node in proto.graph.node:
        for name in node.output:
            if name and name not in present and name in typed:
                proto.graph.output.append(typed[name])
                present.add(name)
    onnx.save(proto, str(out))
    return out


def _activations(model: Path, feeds: list[dict[str, Any]]) -> dict[str, list[np.ndarray]]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    found: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for feed in feeds:
        for name, value in zip(names, session.run(names, feed)):
            found[name].append(value)
    return found


def worst_channel_snr(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    """10 log10(signal / noise) in dB over all samples, per channel (axis 1 of a tensor of rank >= 2
    with more than one channel), the worst channel's; inf when exact."""
    import numpy as np

    ref = np.concatenate([np.asarray(r, np.float64).reshape(1, *np.shape(r)) for r in reference])
    got = np.concatenate([np.asarray(c, np.float64).reshape(1, *np.shape(c)) for c in candidate])
    if ref.shape != got.shape:
        return -math.inf
    axes = tuple(i for i in range(ref.ndim) if i != 2) if ref.ndim >= 3 and ref.shape[2] > 1 else None
    signal = np.sum(ref * ref, axis=axes) if axes else np.array([np.sum(ref * ref)])
    noise = np.sum((ref - got) ** 2, axis=axes) if axes else np.array([np.sum((ref - got) ** 2)])
    live = signal > 1e-9 * float(signal.max()) if signal.size and signal.max() > 0 else np.ones_like(signal, bool)
    signal, noise = signal[live], noise[live]  # a channel a ReLU keeps at 0 carries no signal to lose
    with np.errstate(divide="ignore"):
        ratios = np.where(noise == 0, np.inf, 10 * np.log10(np.maximum(signal, 1e-300) / np.maximum(noise, 1e-300)))
    return float(ratios.min())


def _exclusion(float_model: Path, nodes: list[str]) -> list[str]:
    """The nodes to keep float so each named node's output stays float: it and the nodes reading it."""
    import onnx

    graph = onnx.load(str(float_model), load_external_data=False).graph
    outputs = {o: n.name for n in graph.node for o in n.output}
    kept = list(dict.fromkeys(nodes))
    chosen = set(nodes)
    for node in graph.node:
        if node.op_type in _QUANTIZED_OPS and any(outputs.get(i) in chosen for i in node.input):
            kept.append(node.name)
    return list(dict.fromkeys(kept))


def _run(model: Path, feeds: list[dict[str, Any]]) -> list[list[np.ndarray]]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])  # default options, as deployed
    return [session.run(None, f) for f in feeds]


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
