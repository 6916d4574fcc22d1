"""SavedModel target: run with tf.saved_model.load and its serving signature."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._lazy import captured_output, require
from ..errors import BadInput
from .base import Runner, Tapped


class SavedModelRunner(Runner):
    runtime = "tensorflow"
    signature = "serving_default"

    def _load(self) -> None:
        from ..sources.tensorflow import check_graph_ops, choose_signature, tf_spec

        if not self.trust_remote_code:
            check_graph_ops(self.path)

        with captured_output(False):
            tf = require("tensorflow", purpose="to run SavedModels")
            try:
                self._loaded_model = tf.saved_model.load(str(self.path))
            except Exception as exc:  # corrupt protobuf, missing variables
                raise BadInput(f"tf.saved_model.load cannot read '{self.path}': {str(exc).splitlines()[0][:300]}",
                               "The folder is not a complete SavedModel.") from None
        name = choose_signature(dict(self._loaded_model.signatures), None, f"SavedModel '{self.path}'")
        self._function = self._loaded_model.signatures[name]
        self.inputs = [tf_spec(n, s) for n, s in sorted(self._function.structured_input_signature[1].items())]
        self.outputs = [tf_spec(n, s) for n, s in sorted(self._function.structured_outputs.items())]

    def _run(self, feeds):
        tf = require("tensorflow")
        result = self._function(**{name: tf.constant(value) for name, value in feeds.items()})
        return {name: value.numpy() for name, value in result.items()}

    def tap(self, feeds: dict[str, np.ndarray]) -> list[Tapped]:
        """Every op output of the signature's body, in graph order: the body (the function the
        signature calls) is imported into a graph of its own, pruned to fetch every op's outputs,
        and called with the feeds and the signature's own captured weights. The ops were checked
        when the model was loaded (`check_graph_ops`); nothing else is run."""
        tf = require("tensorflow")
        from tensorflow.python.framework import function_def_to_graph

        self.load()
        outer = self._function.graph
        calls = [op for op in outer.get_operations() if op.type in ("PartitionedCall", "StatefulPartitionedCall")]
        if len(calls) != 1:
            raise BadInput(f"modelport cannot read the layers of this SavedModel: its signature makes "
                           f"{len(calls)} function calls, not one.", "Compare its outputs with `modelport validate`.")
        call = calls[0]
        library = {f.signature.name: f for f in outer.as_graph_def().library.function}
        body = function_def_to_graph.function_def_to_graph(library[call.get_attr("f").name])
        body_def = body.as_graph_def()

        def imported() -> None:
            tf.graph_util.import_graph_def(body_def, name="")

        wrapped = tf.compat.v1.wrap_function(imported, [])
        ops = [op for op in wrapped.graph.get_operations()
               if op.type not in ("Placeholder", "Const", "NoOp") and op.outputs
               and all(t.dtype.is_floating or t.dtype.is_integer for t in op.outputs)]
        pruned = wrapped.prune(feeds=[wrapped.graph.get_tensor_by_name(t.name) for t in body.inputs],
                               fetches=[t for op in ops for t in op.outputs])
        values = self._call_values(call, feeds)
        with captured_output(False):
            results = pruned(*values)
        tapped, index = [], 0
        for op in ops:
            for tensor in op.outputs:
                value = results[index].numpy()
                index += 1
                tapped.append(Tapped(tensor.name.removesuffix(":0"), op.type,
                                     value.astype(np.float32) if value.dtype.kind == "f" else value, op.name))
        return tapped

    def _call_values(self, call: Any, feeds: dict[str, np.ndarray]) -> list[Any]:
        """What the signature passes its body: each input by its placeholder, each capture (the
        weights) as the loaded function holds it."""
        tf = require("tensorflow")
        function = self._function
        captures = list(function.captured_inputs)
        placeholders = list(function.graph.inputs)
        by_placeholder: dict[str, Any] = dict(zip((t.name for t in placeholders[len(placeholders) - len(captures):]),
                                                  captures))
        specs = function.structured_input_signature[1]
        for key, spec in specs.items():
            name = f"{spec.name or key}:0"
            by_placeholder[name] = tf.constant(feeds[key])
        missing = [t.name for t in call.inputs if t.name not in by_placeholder]
        if missing:
            raise BadInput(f"modelport cannot read the layers of this SavedModel: its body takes {missing[0]}, which "
                           "is neither an input nor a weight of the signature.",
                           "Compare its outputs with `modelport validate`.")
        return [by_placeholder[t.name] for t in call.inputs]

    def _close(self) -> None:
        self._function = self._loaded_model = None
