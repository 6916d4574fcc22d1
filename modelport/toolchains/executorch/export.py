"""torch.export program (.pt2) -> ExecuTorch .pte with the XNNPACK delegate. Standalone (imports
nothing from modelport); runs inside the executorch toolchain:
`python -I export.py request.json result.json`.

request: {"model_pt2": a .pt2 written by torch.export.save, "output": the .pte to write,
          "quantize": "none" | "int8", "calibration": an .npz of input samples or null,
          "per_channel": true (int8 only, default true)}
  The .npz holds one array per user input, named input_0, input_1, ... (in input order; the
  program's own input names and numpy's arr_0.. are accepted too); an array with one more axis
  than the input gives several samples along that leading axis. int8 without calibration is refused.
result: {"ok": true, "pte": path, "delegates": ["XnnpackBackend", ...], "methods": ["forward"],
         "ops_outside_delegates": {"forward": [...]}, "versions": {...}, "seconds": float}
     or {"ok": false, "error": "...", "hint": "..."}
"""

import contextlib
import io
import json
import sys
import time
import traceback
from pathlib import Path


def main(request_path: str, result_path: str) -> None:
    result: dict = {"ok": False, "error": "export.py did not finish"}
    printed = io.StringIO()
    try:
        request = json.loads(Path(request_path).read_text())
        with contextlib.redirect_stdout(printed):
            result = export(request)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a result
        if isinstance(exc, KeyboardInterrupt):
            raise
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).strip()[:600]}",
                  "hint": "The log (stdout/stderr of export.py) has the traceback."}
    finally:
        sys.stdout.write(printed.getvalue())
    Path(result_path).write_text(json.dumps(result, indent=2))


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("executorch", "torch", "torchao", "numpy", "flatbuffers"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _user_inputs(ep):
    """[(name, FakeTensor-like meta)] of the program's user inputs, in call order."""
    from torch.export.graph_signature import InputKind

    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    found = []
    for spec in ep.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            name = spec.arg.name
            found.append((name, placeholders[name].meta.get("val")))
    return found


def _calibration_samples(path: str, inputs) -> list:
    """List of tuples of torch tensors, one tuple per sample."""
    import numpy as np
    import torch

    data = np.load(path, allow_pickle=False)
    keys = list(data.keys())
    arrays = []
    for index, (name, meta) in enumerate(inputs):
        for key in (f"input_{index}", name, f"arr_{index}"):
            if key in keys:
                arrays.append(data[key])
                break
        else:
            raise ValueError(f"calibration '{path}' has arrays {keys}; expected input_{index} "
                             f"(the program's input '{name}')")
    per_input = []
    for (name, meta), array in zip(inputs, arrays):
        rank = len(meta.shape) if meta is not None and hasattr(meta, "shape") else array.ndim
        if array.ndim == rank:
            stack = [array]
        elif array.ndim == rank + 1:
            stack = list(array)
        else:
            raise ValueError(f"calibration array for input '{name}' has shape {array.shape}; the input has "
                             f"rank {rank} (give rank {rank}, or rank {rank + 1} for a stack of samples)")
        dtype = getattr(meta, "dtype", None)
        per_input.append([torch.from_numpy(np.ascontiguousarray(a)).to(dtype) if dtype is not None
                          else torch.from_numpy(np.ascontiguousarray(a)) for a in stack])
    for (name, meta), stack in zip(inputs, per_input):
        want = list(getattr(meta, "shape", []))
        for sample in stack:
            got = list(sample.shape)
            if len(got) != len(want) or any(isinstance(w, int) and w != g for w, g in zip(want, got)):
                raise ValueError(f"a calibration sample for input '{name}' has shape {got}; the program takes "
                                 f"{[w if isinstance(w, int) else str(w) for w in want]}")
    counts = {len(s) for s in per_input}
    if len(counts) != 1:
        raise ValueError(f"calibration arrays give different numbers of samples per input: {sorted(counts)}")
    return [tuple(s[i] for s in per_input) for i in range(counts.pop())]


def _dynamic_shapes(ep, inputs):
    """dynamic_shapes for re-exporting the quantized module like the original program: every
    symbolic dimension of a user input becomes a torch.export.Dim with the program's own bounds
    (one Dim per symbol, shared where the inputs share it). None when every shape is static."""
    import math

    import torch
    from torch.export import Dim

    dims, specs, dynamic = {}, [], False
    for name, meta in inputs:
        spec = {}
        for index, size in enumerate(getattr(meta, "shape", [])):
            if isinstance(size, torch.SymInt):
                expr = size.node.expr
                if expr not in dims:
                    bounds = ep.range_constraints.get(expr)
                    low = int(bounds.lower) if bounds is not None and math.isfinite(float(bounds.lower)) else None
                    high = int(bounds.upper) if bounds is not None and math.isfinite(float(bounds.upper)) else None
                    dims[expr] = Dim(f"d{len(dims)}_{name}_{index}", min=low, max=high)
                spec[index] = dims[expr]
                dynamic = True
        specs.append(spec or None)
    return tuple(specs) if dynamic else None


def export(request: dict) -> dict:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    started = time.monotonic()
    quantize = request.get("quantize") or "none"
    if quantize not in ("none", "int8"):
        return {"ok": False, "error": f"quantize must be 'none' or 'int8', not {quantize!r}"}
    ep = torch.export.load(request["model_pt2"])
    inputs = _user_inputs(ep)

    if quantize == "int8":
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        if not request.get("calibration"):
            return {"ok": False, "error": "int8 needs calibration samples (an .npz); none were given",
                    "hint": "Pass calibration: an .npz with input_0.. arrays (leading axis = samples)."}
        samples = _calibration_samples(request["calibration"], inputs)
        quantizer = XNNPACKQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=bool(request.get("per_channel", True))))
        try:
            prepared = prepare_pt2e(ep.module(), quantizer)
        except Exception as exc:  # noqa: BLE001
            return {"ok": False, "error": f"XNNPACKQuantizer could not annotate the program: {type(exc).__name__}: "
                                          f"{str(exc).strip()[:400]}",
                    "hint": "int8 needs the program as torch.export.export returned it; a program after "
                            "run_decompositions() (core ATen) is not matched by the quantizer's patterns."}
        with torch.no_grad():
            for sample in samples:
                prepared(*sample)
        converted = convert_pt2e(prepared)
        # Re-export the quantized GraphModule with the original program's example inputs and
        # dynamic dimensions (the first calibration sample where the .pt2 kept no examples).
        example = ep.example_inputs[0] if getattr(ep, "example_inputs", None) else samples[0]
        ep = torch.export.export(converted, tuple(example), dynamic_shapes=_dynamic_shapes(ep, inputs))

    edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
    manager = edge.to_executorch()
    out = Path(request["output"])
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        manager.write_to_file(f)

    program = manager.executorch_program  # the serialized Program's dataclass, as written
    delegates, methods, outside = [], [], {}
    for plan in program.execution_plan:
        methods.append(plan.name)
        delegates.extend(d.id for d in plan.delegates)
        outside[plan.name] = sorted({op.name + (f".{op.overload}" if op.overload else "")
                                     for op in plan.operators})
    return {"ok": True, "pte": str(out), "bytes": out.stat().st_size, "quantize": quantize,
            "delegates": delegates, "methods": methods, "ops_outside_delegates": outside,
            "versions": _versions(), "seconds": round(time.monotonic() - started, 2)}


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
