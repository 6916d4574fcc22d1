"""ONNX source: checked, described from the graph, reference outputs from onnxruntime."""

from __future__ import annotations

from pathlib import Path

from ..errors import BadInput
from ..formats import Format
from ..spec import merge_specs
from ..targets.onnx import OnnxRuntimeRunner
from .base import LoadOptions, SourceModel


class OnnxModel(SourceModel):
    format = Format.ONNX
    framework = "onnx"
    runtime = "onnxruntime"

    def _load(self) -> None:
        self._runner = OnnxRuntimeRunner(self.path, self.threads).load()
        self.outputs = self._runner.outputs

    def _run(self, feeds):
        return self._runner.run(feeds)

    def _close(self) -> None:
        self._runner.close()


def load(path: Path, fmt: Format, options: LoadOptions) -> OnnxModel:
    from .._lazy import require

    onnx = require("onnx", purpose="to read ONNX models")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError and friends
        raise BadInput(f"'{path}' is not a readable ONNX model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}.",
                       "The file is probably truncated or corrupt; export it again.") from None
    model = OnnxModel(path, handle=None)
    model.load()
    model.inputs = merge_specs(model._runner.inputs, list(options.inputs))
    model.details["opset"] = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    model.details["ir_version"] = proto.ir_version
    return model
