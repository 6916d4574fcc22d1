"""TorchScript target: run with torch.jit.load on the CPU."""

from __future__ import annotations

from typing import Any

from .._lazy import require
from ..errors import BadInput, first_line
from ..sources.torch import ThreadPin, _flatten_outputs
from ..spec import TensorSpec
from .base import Runner, Tapped



class TorchScriptRunner(Runner):
    runtime = "torch.jit"

    def _load(self) -> None:
        self._threads = ThreadPin()
        torch = require("torch", "torch", purpose="to run TorchScript models")
        try:
            self._module = torch.jit.load(str(self.path), map_location="cpu").eval()
        except Exception as exc:  # RuntimeError, and others from a damaged or hostile archive
            raise BadInput(f"torch.jit.load cannot read '{self.path.name}': {first_line(exc)}",
                           "The file is not a TorchScript archive or is damaged.") from None
        # Arguments with defaults (a scripted forward's optional masks) are not inputs to feed.
        names = [a.name for a in self._module.forward.schema.arguments[1:] if not a.has_default_value()]
        # TorchScript records names, not shapes; the artifact's own specs fill those in.
        self.inputs = [TensorSpec(n, None) for n in names]
        self.outputs = []

    def _run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        torch = require("torch", "torch")
        self._threads.pin(torch, self.threads)
        args = [torch.from_numpy(feeds[s.name].copy()) for s in self.inputs]
        with torch.no_grad():
            result = self._module(*args)
        return {name: value.detach().cpu().numpy() for name, value in _flatten_outputs(result)}

    def tap(self, feeds: dict[str, Any]) -> list[Tapped]:
        """The output of every submodule call of forward, in order: a copy of forward's graph that
        also returns them, compiled and run once. onnx2torch names each submodule after its ONNX
        node (`/conv1/Conv` -> `conv1/Conv`), which is how `debug` pairs them."""
        torch = require("torch", "torch")
        self.load()
        graph = self._module.graph.copy()
        taps: list[tuple[str, Any]] = []
        for node in graph.nodes():
            if node.kind() != "prim::CallMethod" or node.outputsSize() != 1 \
                    or node.output().type().kind() != "TensorType":
                continue
            owner = node.inputsAt(0).node()
            if owner.kind() == "prim::GetAttr":
                taps.append((owner.s("name"), node.output()))
        if not taps:
            return Runner.tap(self, feeds)
        returned = [*graph.outputs(), *(value for _, value in taps)]
        bundle = graph.create("prim::TupleConstruct", returned, 1)
        bundle.insertBefore(graph.return_node())
        bundle.output().setType(torch._C.TupleType([v.type() for v in returned]))
        while list(graph.outputs()):
            graph.eraseOutput(0)
        graph.registerOutput(bundle.output())
        function = torch._C._create_function_from_graph("modelport_tap", graph)
        args = [torch.from_numpy(feeds[s.name].copy()) for s in self.inputs]
        with torch.no_grad():
            values = function(self._module._c, *args)[1:]
        children = dict(self._module.named_children())
        return [Tapped(name, getattr(children.get(name), "original_name", "call"), value.detach().cpu().numpy(), name)
                for (name, _), value in zip(taps, values)]

    def _close(self) -> None:
        self._module = None
        self._threads.release()
