"""TFLite / LiteRT target: run on the LiteRT interpreter (ai-edge-litert), or tflite_runtime
where only that is installed, as on many edge boards.

The interpreter must run in a process that has not imported TensorFlow: there it would pick up
the Flex delegate and run models no device can (see `isolated.py`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import BackendMissing, BadInput
from ..safety import over_budget
from ..spec import TensorSpec, dequantize, quantize
from .base import Runner, Tapped

if TYPE_CHECKING:
    import numpy as np



def interpreter_class() -> type:
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            return importlib.import_module(module).Interpreter
        except ImportError:
            continue
    raise BackendMissing("No TFLite interpreter is installed (ai-edge-litert or tflite_runtime).",
                         "Install it with: pip install 'modelport[tflite]'")


def _np_dtype_name(dtype: Any) -> str:
    import numpy as np

    return np.dtype(dtype).name


class LiteRTRunner(Runner):
    runtime = "litert"

    def _load(self) -> None:
        # LiteRT does not verify its input: a cut or corrupt file is refused here, by a full parse
        # of the flatbuffer, before any interpreter touches it (every command runs through this).
        from ..sources.tflite import read_flatbuffer

        read_flatbuffer(self.path)
        interpreter = interpreter_class()
        try:
            self._interp = interpreter(model_path=str(self.path), num_threads=self.threads or None)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            message = str(exc).strip().splitlines()
            first = next((ln for ln in message if "Flex" in ln or "Select TensorFlow" in ln), message[0] if message else "")
            raise BadInput(f"The LiteRT interpreter cannot load '{self.path.name}': {first}",
                           "A model with Flex (Select TF) ops needs the Flex delegate, which devices rarely have.") from None
        signatures = self._interp.get_signature_list()
        self._signature = next(iter(signatures), None) if len(signatures) == 1 else None
        details_in = self._interp.get_input_details()
        details_out = self._interp.get_output_details()
        if self._signature:
            runner = self._interp.get_signature_runner(self._signature)
            self._runner = runner
            d_in, d_out = runner.get_input_details(), runner.get_output_details()
            self._in_details = dict(d_in)
            self._out_details = dict(d_out)
            in_names, out_names = list(signatures[self._signature]["inputs"]), list(signatures[self._signature]["outputs"])
        else:
            self._in_details = {d["name"]: d for d in details_in}
            self._out_details = {d["name"]: d for d in details_out}
            in_names, out_names = list(self._in_details), list(self._out_details)
        self.inputs = [self._spec(n, self._in_details[n]) for n in in_names]
        self.outputs = [self._spec(n, self._out_details[n]) for n in out_names]

    @staticmethod
    def _spec(name: str, detail: dict) -> TensorSpec:
        sig = detail.get("shape_signature", detail["shape"])
        shape = tuple(int(d) if d >= 0 else "?" for d in sig)
        return TensorSpec(name, shape, _np_dtype_name(detail["dtype"]))

    def quantization(self) -> dict[str, dict]:
        """Scale and zero point of each quantized input and output."""
        self.load()
        found = {}
        for name, detail in {**self._in_details, **self._out_details}.items():
            scale, zero = detail.get("quantization", (0.0, 0))
            if scale:
                found[name] = {"scale": float(scale), "zero_point": int(zero)}
        return found

    def _quantize(self, name: str, value: np.ndarray) -> np.ndarray:
        import numpy as np

        detail = self._in_details[name]
        scale, zero = detail.get("quantization", (0.0, 0))
        dtype = np.dtype(detail["dtype"])
        if scale and np.issubdtype(value.dtype, np.floating) and np.issubdtype(dtype, np.integer):
            return quantize(value, scale, zero, dtype.name)
        return value.astype(dtype, copy=False)

    def _dequantize(self, name: str, value: np.ndarray) -> np.ndarray:
        import numpy as np

        scale, zero = self._out_details[name].get("quantization", (0.0, 0))
        return dequantize(value, scale, zero) if scale and np.issubdtype(value.dtype, np.integer) else value

    def _run(self, feeds):
        try:
            return self._run_allocated(feeds)
        except ValueError as exc:
            # LiteRT's allocate_tensors returns quietly when its arena cannot be allocated; the
            # next access says "unallocated": the model needs more memory than the process has.
            if "unallocated" in str(exc):
                raise over_budget() from None
            raise

    def _run_allocated(self, feeds):
        feeds = {name: self._quantize(name, value) for name, value in feeds.items()}
        if self._signature:
            out = self._runner(**feeds)
        else:
            interp = self._interp
            current = {d["index"]: tuple(d["shape"]) for d in interp.get_input_details()}
            resized = False
            for name, value in feeds.items():
                index = self._in_details[name]["index"]
                if current[index] != value.shape:
                    interp.resize_tensor_input(index, value.shape, strict=False)
                    resized = True
            if resized:
                interp.allocate_tensors()
            for name, value in feeds.items():
                interp.set_tensor(self._in_details[name]["index"], value)
            interp.invoke()
            out = {name: interp.get_tensor(d["index"]) for name, d in self._out_details.items()}
        return {name: self._dequantize(name, value.copy()) for name, value in out.items()}

    def tap(self, feeds: dict[str, np.ndarray]) -> list[Tapped]:
        """Every op's outputs, in execution order, from a second interpreter that keeps all tensors
        (LiteRT's preserve-all-tensors mode: the normal one reuses their memory) and runs LiteRT's
        builtin kernels without the default XNNPACK delegate, which would hide the tensors inside
        the ops it takes over."""
        import numpy as np

        self.load()
        module = importlib.import_module(interpreter_class().__module__)
        resolver = getattr(module, "OpResolverType", None)
        extra = ({"experimental_op_resolver_type": resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES} if resolver else {})
        interp = interpreter_class()(model_path=str(self.path), num_threads=self.threads or None,
                                     experimental_preserve_all_tensors=True, **extra)
        interp.allocate_tensors()
        quantized = {name: self._quantize(name, value) for name, value in feeds.items()}
        if self._signature:
            interp.get_signature_runner(self._signature)(**quantized)
        else:
            for name, value in quantized.items():
                index = self._in_details[name]["index"]
                interp.resize_tensor_input(index, value.shape, strict=False)
            interp.allocate_tensors()
            for name, value in quantized.items():
                interp.set_tensor(self._in_details[name]["index"], value)
            interp.invoke()
        details = {d["index"]: d for d in interp.get_tensor_details()}
        # The model's outputs go by the names this runner gives them everywhere (signature keys).
        named = {int(d["index"]): name for name, d in self._out_details.items()}
        tapped = []
        for op in interp._get_ops_details():  # noqa: SLF001 - LiteRT's only list of ops in execution order
            for index in op["outputs"]:
                detail = details.get(int(index))
                if detail is None:
                    continue
                value = np.array(interp.get_tensor(int(index)))
                params = detail.get("quantization_parameters") or {}
                scales, zeros = list(params.get("scales", ())), list(params.get("zero_points", ()))
                if len(scales) == 1 and np.issubdtype(value.dtype, np.integer):
                    value = dequantize(value, float(scales[0]), int(zeros[0]) if zeros else 0)
                tapped.append(Tapped(named.get(int(index), detail["name"]), str(op["op_name"]), value))
        return tapped

    def _close(self) -> None:
        self._runner = None
        self._interp = None
