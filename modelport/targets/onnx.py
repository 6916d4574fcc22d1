"""ONNX target: checked with onnx.checker, run on onnxruntime (CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .._lazy import require
from ..errors import BadInput, ConversionFailed, first_line
from ..safety import is_allocation_failure, over_budget
from ..spec import TensorSpec
from .base import Runner, Tapped

if TYPE_CHECKING:
    import numpy as np


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


def external_data_files(path: Path) -> tuple[Path, ...]:
    """The files an ONNX model's external data lives in, each checked before any runtime opens the
    model: a relative location inside the model's folder (no absolute path, no '..', no symlink
    leading out), a regular file, and offset and length within it. onnxruntime would follow any
    location, so a hostile model could read any file and return its bytes as outputs."""
    import os

    onnx = require("onnx", "onnx", purpose="to read ONNX models")
    from onnx.external_data_helper import _get_all_tensors

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError and friends: the loader reports it
        raise BadInput(f"'{path}' is not a readable ONNX model: {first_line(exc)}.",
                       "The file is probably truncated or corrupt; export it again.") from None
    folder = path.resolve().parent
    files: dict[Path, None] = {}
    for tensor in _get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        where = f"'{path}': tensor '{tensor.name}' keeps its data in '{location}'"
        parts = Path(location).parts
        if not location or Path(location).is_absolute() or ".." in parts or "\\" in location or ":" in location:
            raise BadInput(f"{where}, outside the model's folder.",
                           "External data must be a file beside the model (a relative name, no '..').")
        data = folder / location
        real = Path(os.path.realpath(data))
        if real != folder and folder not in real.parents:
            raise BadInput(f"{where}, which leads outside the model's folder (to '{real}').",
                           "Copy the data file beside the model instead of linking it.")
        if not data.is_file():
            raise BadInput(f"{where}, which is missing or not a regular file.",
                           "Copy the model together with its external data file(s).")
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
        except ValueError:
            raise BadInput(f"{where} at a malformed offset or length.", "Export the model again.") from None
        size = data.stat().st_size
        if offset < 0 or offset > size or (length >= 0 and offset + length > size):
            raise BadInput(f"{where} at bytes {offset}..{offset + max(length, 0)}, beyond its {size} bytes.",
                           "The data file is truncated or belongs to another model; copy both again.")
        files[data] = None
    return tuple(files)


def _dims(shape: list) -> tuple:
    return tuple(d if isinstance(d, int) else (d or "?") for d in shape)


class OnnxRuntimeRunner(Runner):
    runtime = "onnxruntime"
    session_config: dict[str, str] = {}  # session config entries a subclass needs (e.g. the ORT format)
    reads_external_data = True           # an ONNX protobuf may point at data files (other formats may not)

    def _load(self) -> None:
        if self.reads_external_data:
            external_data_files(self.path)  # before onnxruntime follows any location
        ort = require("onnxruntime", purpose="to run ONNX models")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.describe_only:  # constant folding is where a tiny hostile graph asks for gigabytes
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        for key, value in self.session_config.items():
            options.add_session_config_entry(key, value)
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises Fail/InvalidGraph/NotImplemented
            if is_allocation_failure(str(exc)):
                raise over_budget() from None
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BadInput(f"onnxruntime cannot load '{self.path.name}': {first}",
                           "The file is corrupt or uses an op this onnxruntime lacks.") from None
        self.inputs = [TensorSpec(i.name, _dims(i.shape), _ORT_TYPES.get(i.type, i.type))
                       for i in self._session.get_inputs()]
        self.outputs = [TensorSpec(o.name, _dims(o.shape), _ORT_TYPES.get(o.type, o.type))
                        for o in self._session.get_outputs()]

    def _run(self, feeds):
        names = [o.name for o in self.outputs]
        try:
            return dict(zip(names, self._session.run(names, feeds)))
        except Exception as exc:  # onnxruntime's RuntimeException: an allocation past the budget is ours to say
            if is_allocation_failure(str(exc)):
                raise over_budget() from None
            raise

    def tap(self, feeds: dict[str, np.ndarray]) -> list[Tapped]:
        """Every node's outputs, in graph order: a copy of the model with each typed intermediate
        tensor made a graph output, run once."""
        import tempfile

        import onnx
        import onnxruntime as ort

        self.load()
        with tempfile.TemporaryDirectory(prefix="modelport-tap-") as scratch:
            exposed = with_every_tensor_out(self.path, Path(scratch) / "all.onnx")
            session = ort.InferenceSession(str(exposed), providers=["CPUExecutionProvider"])
            graph = onnx.load(str(exposed), load_external_data=False).graph
        names = [o.name for o in session.get_outputs()]
        values = dict(zip(names, session.run(names, feeds)))
        return [Tapped(name, node.op_type, values[name], node.name) for node in graph.node for name in node.output
                if name in values]

    def _close(self) -> None:
        del self._session


def with_every_tensor_out(model: Path, out: Path) -> Path:
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
