"""A call in the model worker leaves the worker as it found it: one worker converts model after model.

Different conversions run in this process through the worker's own per-call code, one after the other; after each, the environment,
sys.path, the module table (no stand-in modules, no user entry modules), the standard streams and
their file descriptors, warning filters and torch's thread count are exactly as before."""

from __future__ import annotations

import os
import sys
import warnings

import pytest

from modelport import api
from modelport.worker import run_call


def _state() -> dict:
    import torch

    fds = {fd: (os.fstat(fd).st_ino, os.fstat(fd).st_dev) for fd in (0, 1, 2)}
    stand_ins = sorted(name for name, module in sys.modules.items()
                       if module is not None and name.split(".")[0] == "torchvision")
    entries = sorted(name for name in sys.modules if name.startswith("modelport_entry_"))
    return {"environ": dict(os.environ), "path": list(sys.path), "cwd": os.getcwd(), "fds": fds,
            "streams": (id(sys.stdout), id(sys.stderr)), "warnings": list(warnings.filters),
            "torch_threads": torch.get_num_threads(), "torch_interop": torch.get_num_interop_threads(),
            "stand_ins": stand_ins, "entry_modules": entries}


@pytest.mark.slow
def test_two_conversions_in_one_process_leave_no_trace(models, entry_file, tmp_path):
    import torch  # imported by the first conversion anyway; read the state with it loaded

    torch.set_num_threads(1)
    before = _state()
    runs = [
        # torch.onnx + trace (torch thread count pinned while running), then onnx2tf (PATH for
        # onnxsim) and onnx2torch (torchvision stand-in), then a user's entry point module.
        (str(models["cnn_pt2"]), ("onnx", "torchscript")),
        (str(models["mlp_onnx"]), ("tflite", "torchscript")),
        (f"{entry_file}:build", ("onnx",)),
        # onnx2tf again, now imported: it must still work with the environment put back.
        (str(models["cnn_pt2"]), ("tflite",)),
    ]
    for index, (source, targets) in enumerate(runs):
        options = api.ConvertOptions(targets=targets, output_dir=tmp_path / str(index), threads=2, latency_runs=2,
                                     latency_warmup=1)
        result = run_call("modelport.pipeline:convert", (source, options), {}, None, None, dict(os.environ))
        assert [t.status for t in result.targets] == ["passed"] * len(targets), [t.error for t in result.targets]
        after = _state()
        changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
        if "environ" in changed:
            old, new = changed.pop("environ")
            changed["environ"] = {k: (old.get(k), new.get(k)) for k in set(old) | set(new) if old.get(k) != new.get(k)}
        assert changed == {}, f"after converting {source}: {changed}"
