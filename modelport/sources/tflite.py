"""TFLite source: a .tflite flatbuffer, run on the LiteRT interpreter for reference outputs.

The interpreter always runs in a clean child process (`IsolatedRunner`): in a process that has
imported TensorFlow (converters do) it would silently use the Flex delegate and give references
for a model no device can run. The flatbuffer itself is read here, in pure Python, to refuse
truncated files before any interpreter touches them (LiteRT does not verify its input: a cut file
loads with nonsense errors or worse), and to learn signature-to-tensor names and precision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..artifact import Artifact
from ..errors import BadInput
from ..spec import TensorSpec, merge_specs
from ..targets.isolated import IsolatedRunner
from .base import LoadOptions, SourceModel

if TYPE_CHECKING:
    import numpy as np

LITERT = "modelport.targets.tflite:LiteRTRunner"

_INT_TYPES = {"INT8", "UINT8", "INT16"}
_QUANTIZED_DTYPES = ("int8", "uint8", "int16")


@dataclass(frozen=True)
class IOTensor:
    name: str            # what LiteRT calls it: the signature's name when there is one signature
    tensor: str          # the tensor's own name in the graph (tf2onnx names ONNX I/O after it)
    dtype: str
    scale: float = 0.0   # scale and zero point of quantized integer I/O, else 0
    zero_point: int = 0
    shape: tuple[int | str, ...] | None = None  # "?" where the file records a dim as unknown (-1)


@dataclass(frozen=True)
class TfliteFacts:
    inputs: tuple[IOTensor, ...] = ()
    outputs: tuple[IOTensor, ...] = ()
    signatures: tuple[str, ...] = ()
    precision: str = "none"             # none, fp16, dynamic, int8 (tolerance keys) or int16
    custom_ops: tuple[str, ...] = ()
    parameters: int | None = None       # elements of constant tensors (weights)
    tensors: frozenset[str] = frozenset()  # every tensor name of the main graph
    ops: dict[str, int] = field(default_factory=dict)
    readable: bool = True               # False where no flatbuffer schema is installed to read it


def read_flatbuffer(path: Path) -> TfliteFacts:
    """Parse the whole flatbuffer (which also proves it is complete) and describe its I/O.

    Raises BadInput for a truncated or corrupt file."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # tflite_runtime alone ships no schema: let the interpreter judge the file
        return TfliteFacts(readable=False)
    data = path.read_bytes()
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
        subgraph = model.subgraphs[0]
        outside = [b for b in model.buffers or [] if b.offset > 1 and b.offset + b.size > len(data)]
    except Exception as exc:  # struct.error, IndexError, ValueError...: reads past the end
        needed = re.search(r"at least (\d+) bytes", str(exc))
        why = (f"it refers to byte {needed.group(1)} of a {len(data)}-byte file" if needed
               else f"{type(exc).__name__}: {str(exc)[:100]}")
        raise BadInput(f"'{path}' is not a complete TFLite flatbuffer: {why}.",
                       "The file is probably truncated or corrupt; export or copy it again.") from None
    if outside:
        raise BadInput(f"'{path}' is truncated: its weights run past the end of the file.",
                       "Copy or export the file again.")
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}

    def io_tensor(index: int, name: str | None = None) -> IOTensor:
        tensor = subgraph.tensors[index]
        quant = tensor.quantization
        scale = float(quant.scale[0]) if quant is not None and quant.scale is not None and len(quant.scale) else 0.0
        zero = int(quant.zeroPoint[0]) if scale and quant.zeroPoint is not None and len(quant.zeroPoint) else 0
        dtype = types.get(tensor.type, "?").lower()
        own = tensor.name.decode("utf-8", "replace") if tensor.name else str(index)
        dims = tensor.shapeSignature if tensor.shapeSignature is not None and len(tensor.shapeSignature) else tensor.shape
        shape = tuple(int(d) if d >= 0 else "?" for d in (dims if dims is not None else []))
        return IOTensor(name or own, own, dtype, scale if dtype.upper() in _INT_TYPES else 0.0, zero, shape)

    signatures = list(model.signatureDefs or [])
    names = tuple(s.signatureKey.decode() for s in signatures if s.signatureKey)
    if len(signatures) == 1 and signatures[0].subgraphIndex == 0:  # as LiteRTRunner names them
        sig = signatures[0]
        inputs = tuple(io_tensor(t.tensorIndex, t.name.decode()) for t in sig.inputs or [])
        outputs = tuple(io_tensor(t.tensorIndex, t.name.decode()) for t in sig.outputs or [])
    else:
        inputs = tuple(io_tensor(i) for i in subgraph.inputs)
        outputs = tuple(io_tensor(i) for i in subgraph.outputs)
    custom = tuple(sorted({c.customCode.decode("utf-8", "replace") for c in model.operatorCodes or []
                           if c.customCode}))
    parameters, ops = _summary(model, schema)
    tensors = frozenset(t.name.decode("utf-8", "replace") for t in subgraph.tensors or [] if t.name)
    return TfliteFacts(inputs, outputs, names, _precision(model, types), custom, parameters, tensors, ops)


