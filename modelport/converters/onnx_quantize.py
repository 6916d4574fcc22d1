"""Quantize an ONNX file with onnxruntime's own tools: fp16, dynamic int8, or static int8 (QDQ).

File in, file out: `quantize_onnx(model, out, mode, ...)` reads one ONNX file, writes another and
returns a dict describing what it did (for reports). Nothing here reimplements quantization; the
work is choosing settings whose output onnxruntime computes *correctly with its default session
options on any x86-64 CPU*, which the defaults of onnxruntime.quantization do not guarantee:

- Static int8 (QDQ) uses uint8 activations, int8 weights and `reduce_range=True` (7-bit weights).
  With graph optimizations on (the default) onnxruntime fuses DQ -> Conv/Gemm -> Q into integer
  kernels; with int8 weights those run its U8S8 GEMM, which on AVX2/AVX-512 CPUs without VNNI
  multiplies with VPMADDUBSW and saturates the int16 sum of two u8*s8 products (2*255*127 >
  32767). 7-bit weights bound that sum by 2*255*64 = 32640, so nothing saturates, while the file
  keeps the U8S8 form that onnxruntime runs fastest on CPUs (VNNI or not). (onnxruntime's docs give
  reduce_range or U8U8 as the remedies.) Measured on an AVX2-only EPYC: without reduce_range an
  MLP's fused output drifts to cosine 0.9955 against the same QDQ model run unfused, 0.918 with
  symmetric activations; with it the two agree exactly (per-channel) or within one output step
  (per-tensor) on every model tried (MLPs, CNNs, a MobileNetV2-like net), at cosine >= 0.999 to fp32.
  U8U8 is as exact but ran a 64-channel CNN barely faster than fp32 on that CPU (U8S8+7-bit: ~1.8x).
  Activations stay asymmetric: symmetric uint8 puts every ReLU output in 128..255, half the
  resolution and (without reduce_range) the worst saturation measured.
- Dynamic int8 uses int8 weights with `reduce_range=True` for the same reason (its MatMulInteger /
  DynamicQuantizeMatMul kernels are U8S8 even with optimizations off), except when the model has
  a Conv to quantize: onnxruntime's CPU ConvInteger only has a uint8-weight kernel (an int8 one
  fails at session creation with NOT_IMPLEMENTED), so those models get uint8 weights (U8U8, which
  cannot saturate, so 8-bit weights stay).
- fp16 uses onnxruntime.transformers.float16 (or onnxconverter_common's) with keep_io_types, so
  the model's inputs and outputs stay float32.

Every result is written next to `out` first and only moved into place once onnxruntime can open
it with its default options, so a failure never leaves a half-written or unloadable file.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._lazy import captured_output
from ..artifact import Artifact
from ..errors import BackendMissing, BadInput, ConversionFailed, ModelportError, error_summary

if TYPE_CHECKING:
    from .base import EdgeContext

MODES = ("fp16", "dynamic", "int8")
# Beyond this, protobuf cannot hold the model in one file: weights go to `<out>.data`.
_EXTERNAL_DATA_BYTES = 1_800_000_000
_FP16_CONVERTERS = ("onnxruntime.transformers.float16", "onnxconverter_common.float16")
# onnxruntime's C++ errors put a source location and a function signature before the cause
# ("...failed:/onnxruntime_src/.../model.cc:181 onnxruntime::Model::Model(...) Unsupported model IR
# version: 12, ..."): without them the cause fits in one short line.
_CXX_NOISE = re.compile(r"/\S*onnxruntime\S*\.(?:cc|cpp|h):\d+\s+(?:\w+(?:::[\w~<>]+)+\([^)]*\)\s*(?:const\s*)?)?")


def quantize_onnx(model: Path, out: Path, mode: str, calibration: Sequence[Mapping[str, Any]] | None = None,
                  per_channel: bool = True, exclude_nodes: Sequence[str] = ()) -> dict[str, Any]:
    """Quantize the ONNX file `model` into `out`.

    mode: "fp16" | "dynamic" | "int8". `calibration` (int8 only, required there) is a list of feed
    dicts keyed by the model's input names. `exclude_nodes` names nodes to keep in float32.
    Returns what was done, e.g. {"mode": "int8", "format": "QDQ", "activation_type": "uint8",
    "weight_type": "int8", "per_channel": True, "reduce_range": True, "excluded_nodes": [...],
    "calibration_samples": 32, "bytes_in": ..., "bytes_out": ..., ...}.

    Raises BadInput (unknown mode, unreadable model, missing or mismatched calibration data,
    unknown node names), BackendMissing (onnx/onnxruntime, or no fp16 converter) and
    ConversionFailed (onnxruntime's tools failed, or their output does not load in onnxruntime).
    """
    model, out = Path(model), Path(out)
    if mode not in MODES:
        raise BadInput(f"Unknown quantization mode {mode!r}.", f"Use one of: {', '.join(MODES)}.")
    onnx, ort = _backends()
    try:
        # Graph only (no weights): enough to check inputs and node names, cheap for big models.
        proto = onnx.load(str(model), load_external_data=False)
    except Exception as exc:
        raise BadInput(f"Cannot read ONNX model {model}: {error_summary(exc)}") from None
    excluded = list(dict.fromkeys(exclude_nodes))
    _check_node_names(proto, excluded)
    large = _is_large(model, proto)
    if mode == "int8":
        feeds = _calibration_feeds(onnx, proto, calibration)  # checked before any work starts

    out.parent.mkdir(parents=True, exist_ok=True)
    # Build in a scratch directory beside `out` (same filesystem: the final move is a rename), under
    # the final file name so that external data written with it keeps the right reference.
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as scratch:
        staged = Path(scratch) / out.name
        if proto.graph.value_info and not large:
            # Intermediate shapes an exporter recorded (torch.onnx does) can contradict the nodes the
            # quantizer rewrites ("Inferred shape and existing shape differ"): let it infer them anew.
            full = onnx.load(str(model))
            del full.graph.value_info[:]
            source = Path(scratch) / "input.onnx"
            onnx.save(full, str(source))
        else:
            source = model
        with captured_output(False) as log:  # the quantizer logs warnings to the root logger
            try:
                if mode == "fp16":
                    info = _fp16(onnx, source, staged, excluded, large)
                elif mode == "dynamic":
                    info = _dynamic(source, staged, proto, per_channel, excluded, large)
                else:
                    info = _int8(source, staged, feeds, per_channel, excluded, large)
            except ModelportError:
                raise
            except Exception as exc:
                tool = "float16 converter" if mode == "fp16" else "quantizer"
                raise ConversionFailed(f"onnxruntime's {tool} failed ({mode}): {_cause(exc)}",
                                       _hint(log.getvalue())) from None
            _check_loads(ort, staged, mode)
        for item in Path(scratch).iterdir():
            if item.name != "input.onnx":
                os.replace(item, out.parent / item.name)

    return {"mode": mode, **info, "excluded_nodes": excluded, "bytes_in": _size(model, proto),
            "bytes_out": _size(out, None), "tool": f"onnxruntime {ort.__version__}"}


def _backends() -> tuple[Any, Any]:
    # Lazy: `import modelport` must not pay for onnx/onnxruntime.
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendMissing(f"The Python package '{exc.name or 'onnxruntime'}' is not installed "
                             "(needed to quantize ONNX models).",
                             "Install it with: pip install 'modelport[onnx]'") from None
    return onnx, ort


def _fp16(onnx: Any, model: Path, out: Path, excluded: list[str], large: bool) -> dict[str, Any]:
    float16 = None
    for name in _FP16_CONVERTERS:  # onnxruntime ships one; onnxconverter_common is the fallback
        try:
            float16 = __import__(name, fromlist=["convert_float_to_float16"])
            break
        except ImportError:
            continue
    if float16 is None:
        raise BackendMissing("No float16 converter is installed (looked for "
                             f"{' and '.join(_FP16_CONVERTERS)}).",
                             "Install onnxruntime (it ships one) or onnxconverter-common.")
    # keep_io_types: callers keep feeding and reading float32; Casts sit at the boundary instead.
    converted = float16.convert_float_to_float16(onnx.load(str(model)), keep_io_types=True,
                                                 node_block_list=excluded or None)
    if large:
        onnx.save(converted, str(out), save_as_external_data=True, location=f"{out.name}.data")
    else:
        onnx.save(converted, str(out))
    return {"format": "float16", "activation_type": "float16", "weight_type": "float16", "io_type": "float32",
            "converter": float16.__name__}


def _dynamic(model: Path, out: Path, proto: Any, per_channel: bool, excluded: list[str],
             large: bool) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # ConvInteger on onnxruntime's CPU has no int8-weight kernel: a Conv to quantize forces uint8.
    has_conv = any(n.op_type == "Conv" and n.name not in excluded for n in proto.graph.node)
    weight_type = QuantType.QUInt8 if has_conv else QuantType.QInt8
    # U8S8 kernels saturate on x86 without VNNI unless weights are 7-bit; U8U8 ones never do.
    reduce_range = not has_conv
    quantize_dynamic(model, out, weight_type=weight_type, per_channel=per_channel, reduce_range=reduce_range,
                     nodes_to_exclude=excluded or None, use_external_data_format=large)
    why = ("uint8 weights: onnxruntime's CPU ConvInteger has no int8-weight kernel" if has_conv else
           "7-bit weights: onnxruntime's U8S8 kernels saturate on x86 CPUs without VNNI otherwise")
    return {"format": "QOperator", "activation_type": "uint8", "weight_type": _type_name(weight_type),
            "per_channel": per_channel, "reduce_range": reduce_range, "note": why}


def _int8(model: Path, out: Path, feeds: list[dict[str, Any]], per_channel: bool, excluded: list[str],
          large: bool) -> dict[str, Any]:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rewind()

        def get_next(self) -> dict[str, Any] | None:
            return next(self._items, None)

        def rewind(self) -> None:
            self._items = iter(feeds)

    quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=per_channel, reduce_range=True,  # see the module docstring
                    nodes_to_exclude=excluded or None, use_external_data_format=large,
                    # Spelled out (these are today's defaults) because they decide the saturation bound.
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    return {"format": "QDQ", "activation_type": "uint8", "weight_type": "int8", "per_channel": per_channel,
            "reduce_range": True, "calibration_samples": len(feeds), "calibration_method": "MinMax",
            "note": "7-bit weights: onnxruntime's U8S8 kernels saturate on x86 CPUs without VNNI otherwise"}


def _calibration_feeds(onnx: Any, proto: Any, calibration: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The samples as feed dicts onnxruntime accepts: every model input present, in its dtype."""
    import numpy as np

    samples = list(calibration or ())
    if not samples:
        raise BadInput("int8 quantization needs calibration data and none was given.",
                       "Pass a few dozen representative input samples, or use mode 'dynamic'.")
    initializers = {t.name for t in proto.graph.initializer}
    inputs = {i.name: i.type.tensor_type.elem_type for i in proto.graph.input if i.name not in initializers}
    feeds = []
    for index, sample in enumerate(samples):
        missing, unknown = sorted(set(inputs) - set(sample)), sorted(set(sample) - set(inputs))
        if missing or unknown:
            raise BadInput(f"Calibration sample {index} does not match the model's inputs "
                           f"(missing: {missing or 'none'}; not model inputs: {unknown or 'none'}).",
                           f"Key each sample by the input names: {sorted(inputs)}.")
        # onnxruntime rejects e.g. float64 for a float input; cast to what the model declares.
        feeds.append({name: np.asarray(value, dtype=onnx.helper.tensor_dtype_to_np_dtype(inputs[name]))
                      if inputs[name] else np.asarray(value) for name, value in sample.items()})
    return feeds


def _check_node_names(proto: Any, excluded: list[str]) -> None:
    # A misspelt name would otherwise be ignored silently and the node quantized anyway.
    names = {n.name for n in proto.graph.node}
    unknown = [name for name in excluded if name not in names]
    if unknown:
        sample = ", ".join(sorted(n for n in names if n)[:8])
        raise BadInput(f"No node named {', '.join(map(repr, unknown))} in the model.",
                       f"Node names look like: {sample}" if sample else "The model's nodes have no names.")


def _check_loads(ort: Any, path: Path, mode: str) -> None:
    # Default options on purpose: that is what a user running the file gets (fusions included).
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        cause = _cause(exc)
        raise ConversionFailed(f"The {mode} model onnxruntime's tools wrote does not load in onnxruntime: {cause}",
                               "Exclude the node it names (exclude_nodes), or use another mode." if "node" in cause
                               else None) from None


def _cause(exc: BaseException) -> str:
    text = re.sub(r"[ \t]{2,}", " ", _CXX_NOISE.sub(" ", str(exc)))
    return error_summary(Exception(text)) if text.strip() else type(exc).__name__


def _hint(log: str) -> str | None:
    # The quantizer's last warning often names the real cause (e.g. shape inference failing).
    lines = [ln.strip() for ln in log.splitlines() if ln.strip() and "pre-process" not in ln]
    return f"onnxruntime said: {lines[-1][:200]}" if lines else None


def _is_large(model: Path, proto: Any) -> bool:
    external = any(t.data_location == 1 for t in proto.graph.initializer)  # TensorProto.EXTERNAL
    return external or model.stat().st_size > _EXTERNAL_DATA_BYTES


def _size(path: Path, proto: Any) -> int:
    """Bytes of the model file plus any external-data files it sits with."""
    total = path.stat().st_size
    companion = path.with_name(f"{path.name}.data")
    if companion.exists():
        total += companion.stat().st_size
    if proto is not None:  # the input's external data may have any name: ask the graph
        locations = {entry.value for t in proto.graph.initializer for entry in t.external_data
                     if entry.key == "location"}
        total += sum((path.parent / loc).stat().st_size for loc in locations
                     if (path.parent / loc).exists() and path.parent / loc != companion)
    return total


def _type_name(quant_type: Any) -> str:
    return {"QInt8": "int8", "QUInt8": "uint8"}.get(quant_type.name, quant_type.name)


__all__ = ["MODES", "quantize_onnx"]


def quantize_artifact(artifact: Artifact, workdir: Path, ctx: EdgeContext) -> Artifact:
    """The `--quantize` step of the targets that run ONNX (onnx, ort): the float ONNX artifact,
    quantized by `quantize_onnx`; int8 calibrates on the user's samples, mapped to the artifact's inputs."""
    from ..validators.validate import to_artifact_feeds

    if artifact.quantization != "none":  # already quantized (made from a quantized TFLite file): keep it
        return artifact
    out = workdir / "model.quantized.onnx"
    calibration = [to_artifact_feeds(artifact, feeds) for feeds in ctx.calibration] if ctx.quantize == "int8" else None
    info = quantize_onnx(artifact.path, out, ctx.quantize, calibration)
    data = out.with_name(out.name + ".data")
    return artifact.with_(path=out, quantization=ctx.quantize, companions=(data,) if data.exists() else (),
                          extra={**artifact.extra, "quantizer": info,
                                 "float_artifact": {"path": str(artifact.path), "format": "onnx"}})
