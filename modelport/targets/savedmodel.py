"""SavedModel target: run with tf.saved_model.load and its serving signature."""

from __future__ import annotations

from .._lazy import captured_output, require
from ..errors import BadInput
from .base import Runner



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

    def _close(self) -> None:
        self._function = self._loaded_model = None
