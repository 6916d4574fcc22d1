"""Keras -> SavedModel: Keras 3 `model.export`, tf_keras `tf.saved_model.save`.

This is also the direct Keras -> SavedModel target edge: no trip through ONNX, so no layout change.
"""

from __future__ import annotations

from pathlib import Path

from .._lazy import captured_output, require
from ..artifact import Artifact, IOMapping
from ..errors import ConversionFailed
from ..sources.tensorflow import DEFAULT_SIGNATURE, tf_spec
from ..formats.base import Edge, Requirement
from ..sources.keras import KerasModel
from .base import EdgeContext
from .savedmodel2onnx import link_by_name_or_position


def convert(source: Artifact, workdir: Path, ctx: EdgeContext) -> Artifact:
    model = ctx.source
    assert isinstance(model, KerasModel), "this edge converts a loaded keras source"
    out = workdir / "saved_model"
    with captured_output(ctx.verbose) as log:
        tf = require("tensorflow", purpose="to export Keras models")
        try:
            if model.flavour == "keras":
                model.handle.export(str(out), format="tf_saved_model", verbose=False)
            else:
                tf.saved_model.save(model.handle, str(out))
            loaded = tf.saved_model.load(str(out))
            function = loaded.signatures[DEFAULT_SIGNATURE]
        except Exception as exc:  # export failures surface as many TF error types
            raise ConversionFailed(f"Keras could not export the model as a SavedModel: "
                                   f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__}",
                                   "Run with --verbose for the log.") from None
    del log
    inputs = [tf_spec(n, s) for n, s in sorted(function.structured_input_signature[1].items())]
    outputs = [tf_spec(n, s) for n, s in sorted(function.structured_outputs.items(),
                                                key=lambda item: _output_order(item[0]))]
    io = IOMapping(link_by_name_or_position(list(source.inputs), inputs),
                   link_by_name_or_position(list(source.outputs), outputs))
    return Artifact(path=out, format="savedmodel", inputs=tuple(inputs), outputs=tuple(outputs),
                    io=source.io.then(io), path_taken=(*source.path_taken, "savedmodel"), layout="nhwc",
                    extra={"signature": DEFAULT_SIGNATURE, "converter": f"{model.flavour} export"})


def _output_order(name: str) -> tuple[int, str]:
    """Keras 3 names exported outputs output_0, output_1, ... in model order; keep that order."""
    suffix = name.rpartition("_")[2]
    return (int(suffix), name) if suffix.isdigit() else (1 << 30, name)


EDGES = (Edge("keras2savedmodel", "keras", "savedmodel", "modelport.converters.keras2savedmodel:convert",
              Requirement("tf", modules=("tensorflow",))),)
