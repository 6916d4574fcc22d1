"""TensorFlow SavedModel source: a signature of `tf.saved_model.load`, run for reference outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._lazy import captured_output, require
from ..errors import BadInput
from ..spec import TensorSpec, merge_specs
from .base import LoadOptions, SourceModel

DEFAULT_SIGNATURE = "serving_default"


def tf_spec(name: str, spec: Any) -> TensorSpec:
    """A tf.TensorSpec as ours; unknown dims get names (the first is the batch)."""
    shape = None if spec.shape.rank is None else tuple(
        int(d) if d is not None else ("batch" if i == 0 else f"{name}_d{i}") for i, d in enumerate(spec.shape.as_list()))
    return TensorSpec(name, shape, spec.dtype.name)


def signature_of(saved: Any, source: Any = None, fallback: str | None = None) -> str:
    """The signature an edge should use for a SavedModel artifact: the one it was made with, else
    the one the source was loaded with, else --signature, else serving_default."""
    loaded = source.details.get("signature") if source is not None and source.format == "savedmodel" else None
    return saved.extra.get("signature") or loaded or fallback or DEFAULT_SIGNATURE


def choose_signature(signatures: dict, wanted: str | None, where: str) -> str:
    names = sorted(signatures)
    if wanted:
        if wanted not in signatures:
            raise BadInput(f"{where} has no signature '{wanted}'.", f"Its signatures: {', '.join(names) or 'none'}.")
        return wanted
    if DEFAULT_SIGNATURE in signatures:
        return DEFAULT_SIGNATURE
    if len(names) == 1:
        return names[0]
    if not names:
        raise BadInput(f"{where} has no signatures to call.",
                       "Save it with tf.saved_model.save(obj, dir, signatures=...) or keras model.export(dir).")
    raise BadInput(f"{where} has several signatures and none is '{DEFAULT_SIGNATURE}': {', '.join(names)}.",
                   f"Pick one with --signature, e.g. --signature {names[0]}.")


class SavedModel(SourceModel):
    format = "savedmodel"
    framework = "tensorflow"
    runtime = "tensorflow"
    _keepalive: Any  # the loaded SavedModel object, set by `load`

    def _load(self) -> None:
        pass  # loaded by `load`

    def summary(self) -> dict:
        counts: dict[str, int] = {}
        graph = self.handle.graph.as_graph_def()
        nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
        for node in nodes:
            if node.op not in ("Placeholder", "Const", "NoOp", "Identity", "StatefulPartitionedCall",
                               "PartitionedCall", "ReadVariableOp"):
                counts[node.op] = counts.get(node.op, 0) + 1
        parameters = sum(int(v.shape.num_elements() or 0) for v in self.handle.variables)
        return {"parameters": parameters, "signature": self.details.get("signature"),
                "signatures": self.details.get("signatures"),
                "ops": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))}

    def _run(self, feeds):
        tf = require("tensorflow")
        result = self.handle(**{name: tf.constant(value) for name, value in feeds.items()})
        return {name: result[name].numpy() for name in (s.name for s in self.outputs)}


def load(path: Path, fmt: str, options: LoadOptions) -> SavedModel:
    with captured_output(options.verbose):
        tf = require("tensorflow", purpose="to read SavedModels")
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # corrupt protobuf, missing variables, unknown ops
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BadInput(f"'{path}' cannot be loaded as a SavedModel: {first[:300]}",
                           "Save it again with tf.saved_model.save or keras model.export.") from None
    signature = choose_signature(dict(loaded.signatures), options.signature, f"SavedModel '{path}'")
    function = loaded.signatures[signature]
    model = SavedModel(path, handle=function)
    model.details["signature"] = signature
    model.details["signatures"] = sorted(loaded.signatures)
    model._keepalive = loaded  # the signature needs its object alive
    inputs = [tf_spec(name, spec) for name, spec in sorted(function.structured_input_signature[1].items())]
    model.inputs = merge_specs(inputs, list(options.inputs))
    model.outputs = [tf_spec(name, spec) for name, spec in sorted(function.structured_outputs.items())]
    model._loaded = True
    return model