def _is_constant(model: Any, tensor: Any) -> bool:
    buffer = model.buffers[tensor.buffer] if model.buffers and 0 < tensor.buffer < len(model.buffers) else None
    return buffer is not None and bool((buffer.data is not None and len(buffer.data)) or buffer.offset > 1)


def _summary(model: Any, schema: Any) -> tuple[int, dict[str, int]]:
    """Weight count and op counts (builtin names as LiteRT spells them, custom ops by name)."""
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for code in model.operatorCodes or []:
        number = max(code.builtinCode, code.deprecatedBuiltinCode)  # the schema's rule for old files
        codes.append(code.customCode.decode("utf-8", "replace") if code.customCode
                     else builtin.get(number, str(number)))
    counts: dict[str, int] = {}
    parameters = 0
    for subgraph in model.subgraphs:
        for op in subgraph.operators or []:
            name = codes[op.opcodeIndex] if op.opcodeIndex < len(codes) else "?"
            counts[name] = counts.get(name, 0) + 1
        for tensor in subgraph.tensors or []:
            if _is_constant(model, tensor):
                size = 1
                for dim in tensor.shape if tensor.shape is not None else []:
                    size *= int(dim)
                parameters += size
    return parameters, dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _precision(model: Any, types: dict[int, str]) -> str:
    """What the graph computes in: integer activations are "int8" (full integer; "int16" for
    16x8 quantization), integer weights beside float activations "dynamic" (dynamic range),
    float16 weights "fp16"."""
    activations: set[str] = set()
    quantized_weights = float16_weights = False
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors or []:
            kind = types.get(tensor.type, "")
            constant = _is_constant(model, tensor)
            quant = tensor.quantization
            quantized = quant is not None and quant.scale is not None and len(quant.scale) > 0
            if kind in _INT_TYPES and quantized:
                if constant:
                    quantized_weights = True
                else:
                    activations.add(kind)
            elif kind == "FLOAT16" and constant:
                float16_weights = True
    if "INT16" in activations:
        return "int16"
    if activations:
        return "int8"
    return "dynamic" if quantized_weights else "fp16" if float16_weights else "none"


def _named_dims(spec: TensorSpec) -> TensorSpec:
    """LiteRT's unknown dims ("?") get names, the first being the batch (as SavedModel specs)."""
    if spec.shape is None:
        return spec
    shape = tuple(d if d != "?" else ("batch" if i == 0 else f"{spec.name}_d{i}") for i, d in enumerate(spec.shape))
    return TensorSpec(spec.name, shape, spec.dtype)


class TfliteModel(SourceModel):
    format = "tflite"
    framework = "tflite"
    runtime = "litert"
    precision = "none"

    def _load(self) -> None:
        self._runner = IsolatedRunner(LITERT, self.path, self.threads).load()

    def _run(self, feeds):
        return self._runner.run(feeds)

    def time_runs(self, feeds: dict[str, np.ndarray], runs: int, warmup: int) -> list[float]:
        self.load()
        return self._runner.time_runs(feeds, runs, warmup)  # timed in the child, not across the pipe

    def _close(self) -> None:
        self._runner.close()

    def summary(self) -> dict:
        return {"parameters": self.details.get("parameters"), "ops": self.details.get("ops", {}),
                "precision": self.precision, "signatures": self.details.get("signatures", [])}

    def artifact(self) -> Artifact:
        # The tflite target of a tflite source is this very file: same precision (so the same
        # tolerance), and channel-last as every TFLite graph.
        return super().artifact().with_(quantization=self.precision, layout="nhwc")


