"""GridSample lowered to tap indices, weights and GatherElements (see onnx_lower)."""

from __future__ import annotations

import itertools
import math
from typing import Any

from .onnx_lower import Builder, elem_types, is_float32, known_shapes, node_attributes, replace_nodes


def _reflect(b: Builder, v: str, low: float, high: float) -> str:
    """GridSample's reflection of coordinates V into [LOW, HIGH] (the ONNX reference's
    _gs_reflect): by the near border, back and forth, as often as it takes."""
    import numpy as np

    def f(value: float) -> str:
        return b.const(np.array(value, np.float32), "f")

    span = high - low
    if span <= 0:
        return b.op("Add", [b.op("Mul", [v, f(0.0)]), f(low)])
    below, above = b.op("Less", [v, f(low)]), b.op("Greater", [v, f(high)])
    distance = b.op("Where", [below, b.op("Sub", [f(low), v]), b.op("Sub", [v, f(high)])])
    distance = b.op("Max", [distance, f(0.0)])
    folds = b.op("Floor", [b.op("Div", [distance, f(span)])])
    rest = b.op("Sub", [distance, b.op("Mul", [folds, f(span)])])
    even = b.op("Equal", [b.op("Mul", [b.op("Floor", [b.op("Div", [folds, f(2.0)])]), f(2.0)]), folds])
    from_low, from_high = b.op("Add", [f(low), rest]), b.op("Sub", [f(high), rest])
    reflected_below = b.op("Where", [even, from_low, from_high])
    reflected_above = b.op("Where", [even, from_high, from_low])
    return b.op("Where", [below, reflected_below, b.op("Where", [above, reflected_above, v])])


def _cubic_coefficients(b: Builder, t: str) -> list[str]:
    """Keys' cubic convolution weights (A = -0.75) of the four taps around a point at offset T in [0, 1)."""
    import numpy as np

    a = -0.75

    def f(value: float) -> str:
        return b.const(np.array(value, np.float32), "f")

    def near(x: str) -> str:  # |x| <= 1: ((a + 2) x - (a + 3)) x^2 + 1
        inner = b.op("Sub", [b.op("Mul", [f(a + 2), x]), f(a + 3)])
        return b.op("Add", [b.op("Mul", [b.op("Mul", [inner, x]), x]), f(1.0)])

    def far(x: str) -> str:  # 1 < |x| < 2: ((a x - 5a) x + 8a) x - 4a
        inner = b.op("Add", [b.op("Mul", [b.op("Sub", [b.op("Mul", [f(a), x]), f(5 * a)]), x]), f(8 * a)])
        return b.op("Sub", [b.op("Mul", [inner, x]), f(4 * a)])

    one_minus = b.op("Sub", [f(1.0), t])
    return [far(b.op("Add", [t, f(1.0)])), near(t), near(one_minus), far(b.op("Sub", [f(2.0), t]))]


def _grid_sample_taps(b: Builder, coordinate: str, size: int, mode: str, padding: str,
                      align_corners: bool) -> list[tuple[str, str | None, str | None]]:
    """For one spatial axis: the (index, weight, in-range mask) of each tap, indices clamped into
    the axis; the mask is None where padding is not zeros."""
    import numpy as np

    def f(value: float) -> str:
        return b.const(np.array(value, np.float32), "f")

    if align_corners:
        x = b.op("Mul", [b.op("Add", [coordinate, f(1.0)]), f((size - 1) / 2.0)])
        low, high = 0.0, float(size - 1)
    else:
        x = b.op("Div", [b.op("Sub", [b.op("Mul", [b.op("Add", [coordinate, f(1.0)]), f(float(size))]), f(1.0)]),
                         f(2.0)])
        low, high = -0.5, size - 0.5
    if mode == "nearest":
        x = b.op("Round", [x])  # half to even, as the reference's np.rint
    if padding == "border" and mode != "cubic":  # (onnxruntime clamps a cubic sample's taps only)
        outside = b.op("Or", [b.op("Less", [x, f(low)]), b.op("Greater", [x, f(high)])])
        x = b.op("Where", [outside, b.op("Clip", [x, f(0.0), f(float(size - 1))]), x])
    elif padding == "reflection":
        x = _reflect(b, x, low, high)
    taps: list[tuple[str, str | None]]
    if mode == "nearest":
        positive = b.op("Greater", [x, f(0.0)])  # truncation toward zero, as the reference's astype
        taps = [(b.op("Where", [positive, b.op("Floor", [x]), b.op("Ceil", [x])]), None)]
    else:
        first = b.op("Floor", [x])
        t = b.op("Sub", [x, first])
        offsets: tuple[int, ...] = (0, 1) if mode == "linear" else (-1, 0, 1, 2)
        weights = [b.op("Sub", [f(1.0), t]), t] if mode == "linear" else _cubic_coefficients(b, t)
        taps = [(b.op("Add", [first, f(float(o))]), w) for o, w in zip(offsets, weights)]
    result = []
    for index, weight in taps:
        mask = None
        if padding == "zeros":
            inside = b.op("And", [b.op("GreaterOrEqual", [index, f(0.0)]), b.op("LessOrEqual", [index, f(size - 1.0)])])
            mask = b.op("Cast", [inside], to=1)
        elif padding == "reflection":
            index = b.op("Floor", [_reflect(b, index, low, high)])
        result.append((b.op("Clip", [index, f(0.0), f(float(size - 1))]), weight, mask))
    return result


