"""The int8 layer debugger of ONNX: onnxruntime's QDQ quantizer (`onnx_quantize.quantize_onnx`),
with the float and int8 models run side by side on the same samples, every intermediate tensor
exposed as an output.

Each node is ranked by the SNR it loses: its output's SNR against the float model, below the
worst SNR of its inputs. Keeping a node in float keeps its consumers in float too: in QDQ a
tensor is quantized once for all who read it, so a float node alone would still hand on an int8
tensor.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .layer_debug import Feeds, LayerLoss, worst_channel_snr
from ..targets.onnx import with_every_tensor_out
from .onnx_quantize import quantize_onnx

if TYPE_CHECKING:
    import numpy as np

    from ..artifact import Artifact

# Ops onnxruntime's QDQ quantizer quantizes: the consumers that must stay float with a kept node.
_QUANTIZED_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Relu", "Clip", "MaxPool", "AveragePool",
                  "GlobalAveragePool", "Concat", "Sigmoid", "Softmax", "LeakyRelu", "Resize", "Reshape", "Transpose",
                  "Squeeze", "Unsqueeze", "Flatten", "Split", "Gather", "ReduceMean", "Where", "Pad", "Slice"}


class OnnxLayerDebugger:
    def __init__(self, float_artifact: Artifact, calibrate: list[Feeds], evaluate: list[Feeds], scratch: Path) -> None:
        self.float_model = float_artifact.path
        self._calibrate, self._evaluate, self._scratch = calibrate, evaluate, scratch
        self._plain = scratch / "int8.onnx"
        quantize_onnx(self.float_model, self._plain, "int8", calibrate)

    def rank(self) -> list[LayerLoss]:
        return rank_layers(self.float_model, self._plain, self._evaluate, self._scratch)

    def quantized(self, keep_float: Sequence[str], out: Path) -> list[str]:
        if not keep_float:
            shutil.copyfile(self._plain, out)
            return []
        kept = with_consumers(self.float_model, list(keep_float))
        quantize_onnx(self.float_model, out, "int8", self._calibrate, exclude_nodes=kept)
        return kept


def open_debugger(float_artifact: Artifact, calibrate: list[Feeds], evaluate: list[Feeds], scratch: Path,
                  signature: str | None = None) -> OnnxLayerDebugger:
    return OnnxLayerDebugger(float_artifact, calibrate, evaluate, scratch)


def rank_layers(float_model: Path, int8_model: Path, feeds: list[Feeds], scratch: Path) -> list[LayerLoss]:
    """Every measured node of the float model, ranked by the SNR its output loses in the int8 model
    (its worst channel's, axis 1). Nodes whose outputs the quantizer fuses away (a Conv before its
    Relu) are measured at the node that ends the fused group."""
    import onnx

    float_acts = _activations(with_every_tensor_out(float_model, scratch / "float-all.onnx"), feeds)
    int8_acts = _activations(with_every_tensor_out(int8_model, scratch / "int8-all.onnx"), feeds)
    snr = {}
    for name, values in float_acts.items():
        # The int8 model's view of a float tensor X: what its DequantizeLinear gives back (QDQ names
        # it X_DequantizeLinear_Output), or X itself where the tensor was left in float.
        seen = int8_acts.get(f"{name}_DequantizeLinear_Output", int8_acts.get(name))
        if seen is not None:
            snr[name] = worst_channel_snr(values, seen, channel_axis=1)
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
    return sorted(layers, key=lambda layer: -(layer.lost_db or 0.0))


def _activations(model: Path, feeds: list[dict[str, Any]]) -> dict[str, list[np.ndarray]]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    found: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for feed in feeds:
        for name, value in zip(names, session.run(names, feed)):
            found[name].append(value)
    return found


def with_consumers(float_model: Path, nodes: list[str]) -> list[str]:
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
