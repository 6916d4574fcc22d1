"""ONNX RNN, GRU and LSTM as torch modules onnx2torch can place (it has none), written from the
ONNX operator spec: every direction, both layouts, sequence_lens, initial states, LSTM
peepholes and input_forget, GRU's linear_before_reset, clip, and the activations list. The
time loop is unrolled by the TorchScript trace, as the sequence length of a traced model is.
"""

from __future__ import annotations

from typing import Any

_DEFAULT_ACTIVATIONS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
_PARAMETERLESS = {"Sigmoid", "Tanh", "Relu", "Softsign", "Softplus"}


def _activation(name: str) -> Any:
    import torch

    return {"Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Relu": torch.relu,
            "Softsign": torch.nn.functional.softsign, "Softplus": torch.nn.functional.softplus}[name]


def recurrent_converter(result_type: Any) -> Any:
    import torch
    from onnx2torch.utils.common import OnnxToTorchModule

    class Recurrent(torch.nn.Module, OnnxToTorchModule):
        def __init__(self, op: str, attributes: dict, outputs: list[int]) -> None:
            super().__init__()
            self.op, self.outputs = op, outputs  # the indices of the outputs the node names (Y is often omitted)
            self.direction = str(attributes.get("direction", "forward"))
            self.layout = int(attributes.get("layout", 0))
            clip = attributes.get("clip")
            self.clip = float(clip) if clip is not None else None
            self.linear_before_reset = bool(attributes.get("linear_before_reset", 0))
            self.input_forget = bool(attributes.get("input_forget", 0))
            directions = 2 if self.direction == "bidirectional" else 1
            names = [str(a) for a in attributes.get("activations", [])] or _DEFAULT_ACTIVATIONS[op] * directions
            per = len(_DEFAULT_ACTIVATIONS[op])
            self.activation_names = [names[d * per:(d + 1) * per] for d in range(directions)]

        def _gates(self, value: torch.Tensor) -> torch.Tensor:
            return value.clamp(-self.clip, self.clip) if self.clip is not None else value

        def _run(self, d: int, x: torch.Tensor, w: torch.Tensor, r: torch.Tensor, b: torch.Tensor | None,
                 h: torch.Tensor, c: torch.Tensor | None, p: torch.Tensor | None, lengths: torch.Tensor | None,
                 reverse: bool) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
            acts = [_activation(name) for name in self.activation_names[d]]
            gates = w.shape[0]
            wb, rb = (b[:gates], b[gates:]) if b is not None else (None, None)
            steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
            outputs: list[torch.Tensor] = [x.new_zeros(0)] * x.shape[0]
            for t in steps:
                xw = x[t] @ w.T + (wb if wb is not None else 0)
                if self.op == "RNN":
                    new_h = acts[0](self._gates(xw + h @ r.T + (rb if rb is not None else 0)))
                    new_c = c
                elif self.op == "GRU":
                    hidden = h.shape[-1]
                    xz, xr, xh = xw.split(hidden, dim=-1)
                    rz, rr, rh = r.split(hidden, dim=0)
                    bz, br, bh = rb.split(hidden) if rb is not None else (0, 0, 0)
                    z = acts[0](self._gates(xz + h @ rz.T + bz))
                    reset = acts[0](self._gates(xr + h @ rr.T + br))
                    if self.linear_before_reset:
                        candidate = acts[1](self._gates(xh + reset * (h @ rh.T + bh)))
                    else:
                        candidate = acts[1](self._gates(xh + (reset * h) @ rh.T + bh))
                    new_h, new_c = (1 - z) * candidate + z * h, c
                else:
                    assert c is not None
                    hidden = h.shape[-1]
                    total = xw + h @ r.T + (rb if rb is not None else 0)
                    gi, go, gf, gc = total.split(hidden, dim=-1)
                    pi, po, pf = p.split(hidden) if p is not None else (0, 0, 0)
                    i = acts[0](self._gates(gi + pi * c))
                    f = 1 - i if self.input_forget else acts[0](self._gates(gf + pf * c))
                    new_c = f * c + i * acts[1](self._gates(gc))
                    o = acts[0](self._gates(go + po * new_c))
                    new_h = o * acts[2](new_c)
                if lengths is not None:  # past a sequence's end its state holds and its output is zero
                    alive = (lengths > t).to(x.dtype).unsqueeze(-1)
                    new_h = alive * new_h + (1 - alive) * h
                    if new_c is not None and c is not None:
                        new_c = alive * new_c + (1 - alive) * c
                    outputs[t] = alive * new_h
                else:
                    outputs[t] = new_h
                h, c = new_h, new_c
            return outputs, h, c

        def forward(self, x: torch.Tensor, w: torch.Tensor, r: torch.Tensor, b: torch.Tensor | None = None,
                    sequence_lens: torch.Tensor | None = None, initial_h: torch.Tensor | None = None,
                    initial_c: torch.Tensor | None = None, p: torch.Tensor | None = None) -> Any:
            if self.layout:
                x = x.transpose(0, 1)
                initial_h = initial_h.transpose(0, 1) if initial_h is not None else None
                initial_c = initial_c.transpose(0, 1) if initial_c is not None else None
            directions, hidden = w.shape[0], r.shape[-1]
            batch = x.shape[1]
            ys, hs, cs = [], [], []
            for d in range(directions):
                h = initial_h[d] if initial_h is not None else x.new_zeros(batch, hidden)
                c = (initial_c[d] if initial_c is not None else x.new_zeros(batch, hidden)) if self.op == "LSTM" else None
                reverse = self.direction == "reverse" or d == 1
                out, h, c = self._run(d, x, w[d], r[d], b[d] if b is not None else None, h, c,
                                      p[d] if p is not None else None, sequence_lens, reverse)
                ys.append(torch.stack(out))
                hs.append(h)
                if c is not None:
                    cs.append(c)
            y = torch.stack(ys, dim=1)       # [seq, directions, batch, hidden]
            y_h = torch.stack(hs)            # [directions, batch, hidden]
            results = [y, y_h]
            if self.op == "LSTM":
                results.append(torch.stack(cs))
            if self.layout:
                results = [y.permute(2, 0, 1, 3)] + [state.transpose(0, 1) for state in results[1:]]
            chosen = tuple(results[i] for i in self.outputs)
            return chosen[0] if len(chosen) == 1 else chosen

    def convert(node: Any, graph: Any) -> Any:
        attributes = dict(node.attributes)
        names = [str(a) for a in attributes.get("activations", [])]
        if any(n not in _PARAMETERLESS for n in names) or "activation_alpha" in attributes or "activation_beta" in attributes:
            raise NotImplementedError(f"operation_type='{node.operation_type}' with activations {names}")
        from onnx2torch.utils.common import OnnxMapping

        named = [i for i, name in enumerate(node.output_values) if name]
        module = Recurrent(node.operation_type, attributes, named)
        return result_type(torch_module=module, onnx_mapping=OnnxMapping(
            inputs=node.input_values, outputs=tuple(node.output_values[i] for i in named)))

    return convert
