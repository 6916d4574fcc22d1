"""ExecuTorch's Python runtime as a runner server: the JSON-lines protocol of
modelport/toolchains/runner.py (load, run, time). Standalone: imports nothing from modelport.
Run inside the executorch toolchain: `python -I serve_pte.py`, requests on stdin, answers on stdout.
`python -I serve_pte.py request.json result.json` (the file protocol of toolchains.run) describes
a .pte: {"pte": path} -> methods, I/O and delegates.

Inputs and outputs are positional in a .pte: they are named input_0.., output_0.. here.
"""

import json
import os
import sys
import time
import traceback
from pathlib import Path

# executorch.exir.scalar_type.ScalarType value -> numpy dtype name (None: no numpy equivalent)
_NUMPY = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
          7: "float64", 11: "bool", 15: None, 27: "uint16", 28: "uint32", 29: "uint64"}


_OTHER = {5: "float16", 8: "complex32", 9: "complex64", 10: "complex128", 12: "qint8", 13: "quint8",
          14: "qint32", 15: "bfloat16", 16: "quint4x2", 17: "quint2x4", 22: "bits16", 23: "float8_e5m2",
          24: "float8_e4m3fn", 25: "float8_e5m2fnuz", 26: "float8_e4m3fnuz"}


def _dtype_name(code: int) -> str:
    return _NUMPY.get(code) or _OTHER.get(code) or f"scalar_type_{code}"


def _tensor_meta(info) -> dict:
    return {"sizes": list(info.sizes()), "dtype": _dtype_name(info.dtype()), "nbytes": info.nbytes()}


def _runtime():
    """(load_program(path), backend names). Fast path: the pybindings extension itself, which
    `executorch.runtime` wraps; importing executorch.runtime also imports executorch.exir (and
    torchao, torch._dynamo, torch._inductor), several seconds more for nothing the runtime needs."""
    import torch  # noqa: F401 - loads libtorch, which the extension links against

    try:
        from executorch.extension.pybindings import _C

        def load(path):
            return _C._load_program(str(path), program_verification=_C.Verification.InternalConsistency)

        return load, _C._get_registered_backend_names()
    except ImportError:  # layout changed: the public API (slower import)
        from executorch.runtime import Runtime

        runtime = Runtime.get()
        return (lambda path: runtime.load_program(str(path))._program), runtime.backend_registry.registered_backend_names


def _method_names(program) -> list:
    return [program.get_method_name(i) for i in range(program.num_methods())]


def _flatbuffer_plans(path: str) -> list:
    """[(method, [delegate ids], [non-delegated operator names])] read straight from the .pte's
    flatbuffer (schema executorch/exir/_serialize/program.fbs: Program.execution_plan is field 1,
    ExecutionPlan.name 0 / operators 6 / delegates 7, BackendDelegate.id 0, Operator.name 0 /
    overload 1). Same answer as executorch.exir._serialize._deserialize_pte_binary, without
    importing executorch.exir."""
    import flatbuffers
    from flatbuffers.table import Table

    buf = bytearray(Path(path).read_bytes())
    if buf[4:8][:2] != b"ET":
        raise ValueError(f"'{path}' is not an ExecuTorch program (file identifier {bytes(buf[4:8])!r})")
    root = Table(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))

    def field(table, slot):
        return table.Offset(4 + 2 * slot)

    def string(table, slot):
        o = field(table, slot)
        return table.String(o + table.Pos).decode() if o else None

    def tables(table, slot):
        o = field(table, slot)
        if not o:
            return []
        start = table.Vector(o)
        return [Table(buf, table.Indirect(start + 4 * j)) for j in range(table.VectorLen(o))]

    plans = []
    for plan in tables(root, 1):
        ops = sorted({string(op, 0) + (f".{string(op, 1)}" if string(op, 1) else "") for op in tables(plan, 6)})
        plans.append((string(plan, 0), [string(d, 0) for d in tables(plan, 7)], ops))
    return plans


def describe(request: dict) -> dict:
    load, backends = _runtime()
    program = load(request["pte"])
    methods = {}
    for name in sorted(_method_names(program)):
        meta = program.method_meta(name)  # MethodMeta, without loading (initialising) the method
        methods[name] = {
            "inputs": [_tensor_meta(meta.input_tensor_meta(i)) for i in range(meta.num_inputs())],
            "outputs": [_tensor_meta(meta.output_tensor_meta(i)) for i in range(meta.num_outputs())],
        }
    delegates = []
    for name, ids, ops in _flatbuffer_plans(request["pte"]):  # delegates are not in MethodMeta
        entry = methods.setdefault(name, {})
        entry["delegates"], entry["ops_outside_delegates"] = ids, ops
        delegates.extend(ids)
    return {"ok": True, "pte": request["pte"], "methods": methods, "delegates": delegates,
            "backends_available": backends}



def main() -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the runtime prints goes to the log, never into the answers
    state: dict = {}
    for line in sys.stdin:
        try:
            answer = handle(json.loads(line), state)
        except Exception as exc:  # noqa: BLE001 - every failure is an answer
            traceback.print_exc()
            answer = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).strip()[:400]}"}
        answers.write(json.dumps(answer) + "\n")


def _specs(meta, count, tensor_meta, prefix: str) -> list:
    return [{"name": f"{prefix}_{i}", "shape": list(tensor_meta(i).sizes()), "dtype": _dtype_name(tensor_meta(i).dtype())}
            for i in range(count)]


def handle(request: dict, state: dict) -> dict:
    import numpy as np
    import torch

    command = request["cmd"]
    if command == "load":
        if request.get("threads"):
            torch.set_num_threads(int(request["threads"]))
        load, _ = _runtime()
        program = load(request["path"])
        if "forward" not in _method_names(program):
            return {"ok": False, "error": f"the .pte has no method 'forward' (it has {_method_names(program)})"}
        method = program.load_method("forward")
        meta = method.method_meta()
        state.update(program=program, method=method, meta=meta)
        from importlib.metadata import version

        return {"ok": True, "runtime": f"executorch {version('executorch')}",
                "inputs": _specs(meta, meta.num_inputs(), meta.input_tensor_meta, "input"),
                "outputs": _specs(meta, meta.num_outputs(), meta.output_tensor_meta, "output")}
    method, meta = state["method"], state["meta"]
    with np.load(request["inputs"], allow_pickle=False) as given:
        inputs = []
        for i in range(meta.num_inputs()):
            array = given[f"input_{i}"]
            want = _NUMPY.get(meta.input_tensor_meta(i).dtype())
            if want is not None and array.dtype != np.dtype(want):
                array = array.astype(want)  # the runtime refuses a dtype mismatch
            inputs.append(torch.from_numpy(np.ascontiguousarray(array)))
    if command == "run":
        outputs = method(inputs)
        np.savez(request["outputs"], **{f"output_{i}": (o.detach().numpy() if isinstance(o, torch.Tensor)
                                                         else np.asarray(o)) for i, o in enumerate(outputs)})
        return {"ok": True}
    if command == "time":
        for _ in range(int(request.get("warmup", 0))):
            method(inputs)
        seconds = []
        for _ in range(int(request["runs"])):
            start = time.perf_counter()
            method(inputs)
            seconds.append(time.perf_counter() - start)
        return {"ok": True, "seconds": seconds}
    return {"ok": False, "error": f"unknown command {command!r}"}


def describe_main(request_path: str, result_path: str) -> None:
    try:
        result = describe(json.loads(Path(request_path).read_text()))
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).strip()[:400]}"}
    Path(result_path).write_text(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 3:
        describe_main(sys.argv[1], sys.argv[2])
    else:
        main()
