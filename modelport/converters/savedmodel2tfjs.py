"""SavedModel -> TF.js graph model with the tensorflowjs converter, in a child process.

Wrapped sharp edges: tensorflowjs imports tensorflow_decision_forests only to register TF-DF ops
(it cannot be installed beside onnx2tf's TF pins), so an empty stand-in is put in its place when
the real one is absent (for the import only); and it fails on oneDNN's fused `_MklLayerNorm`
unless oneDNN rewrites are off, which TensorFlow reads once, at import. So it runs in this
process when this process's TensorFlow was imported with TF_ENABLE_ONEDNN_OPTS=0 (the model
worker imports it so, for onnx2tf: importing TF again in a child cost ~4 s a conversion), else in
a child process that sets it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import traceback
import types
from pathlib import Path

from .._lazy import captured_output, require_installed, tensorflow_loaded_with
from ..artifact import Artifact, IOMapping, TensorLink
from ..errors import ConversionFailed
from ..sources.tensorflow import signature_of
from ..formats.base import Edge, Requirement
from .base import EdgeContext


def convert(saved: Artifact, workdir: Path, ctx: EdgeContext) -> Artifact:
    require_installed("tensorflowjs", purpose="to convert SavedModels to TF.js")
    out = workdir / "tfjs"
    signature = signature_of(saved, ctx.source, ctx.signature)
    names_file = workdir / "tfjs-input-names.json"
    if tensorflow_loaded_with("TF_ENABLE_ONEDNN_OPTS", "0"):
        with captured_output(ctx.verbose) as log:
            try:
                _main(str(saved.path), str(out), signature, str(names_file))
                failed, text = False, ""
            except Exception as exc:  # the converter raises many types; all mean "it failed"
                failed, text = True, "".join(traceback.format_exception_only(exc))
        text = log.getvalue() + text
    else:
        ctx.count("savedmodel2tfjs.child")  # (the slower way: the report says which ran)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "CUDA_VISIBLE_DEVICES": "-1"}
        process = subprocess.run([sys.executable, "-m", "modelport.converters.savedmodel2tfjs", str(saved.path),
                                  str(out), signature, str(names_file)], capture_output=True, text=True, env=env,
                                 stdin=subprocess.DEVNULL)
        if ctx.verbose:
            sys.stderr.write(process.stdout + process.stderr)
        failed, text = process.returncode != 0, process.stderr
    if failed or not (out / "model.json").is_file():
        raise ConversionFailed(f"tensorflowjs could not convert the SavedModel: {_reason(text)}.",
                               "Run with --verbose for the converter's log.")
    io = IOMapping(tuple(TensorLink(name, s.name) for s, name in zip(saved.inputs, _input_names(saved, out, names_file))),
                   tuple(TensorLink(s.name, s.name) for s in saved.outputs))
    return Artifact(path=out, format="tfjs", inputs=saved.inputs, outputs=saved.outputs, io=saved.io.then(io),
                    path_taken=(*saved.path_taken, "tfjs"), layout=saved.layout,
                    extra={"converter": "tensorflowjs", "signature": signature})


def _input_names(saved: Artifact, out: Path, names_file: Path) -> list[str]:
    """The TF.js name of each SavedModel input. tensorflowjs keys a graph model's signature by the
    SavedModel's keys for one input but by placeholder tensor names for several (seen: key 'X' for
    placeholder 'x:0'); the runner names inputs by that key without ':0'."""
    tensor_of = json.loads(names_file.read_text()) if names_file.is_file() else {}
    signature = json.loads((out / "model.json").read_text()).get("signature", {}).get("inputs", {})
    keys = {key.removesuffix(":0"): str(entry.get("name", "")).removesuffix(":0") for key, entry in signature.items()}
    names = []
    for spec in saved.inputs:
        by_tensor = [key for key, tensor in keys.items() if tensor == tensor_of.get(spec.name)]
        names.append(spec.name if spec.name in keys or len(by_tensor) != 1 else by_tensor[0])
    return names


def _reason(log: str) -> str:
    unsupported = re.findall(r"Unsupported Ops in the model[^\n]*\n?([^\n]*)", log)
    if unsupported:
        return f"ops TF.js does not support: {unsupported[-1].strip()[:200]}"
    errors = re.findall(r"^(\w+(?:Error|Exception)): (.*)$", log, flags=re.MULTILINE)
    if errors:
        return f"{errors[-1][0]}: {errors[-1][1][:250]}"
    lines = [ln for ln in log.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def _main(saved_model_dir: str, output_dir: str, signature: str, names_file: str) -> None:
    tfjs_convert = _import_converter()

    tfjs_convert.convert_tf_saved_model(saved_model_dir, output_dir, signature_def=signature,
                                        use_structured_outputs_names=True)
    import tensorflow as tf

    # TF.js names a graph model's inputs by the concrete function's argument names
    specs = tf.saved_model.load(saved_model_dir).signatures[signature].structured_input_signature[1]
    Path(names_file).write_text(json.dumps({key: spec.name or key for key, spec in specs.items()}))



def _import_converter() -> types.ModuleType:
    """tensorflowjs' SavedModel converter; a TF-DF stand-in only while it imports (it stays in
    tensorflowjs' own namespace, never in sys.modules for others to find)."""
    try:
        import tensorflow_decision_forests  # noqa: F401
        stand_in = False
    except ImportError:
        sys.modules["tensorflow_decision_forests"] = types.ModuleType("tensorflow_decision_forests")
        stand_in = True
    try:
        from tensorflowjs.converters import tf_saved_model_conversion_v2
    finally:
        if stand_in:
            sys.modules.pop("tensorflow_decision_forests", None)
    return tf_saved_model_conversion_v2


EDGES = (Edge("savedmodel2tfjs", "savedmodel", "tfjs", "modelport.converters.savedmodel2tfjs:convert",
              Requirement("tfjs", modules=("tensorflowjs", "tensorflow"))),)


if __name__ == "__main__":
    _main(*sys.argv[1:5])
