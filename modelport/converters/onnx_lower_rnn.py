"""LSTM, GRU and RNN with input weights unrolled over their time steps (see onnx_lower)."""

from __future__ import annotations

from typing import Any

from .onnx_lower import Builder, elem_types, is_float32, known_shapes, node_attributes, replace_nodes

_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
_MAX_UNROLLED_STEPS = 256


def _recurrent_step(b: Builder, kind: str, projected: str, hidden: str, cell: str | None, recurrent_t: str,
                    recurrent_bias: str | None, peephole: list[str] | None, size: int,
                    linear_before_reset: bool) -> tuple[str, str | None]:
    """One time step of the ONNX LSTM/GRU/RNN equations (default activations): the new hidden
    state (and LSTM's cell). PROJECTED is the input's projection plus its bias for this step."""
    import numpy as np

    def gate(tensor: str, k: int) -> str:
        return b.op("Slice", [tensor, b.ints([k * size], "starts"), b.ints([(k + 1) * size], "ends"),
                              b.ints([-1], "axes")])  # the gates lie along the last axis

    def add_bias(tensor: str) -> str:
        return b.op("Add", [tensor, recurrent_bias]) if recurrent_bias else tensor

    if kind == "GRU":
        from_hidden = add_bias(b.op("MatMul", [hidden, recurrent_t]))
        z = b.op("Sigmoid", [b.op("Add", [gate(projected, 0), gate(from_hidden, 0)])])
        r = b.op("Sigmoid", [b.op("Add", [gate(projected, 1), gate(from_hidden, 1)])])
        if linear_before_reset:
            candidate_hidden = b.op("Mul", [r, gate(from_hidden, 2)])
        else:
            candidate_hidden = b.op("MatMul", [b.op("Mul", [r, hidden]), gate(recurrent_t, 2)])  # Rh^T: [H, H]
            if recurrent_bias:
                candidate_hidden = b.op("Add", [candidate_hidden, gate(recurrent_bias, 2)])
        candidate = b.op("Tanh", [b.op("Add", [gate(projected, 2), candidate_hidden])])
        one = b.const(np.array(1.0, np.float32), "one")
        kept = b.op("Mul", [z, hidden])
        return b.op("Add", [b.op("Mul", [b.op("Sub", [one, z]), candidate]), kept]), None
    gates = b.op("Add", [projected, add_bias(b.op("MatMul", [hidden, recurrent_t]))])
    if kind == "RNN":
        return b.op("Tanh", [gates]), None
    assert cell is not None
    i, o, f, c = (gate(gates, k) for k in range(4))
    if peephole:
        i = b.op("Add", [i, b.op("Mul", [peephole[0], cell])])
        f = b.op("Add", [f, b.op("Mul", [peephole[2], cell])])
    new_cell = b.op("Add", [b.op("Mul", [b.op("Sigmoid", [f]), cell]),
                            b.op("Mul", [b.op("Sigmoid", [i]), b.op("Tanh", [c])])])
    if peephole:
        o = b.op("Add", [o, b.op("Mul", [peephole[1], new_cell])])
    return b.op("Mul", [b.op("Sigmoid", [o]), b.op("Tanh", [new_cell])]), new_cell


