"""ONNX source: checked, described from the graph, reference outputs from onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifact import Artifact
from ..errors import BadInput, first_line
from ..spec import TensorSpec, merge_specs
from ..targets.onnx import OnnxRuntimeRunner, external_data_files
from .base import LoadOptions, SourceModel


class OnnxModel(SourceModel):
    format = "onnx"
    framework = "onnx"
    runtime = "onnxruntime"
    data_files: tuple[Path, ...] = ()  # its external data files, checked to lie inside its folder

    def _load(self) -> None:
        self._runner = OnnxRuntimeRunner(self.path, self.threads).load()
        self.outputs = self._runner.outputs

    def _run(self, feeds):
        return self._runner.run(feeds)

    def _close(self) -> None:
        self._runner.close()

    def artifact(self) -> Artifact:
        # An ONNX target made from this file carries its external data beside it.
        return super().artifact().with_(companions=self.data_files)

    def summary(self) -> dict:
        return {"parameters": parameter_count(self.handle), "ops": op_counts(self.handle),
                "opset": self.details.get("opset"), "ir_version": self.details.get("ir_version"),
                "producer": self.details.get("producer")}


def load(path: Path, fmt: str, options: LoadOptions) -> OnnxModel:
    from .._lazy import require

    onnx = require("onnx", purpose="to read ONNX models")
    data_files = external_data_files(path)  # checked before anything follows their locations
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError and friends
        raise BadInput(f"'{path}' is not a readable ONNX model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}.",
                       "The file is probably truncated or corrupt; export it again.") from None
    try:
        onnx.checker.check_model(str(path), full_check=True)  # by path: external data and >2 GB work
    except Exception as exc:  # ValidationError, InferenceError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"'{path}' is not a valid ONNX model: {first[:300]}",
                       "Export it again; onnx.checker must accept it.") from None
    model = OnnxModel(path, handle=proto)
    model.data_files = data_files
    model.load()
    model.inputs = merge_specs(model._runner.inputs, list(options.inputs))
    model.details["opset"] = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    model.details["ir_version"] = proto.ir_version
    model.details["producer"] = f"{proto.producer_name} {proto.producer_version}".strip()
    return model


def describe(source: str) -> dict[str, Any]:
    """What `inspect` shows, from the graph alone: no session is made, nothing is folded or run (a
    tiny hostile graph can ask a runtime for gigabytes)."""
    from .._lazy import require
    from ..artifact import sha256_of, size_of

    onnx = require("onnx", "onnx", purpose="to read ONNX models")
    path = Path(source)
    external_data_files(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(proto)  # structure only: no shape inference, no data read
    except Exception as exc:  # DecodeError, ValidationError
        raise BadInput(f"'{path}' is not a valid ONNX model: {first_line(exc)}",
                       "Export it again; onnx.checker must accept it.") from None
    inputs, outputs = graph_io(proto)
    return {"path": source, "format": "onnx", "framework": "onnx",
            "evidence": "protobuf starting with ir_version (ONNX)", "size_bytes": size_of(path),
            "sha256": sha256_of(path), "inputs": [s.to_json() for s in inputs],
            "outputs": [s.to_json() for s in outputs], "parameters": parameter_count(proto),
            "ops": op_counts(proto), "opset": {o.domain or "ai.onnx": o.version for o in proto.opset_import},
            "ir_version": proto.ir_version, "producer": f"{proto.producer_name} {proto.producer_version}".strip()}


def graph_io(proto: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs (initializers excluded) and outputs as the graph declares them; a dim without a size
    or a name is '?'."""
    from onnx import helper

    initializers = {i.name for i in proto.graph.initializer}

    def spec(value: Any) -> TensorSpec:
        tensor = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim)
        try:
            dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else "?"
        except (KeyError, ValueError):
            dtype = "?"
        return TensorSpec(value.name, shape if tensor.HasField("shape") else None, dtype)

    return ([spec(v) for v in proto.graph.input if v.name not in initializers],
            [spec(v) for v in proto.graph.output])


def op_counts(proto: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def parameter_count(proto: Any) -> int:
    import numpy as np

    return int(sum(np.prod(t.dims) if t.dims else 1 for t in proto.graph.initializer))