def load(path: Path, fmt: str, options: LoadOptions) -> TfliteModel:
    facts = read_flatbuffer(path)
    flex = [op for op in facts.custom_ops if op.startswith("Flex")]
    if flex:
        raise BadInput(f"'{path}' needs TF Select (Flex) ops {', '.join(flex)}, which the LiteRT interpreter "
                       "cannot run without the Flex delegate.",
                       "Convert the model again with builtin ops only (no SELECT_TF_OPS).")
    model = TfliteModel(path)
    model.load()
    try:
        _describe(model, facts, options)
    except BaseException:
        model.close()  # do not leave the interpreter's child process behind
        raise
    return model


def describe(source: str) -> dict[str, Any] | None:
    """What `inspect` shows, from the flatbuffer alone: no interpreter is made and no tensor is
    allocated (a 1 KB hostile file can ask LiteRT for gigabytes when its tensors are allocated)."""
    from ..artifact import sha256_of, size_of

    path = Path(source)
    facts = read_flatbuffer(path)
    if not facts.readable:  # no schema installed to read it: the loaded model's view (in its child)
        return None

    def specs(tensors: tuple[IOTensor, ...]) -> list[dict[str, Any]]:
        # Quantized I/O is described in float, as `load` does: LiteRTRunner (de)quantizes it.
        return [_named_dims(TensorSpec(t.name, t.shape, "float32" if t.scale else t.dtype)).to_json()
                for t in tensors]

    quantization = {t.name: {"scale": t.scale, "zero_point": t.zero_point, "dtype": t.dtype}
                    for t in (*facts.inputs, *facts.outputs) if t.scale}
    described: dict[str, Any] = {
        "path": source, "format": "tflite", "framework": "tflite", "evidence": "flatbuffer with identifier TFL3",
        "size_bytes": size_of(path), "sha256": sha256_of(path), "inputs": specs(facts.inputs),
        "outputs": specs(facts.outputs), "parameters": facts.parameters, "ops": facts.ops,
        "precision": facts.precision, "signatures": list(facts.signatures), "quantization": quantization}
    if facts.custom_ops:
        described["custom_ops"] = list(facts.custom_ops)
    return described


def _describe(model: TfliteModel, facts: TfliteFacts, options: LoadOptions) -> None:
    path = model.path
    quantization: dict[str, dict] = model._runner.call("quantization")
    stored: dict[str, str] = {}
    inputs: list[TensorSpec] = []
    for spec in model._runner.inputs:
        if spec.name in quantization and spec.dtype in _QUANTIZED_DTYPES:
            # LiteRTRunner takes float feeds and quantizes them with the input's own scale and
            # zero point, so the source is described (and seeded) in float: random integers would
            # be noise across the whole int8 range, and the ONNX made from this file is fed the
            # same float values quantized the same way (see the tflite2onnx edge).
            stored[spec.name] = spec.dtype
            spec = TensorSpec(spec.name, spec.shape, "float32")
        inputs.append(_named_dims(spec))
    outputs = []
    for spec in model._runner.outputs:
        if spec.name in quantization and spec.dtype in _QUANTIZED_DTYPES:
            stored[spec.name] = spec.dtype  # LiteRTRunner dequantizes it: the reference is float
            spec = TensorSpec(spec.name, spec.shape, "float32")
        outputs.append(_named_dims(spec))
    for name, dtype in stored.items():  # so `inspect` and reports show what the file holds
        quantization[name]["dtype"] = dtype
    model.inputs = merge_specs(inputs, list(options.inputs))
    model.outputs = outputs
    model.precision = facts.precision
    signature = facts.signatures[0] if len(facts.signatures) == 1 else None
    if options.signature and options.signature not in facts.signatures:
        raise BadInput(f"'{path}' has no signature '{options.signature}' (its signatures: "
                       f"{', '.join(facts.signatures) or 'none'}).", "Name one of those, or drop --signature.")
    if options.signature and signature is None:
        raise BadInput(f"'{path}' has several signatures; modelport runs a TFLite file by its main graph only.",
                       "Drop --signature, or convert the one signature you need to its own .tflite file.")
    model.details.update({
        "signature": signature, "signatures": list(facts.signatures), "precision": facts.precision,
        "quantization": quantization, "stored_dtypes": stored,
        "tensor_names": {"inputs": {t.name: t.tensor for t in facts.inputs},
                         "outputs": {t.name: t.tensor for t in facts.outputs}},
    })
    if facts.readable:
        model.details.update({"parameters": facts.parameters, "ops": facts.ops})
    if facts.custom_ops:
        model.details["custom_ops"] = list(facts.custom_ops)