def _lower_recurrent(b: Builder, node: Any, x_shape: list[int], attributes: dict[str, Any]) -> None:
    import numpy as np

    kind, size = node.op_type, int(attributes["hidden_size"])
    batch_first = int(attributes.get("layout", 0)) == 1
    steps, batch = (x_shape[1], x_shape[0]) if batch_first else (x_shape[0], x_shape[1])
    direction = attributes.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    directions = 2 if direction == "bidirectional" else 1
    optional = list(node.input) + [""] * (8 - len(node.input))
    x = b.op("Transpose", [node.input[0]], perm=[1, 0, 2]) if batch_first else node.input[0]
    for state in (5, 6):  # batch-first initial states: [B, D, H]
        if batch_first and optional[state]:
            optional[state] = b.op("Transpose", [optional[state]], perm=[1, 0, 2])
    gates = _GATES[kind]
    final_h, final_c, sequences = [], [], []
    for d in range(directions):
        reverse = direction == "reverse" or d == 1
        pick = b.ints([d], "direction")

        def of_direction(name: str, shape: list[int]) -> str:
            return b.reshape(b.op("Gather", [name, pick], axis=0), shape)

        w_t = b.op("Transpose", [of_direction(node.input[1], [gates * size, x_shape[2]])], perm=[1, 0])
        r_t = b.op("Transpose", [of_direction(node.input[2], [gates * size, size])], perm=[1, 0])
        input_bias = recurrent_bias = None
        if optional[3]:
            bias = of_direction(optional[3], [2 * gates * size])
            input_bias = b.op("Slice", [bias, b.ints([0], "s"), b.ints([gates * size], "e"), b.ints([0], "a")])
            recurrent_bias = b.op("Slice", [bias, b.ints([gates * size], "s"), b.ints([2 * gates * size], "e"),
                                            b.ints([0], "a")])
        projected = b.op("MatMul", [x, w_t])  # [T, B, G*H]
        if input_bias:
            projected = b.op("Add", [projected, input_bias])
        zeros = b.const(np.zeros((batch, size), np.float32), "zeros")
        hidden = of_direction(optional[5], [batch, size]) if optional[5] else zeros
        cell = (of_direction(optional[6], [batch, size]) if optional[6] else zeros) if kind == "LSTM" else None
        peephole = None
        if kind == "LSTM" and optional[7]:
            p = of_direction(optional[7], [3 * size])
            peephole = [b.op("Slice", [p, b.ints([k * size], "s"), b.ints([(k + 1) * size], "e"), b.ints([0], "a")])
                        for k in range(3)]
        outputs: dict[int, str] = {}
        for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
            step = b.reshape(b.op("Slice", [projected, b.ints([t], "s"), b.ints([t + 1], "e"), b.ints([0], "a")]),
                             [batch, gates * size])
            hidden, cell = _recurrent_step(b, kind, step, hidden, cell, r_t, recurrent_bias, peephole, size,
                                           bool(attributes.get("linear_before_reset", 0)))
            outputs[t] = b.reshape(hidden, [1, 1, batch, size])
        sequences.append(b.op("Concat", [outputs[t] for t in range(steps)], axis=0) if steps > 1 else outputs[0])
        final_h.append(b.reshape(hidden, [1, batch, size]))
        if cell is not None:
            final_c.append(b.reshape(cell, [1, batch, size]))
    outs = list(node.output) + [""] * (3 - len(node.output))

    def emit(parts: list[str], axis: int, output: str, batch_first_perm: list[int]) -> None:
        joined = b.op("Concat", parts, axis=axis) if len(parts) > 1 else parts[0]
        if batch_first:
            b.op("Transpose", [joined], output, perm=batch_first_perm)
        else:
            b.op("Identity", [joined], output)

    if outs[0]:
        emit(sequences, 1, outs[0], [2, 0, 1, 3])  # [T, D, B, H] -> [B, T, D, H]
    if outs[1]:
        emit(final_h, 0, outs[1], [1, 0, 2])      # [D, B, H] -> [B, D, H]
    if kind == "LSTM" and outs[2]:
        emit(final_c, 0, outs[2], [1, 0, 2])


def lower_recurrent(model: Any) -> list[str]:
    """LSTM, GRU and RNN whose weights are not constants, unrolled over their (static, at most
    256) time steps into MatMuls and the ONNX equations' activations: onnx2tf builds Keras RNN
    layers from constant weights only. Default activations only, no clip, no sequence_lens."""
    constants = {t.name for t in model.graph.initializer}
    shapes, types = known_shapes(model), elem_types(model)
    nodes, changed = [], []
    for index, node in enumerate(model.graph.node):
        attributes = node_attributes(node)
        x_shape = shapes.get(node.input[0]) if node.input else None
        activations = [a.decode() if isinstance(a, bytes) else a for a in attributes.get("activations", [])]
        directions = 2 if attributes.get("direction") in (b"bidirectional", "bidirectional") else 1
        if node.op_type not in _GATES or node.domain not in ("", "ai.onnx") or len(node.input) < 3 \
                or (node.input[1] in constants and node.input[2] in constants) or x_shape is None \
                or len(x_shape) != 3 or "hidden_size" not in attributes or not is_float32(node.input[0], types) \
                or (activations and activations != _DEFAULT_ACTIVATIONS[node.op_type] * directions) \
                or "clip" in attributes or attributes.get("input_forget", 0) \
                or (len(node.input) > 4 and node.input[4]) \
                or x_shape[1 if attributes.get("layout", 0) else 0] > _MAX_UNROLLED_STEPS:
            nodes.append(node)
            continue
        b = Builder(model, f"{node.name or node.op_type}__lowered{index}")
        _lower_recurrent(b, node, x_shape, attributes)
        nodes.extend(b.nodes)
        changed.append(node.op_type)
    return replace_nodes(model, nodes, changed)
