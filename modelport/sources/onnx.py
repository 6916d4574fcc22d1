"""ONNX source: checked, described from the graph, reference outputs from onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import BadInput
from ..spec import merge_specs
from ..targets.onnx import OnnxRuntimeRunner
from .base import LoadOptions, SourceModel


class OnnxModel(SourceModel):
    format = "onnx"
    framework = "onnx"
    runtime = "onnxruntime"

    def _load(self) -> None:
        self._runner = OnnxRuntimeRunner(self.path, self.threads).load()
        self.outputs = self._runner.outputs

    def _run(self, feeds):
        return self._runner.run(feeds)

    def _close(self) -> None:
        self._runner.close()

    def summary(self) -> dict:
        return {"parameters": parameter_count(self.handle), "ops": op_counts(self.handle),
                "opset": self.details.get("opset"), "ir_version": self.details.get("ir_version"),
                "producer": self.details.get("producer")}


def load(path: Path, fmt: str, options: LoadOptions) -> OnnxModel:
    from .._lazy import require

    onnx = require("onnx", purpose="to read ONNX models")
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
    model.load()
    model.inputs = merge_specs(model._runner.inputs, list(options.inputs))
    model.details["opset"] = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    model.details["ir_version"] = proto.ir_version
    model.details["producer"] = f"{proto.producer_name} {proto.producer_version}".strip()
    return model


def op_counts(proto: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def parameter_count(proto: Any) -> int:
    import numpy as np

    return int(sum(np.prod(t.dims) if t.dims else 1 for t in proto.graph.initializer))
