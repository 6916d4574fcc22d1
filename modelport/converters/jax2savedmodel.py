"""JAX function -> SavedModel with jax2tf; the savedmodel -> onnx edge (tf2onnx) takes it on.

`jax2tf.convert(..., native_serialization=False, enable_xla=False)`: native serialization would
wrap the function in one XlaCallModule op, and enable_xla=True emits XLA ops (XlaDotV2,
XlaConv...) that tf2onnx writes into ONNX files onnxruntime refuses. Plain TF ops convert.
Both settings are deprecated in JAX (it warns) but work in the tested 0.6 line.
with_gradient stays True: with False, jax2tf wraps every output in a PreventGradient op that
tf2onnx copies into the ONNX file as is ("No Op registered for PreventGradient"); the custom
gradient it adds instead is not saved (experimental_custom_gradients=False).

Parameter arrays become `tf.Variable`s, not constants in the graph: a GraphDef cannot exceed
2 GB, and tf2onnx freezes variables into initializers anyway. Named dimensions of `--input`
become `None` in the signature and symbolic dims for jax2tf, so they stay dynamic.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from .._lazy import captured_output, require
from ..artifact import Artifact, IOMapping, TensorLink
from ..errors import ConversionFailed
from ..spec import TensorSpec
from ..formats.base import Edge, Requirement
from .base import EdgeContext

SIGNATURE = "serving_default"


def signature_name(name: str, taken: set[str]) -> str:
    """A name TF accepts for a signature tensor (op-name rules: no leading '_', no ':' or spaces)."""
    clean = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)
    if not re.match(r"[A-Za-z]", clean):
        clean = f"t{clean}"
    while clean in taken:
        clean += "_"
    taken.add(clean)
    return clean


def polymorphic_shape(spec: TensorSpec) -> str | None:
    """jax2tf's spec for an input with named dims, e.g. "(batch, 4)"; None when all static."""
    if spec.shape is None or not any(isinstance(d, str) for d in spec.shape):
        return None
    return "(" + ", ".join(str(d) for d in spec.shape) + ("," if len(spec.shape) == 1 else "") + ")"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _hint(exc: BaseException) -> str:
    text = str(exc)
    if "enable_xla" in text:
        return ("That JAX operation has only an XLA form, which ONNX runtimes refuse; rewrite it with other "
                "operations, or export the function to ONNX with another tool and pass the .onnx.")
    if any(word in text for word in ("polymorphic", "symbolic", "dimension variable")):
        return "Give fixed sizes in --input instead of named dimensions."
    return "Run with --verbose for the full log."


def convert(source: Artifact, workdir: Path, ctx: EdgeContext) -> Artifact:
    tf = require("tensorflow", purpose="to convert JAX functions (jax2tf)")
    jax = require("jax", purpose="to convert JAX functions")
    jax2tf = require("jax.experimental.jax2tf", purpose="to convert JAX functions")
    np = require("numpy")
    from ..sources.jax import JaxModel, BoundFunction, jax_dtype

    model = ctx.source
    assert isinstance(model, JaxModel), "this edge converts a loaded jax source"
    bound: BoundFunction = model.handle
    inputs, outputs = list(source.inputs), list(source.outputs)
    taken: set[str] = set()
    in_names = [signature_name(s.name, taken) for s in inputs]
    taken = set()
    out_names = [signature_name(s.name, taken) for s in outputs]

    def flat(arrays: list[Any], *xs: Any) -> list[Any]:
        return jax.tree_util.tree_leaves(bound.call(arrays, *xs))

    out = workdir / "saved_model"
    with captured_output(ctx.verbose), warnings.catch_warnings():
        if not ctx.verbose:
            warnings.simplefilter("ignore")  # jax2tf's deprecation warnings for the settings above
        try:
            converted = jax2tf.convert(flat, native_serialization=False, enable_xla=False, with_gradient=True,
                                       polymorphic_shapes=[None, *(polymorphic_shape(s) for s in inputs)])
            module = tf.Module()
            module.params = [tf.Variable(np.asarray(a), trainable=False, name=f"param_{i}")
                             for i, a in enumerate(bound.arrays)]
            # A loaded jax source has every input shape; None would be TF's "unknown rank".
            signature = [tf.TensorSpec(None if s.shape is None else [None if isinstance(d, str) else d
                                                                       for d in s.shape],
                                       tf.as_dtype(s.dtype), name=name) for s, name in zip(inputs, in_names)]

            def serve(*xs: Any) -> dict[str, Any]:
                # The signature keeps the user's dtypes (e.g. int64 ids); JAX without x64 computes in 32 bits.
                cast = [x if x.dtype == tf.as_dtype(jax_dtype(s.dtype)) else tf.cast(x, jax_dtype(s.dtype))
                        for x, s in zip(xs, inputs)]
                return dict(zip(out_names, converted(module.params, *cast)))

            module.serve = tf.function(serve, input_signature=signature, autograph=False)
            # No gradients are needed downstream: do not trace the VJP into the SavedModel.
            tf.saved_model.save(module, str(out), signatures={SIGNATURE: module.serve.get_concrete_function()},
                                options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
        except Exception as exc:  # jax2tf raises NotImplementedError, ValueError, TypeError...
            raise ConversionFailed(f"jax2tf could not convert the JAX function: {type(exc).__name__}: "
                                   f"{_first_line(exc)}", _hint(exc)) from exc
    io = IOMapping(tuple(TensorLink(n, s.name) for n, s in zip(in_names, inputs)),
                   tuple(TensorLink(n, s.name) for n, s in zip(out_names, outputs)))
    return Artifact(path=out, format="savedmodel",
                    inputs=tuple(TensorSpec(n, s.shape, s.dtype) for n, s in zip(in_names, inputs)),
                    outputs=tuple(TensorSpec(n, s.shape, s.dtype) for n, s in zip(out_names, outputs)),
                    io=source.io.then(io), path_taken=(*source.path_taken, "savedmodel"),
                    extra={"signature": SIGNATURE, "converter": "jax2tf", "native_serialization": False,
                           "enable_xla": False, "parameters": "variables" if bound.arrays else "constants"})


EDGES = (Edge("jax2savedmodel", "jax", "savedmodel", "modelport.converters.jax2savedmodel:convert",
              Requirement("jax", modules=("jax", "tensorflow"))),)
