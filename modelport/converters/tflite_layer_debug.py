"""The int8 layer debugger of TFLite: TensorFlow's own QuantizationDebugger on the float SavedModel.

The debugger calibrates once, then builds a debug model in which every quantized op runs beside
its float twin on the same (dequantized) input, so each layer's SNR is the error that layer adds
alone. Keeping layers in float is the converter's own denylist (`denylisted_nodes`), applied to
the calibrated model without calibrating again. A TFLite node is named by its output tensor.
Keeping one in float keeps with it the neighbours the quantizer tied to its scale (seen: a Mul
after a conv shares the conv output's scale, so the Mul's outlier channel crushes the conv's
output) and the readers of all of them, or they would quantize its float output right back.

The models this writes keep float inputs and outputs (quantize and dequantize inside), as the
debugger builds them; `convert --quantize int8` gives int8 I/O.
"""

from __future__ import annotations

import csv
import io
from contextlib import contextmanager
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._lazy import captured_output, require
from ..errors import ConversionFailed, error_summary
from ..sources.tensorflow import signature_of
from .layer_debug import ChannelNoise, Feeds, LayerLoss

if TYPE_CHECKING:
    from ..artifact import Artifact


class TfliteLayerDebugger:
    def __init__(self, saved: Artifact, calibrate: list[Feeds], evaluate: list[Feeds], scratch: Path,
                 signature: str | None) -> None:
        self._tf = require("tensorflow", purpose="to debug TFLite int8 quantization")
        self._saved, self._signature = saved, signature_of(saved, None, signature)
        self._calibrate, self._evaluate = calibrate, evaluate
        self.float_model = scratch / "float.tflite"
        with _quiet("TFLiteConverter could not convert the SavedModel to float TFLite"):
            self.float_model.write_bytes(self._converter().convert())
        self._graph = _Graph(self.float_model)
        self._noise: list[ChannelNoise] = []
        self._params: dict[str, tuple[str, str]] = {}  # node -> its output's (scale, zero point)
        self._debugger: Any = None

    def _converter(self) -> Any:
        tf = self._tf
        converter = tf.lite.TFLiteConverter.from_saved_model(str(self._saved.path), signature_keys=[self._signature])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter

    def rank(self) -> list[LayerLoss]:
        tf = self._tf
        converter = self._converter()
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: iter(self._calibrate)
        noise = self._noise
        position = [0]

        def samples() -> Iterator[list[Any]]:
            # The debugger wants a list in the interpreter's input order. Its per-layer callbacks for
            # a sample come in one fixed order after that sample is yielded: `position` counts them.
            for feed in self._evaluate:
                position[0] = 0
                yield [feed[name] for name in self._graph.input_names]

        def capture(floats: Any, quantized: Any, scale: float, zero_point: int) -> float:
            index = position[0]
            position[0] += 1
            while len(noise) <= index:
                noise.append(ChannelNoise(channel_axis=-1))  # TFLite tensors are channel-last
            noise[index].add(floats, (quantized.astype("float64") - zero_point) * scale)
            return 0.0

        options = tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics={"snr": capture})
        with _quiet("TensorFlow's QuantizationDebugger could not quantize the model"):
            self._debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=samples, debug_options=options)
            self._debugger.run()
        table = io.StringIO()
        self._debugger.layer_statistics_dump(table)  # one row per layer, in the callbacks' order
        table.seek(0)
        layers = []
        for row, measured in zip(csv.DictReader(table), noise):
            name = row["tensor_name"]
            self._params[name] = (row["scale"], row["zero_point"])
            layers.append(LayerLoss(name, row["op_name"], name, measured.worst_snr_db(), None, None))
        return sorted(layers, key=lambda layer: layer.snr_db)

    def quantized(self, keep_float: Sequence[str], out: Path) -> list[str]:
        if self._debugger is None:
            self.rank()
        kept = self._graph.with_consumers(self._graph.tied(list(keep_float), self._params))
        # What QuantizationDebugger.get_nondebug_quantized_model does, with our denylist: its own
        # options setter would rebuild the debug model, which fails once every layer is float.
        from tensorflow.lite.python import convert

        with _quiet("TFLite could not re-quantize the model with layers left in float"):
            out.write_bytes(convert.mlir_quantize(
                self._debugger.calibrated_model, disable_per_channel=False, fully_quantize=False,
                enable_numeric_verify=False, denylisted_nodes=kept))
        return kept


def open_debugger(saved: Artifact, calibrate: list[Feeds], evaluate: list[Feeds], scratch: Path,
                  signature: str | None = None) -> TfliteLayerDebugger:
    return TfliteLayerDebugger(saved, calibrate, evaluate, scratch, signature)


@contextmanager
def _quiet(what: str) -> Iterator[None]:
    """TF's converter logs go to a buffer; a failure says what failed and quotes its cause."""
    try:
        with captured_output(False):
            yield
    except ConversionFailed:
        raise
    except Exception as exc:  # ConverterError, ValueError...: TF's own types
        raise ConversionFailed(f"{what}: {error_summary(exc)}",
                               "`modelport convert SOURCE --to tflite --quantize int8 -v` shows the converter's log.") from None


class _Graph:
    """The float TFLite graph's names: inputs in the interpreter's order, and who reads each tensor."""

    def __init__(self, path: Path) -> None:
        from ai_edge_litert import schema_py_generated as schema

        model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
        graph = model.subgraphs[0]
        names = [_text(t.name) for t in graph.tensors]
        signature = (model.signatureDefs or [None])[0]
        by_tensor = {s.tensorIndex: _text(s.name) for s in (signature.inputs or [])} if signature else {}
        self.input_names = [by_tensor.get(index, names[index]) for index in graph.inputs]
        self._readers: dict[str, list[str]] = {}
        self._inputs: dict[str, list[str]] = {}
        for op in graph.operators or []:
            node = names[op.outputs[0]] if op.outputs is not None and len(op.outputs) else None
            for index in op.inputs if op.inputs is not None else []:
                if index >= 0 and node:
                    self._readers.setdefault(names[index], []).append(node)
                    self._inputs.setdefault(node, []).append(names[index])

    def tied(self, nodes: list[str], params: dict[str, tuple[str, str]]) -> list[str]:
        """The nodes, with every neighbour (reader or producer, transitively) whose output the
        quantizer gave the same scale and zero point: one quantization domain."""
        found = list(dict.fromkeys(nodes))
        for node in found:  # grows while it is walked
            for other in (*self._readers.get(node, []), *self._inputs.get(node, [])):
                if other not in found and other in params and params.get(node) == params[other]:
                    found.append(other)
        return found

    def with_consumers(self, nodes: list[str]) -> list[str]:
        kept = list(nodes)
        for node in nodes:
            kept.extend(self._readers.get(node, []))
        return list(dict.fromkeys(kept))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
