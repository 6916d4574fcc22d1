"""ONNX target: checked with onnx.checker, run on onnxruntime (CPU)."""

from __future__ import annotations

from pathlib import Path

from .._lazy import require
from ..errors import BadInput, ConversionFailed
from ..spec import TensorSpec
from .base import Runner


_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16", "tensor(int8)": "int8",
    "tensor(uint8)": "uint8", "tensor(bool)": "bool", "tensor(bfloat16)": "bfloat16",
}


def check_model(path: Path) -> None:
    """onnx.checker with full checks (shape inference too); a failure means the export is broken."""
    onnx = require("onnx", purpose="to check ONNX models")
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # onnx raises several checker/inference error types
        raise ConversionFailed(f"The ONNX model failed onnx.checker: {str(exc).splitlines()[0]}",
                               "Try another --opset, or report the exporter problem.") from exc


def _dims(shape: list) -> tuple:
    return tuple(d if isinstance(d, int) else (d or "?") for d in shape)


class OnnxRuntimeRunner(Runner):
    runtime = "onnxruntime"
    session_config: dict[str, str] = {}  # session config entries a subclass needs (e.g. the ORT format)

    def _load(self) -> None:
        ort = require("onnxruntime", purpose="to run ONNX models")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        for key, value in self.session_config.items():
            options.add_session_config_entry(key, value)
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises Fail/InvalidGraph/NotImplemented
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BadInput(f"onnxruntime cannot load '{self.path.name}': {first}",
                           "The file is corrupt or uses an op this onnxruntime lacks.") from None
        self.inputs = [TensorSpec(i.name, _dims(i.shape), _ORT_TYPES.get(i.type, i.type))
                       for i in self._session.get_inputs()]
        self.outputs = [TensorSpec(o.name, _dims(o.shape), _ORT_TYPES.get(o.type, o.type))
                        for o in self._session.get_outputs()]

    def _run(self, feeds):
        names = [o.name for o in self.outputs]
        return dict(zip(names, self._session.run(names, feeds)))

    def _close(self) -> None:
        del self._session