def lower_grid_samples(model: Any) -> list[str]:
    """GridSample (2-D and volumetric, every mode and padding) of static shapes, as per-axis tap
    indices and weights, one GatherElements per combination of taps: onnx2tf 1.29 fails on it or
    changes its layout, onnx2tf 2.x has no builtin for cubic or volumetric sampling. The same
    arithmetic as the ONNX reference implementation."""
    import numpy as np

    shapes, types = known_shapes(model), elem_types(model)
    nodes, changed = [], []
    for index, node in enumerate(model.graph.node):
        x_shape = shapes.get(node.input[0]) if node.input else None
        grid_shape = shapes.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type != "GridSample" or node.domain not in ("", "ai.onnx") or x_shape is None \
                or grid_shape is None or len(x_shape) not in (4, 5) or grid_shape[-1] != len(x_shape) - 2 \
                or not is_float32(node.input[0], types) or not is_float32(node.input[1], types):
            nodes.append(node)
            continue
        attributes = node_attributes(node)
        text = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attributes.items()}
        mode = {"bilinear": "linear", "bicubic": "cubic"}.get(text.get("mode", "linear"), text.get("mode", "linear"))
        padding, align = text.get("padding_mode", "zeros"), bool(attributes.get("align_corners", 0))
        if mode not in ("nearest", "linear", "cubic") or padding not in ("zeros", "border", "reflection"):
            nodes.append(node)
            continue
        b = Builder(model, f"{node.name or 'GridSample'}__lowered{index}")
        n, channels, spatial = x_shape[0], x_shape[1], x_shape[2:]
        out, rank = grid_shape[1:-1], len(spatial)
        points = math.prod(out)
        grid = b.reshape(node.input[1], [n, points, rank])
        per_axis = []
        for axis in range(rank):  # the grid's last component is the first spatial axis
            coordinate = b.op("Gather", [grid, b.const(np.array(rank - 1 - axis, np.int64), "component")], axis=2)
            per_axis.append(_grid_sample_taps(b, coordinate, spatial[axis], mode, padding, align))
        flat = b.reshape(node.input[0], [n, channels, math.prod(spatial)])
        strides = [math.prod(spatial[axis + 1:]) for axis in range(rank)]
        total: str | None = None
        for combination in itertools.product(*per_axis):
            position: str | None = None
            weight: str | None = None
            mask: str | None = None
            for axis, (tap_index, tap_weight, tap_mask) in enumerate(combination):
                term = b.op("Mul", [tap_index, b.const(np.array(float(strides[axis]), np.float32), "stride")])
                position = term if position is None else b.op("Add", [position, term])
                if tap_weight is not None:
                    weight = tap_weight if weight is None else b.op("Mul", [weight, tap_weight])
                if tap_mask is not None:
                    mask = tap_mask if mask is None else b.op("Mul", [mask, tap_mask])
            assert position is not None  # (a grid has at least one axis)
            positions = b.op("Cast", [b.reshape(position, [n, 1, points])], to=7)
            positions = b.op("Expand", [positions, b.ints([n, channels, points], "shape")])
            value = b.op("GatherElements", [flat, positions], axis=2)
            factor = weight if mask is None else (mask if weight is None else b.op("Mul", [weight, mask]))
            if factor is not None:
                value = b.op("Mul", [value, b.reshape(factor, [n, 1, points])])
            total = value if total is None else b.op("Add", [total, value])
        assert total is not None
        b.reshape(total, [n, channels, *out], node.output[0])
        nodes.extend(b.nodes)
        changed.append("GridSample")
    return replace_nodes(model, nodes, changed)
