"""Lowerings: ONNX ops rewritten as simpler ONNX ops where the TensorFlow converters fail on them.

Part of the expanded (retry) form of onnx_prepare, so a graph that converts as given never sees
them. Each computes what the op computes (to float rounding), on static shapes only:

- **Conv whose weights are a graph input** (onnx2tf wants them constant): the kernel's taps as
  strided Slices of the padded input, one MatMul against the weights reshaped per group.
- **ConvTranspose whose weights are a graph input**: the input zero-stuffed, padded and cropped
  along each spatial axis by a constant 0/1 matrix, then a Conv with the kernel flipped and its
  channels swapped per group (lowered as above).
- **Resize** (cubic, antialiased, or any mode a converter gets wrong): per resized axis, one
  MatMul with the interpolation matrix, which onnxruntime computes for that axis alone (Resize is
  linear and separable per axis in every mode but tf_crop_and_resize, which is not lowered).

GridSample's lowering is in onnx_lower_grid.py, the recurrent ops' unrolling in onnx_lower_rnn.py;
this module holds the builder they share.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from .._lazy import require


class Builder:
    """Nodes and constants of one rewrite, named after the node they replace."""

    def __init__(self, model: Any, tag: str) -> None:
        self.model, self.tag, self.count = model, tag, 0
        self.nodes: list[Any] = []

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.tag}__{hint}{self.count}"

    def const(self, value: Any, hint: str = "c") -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.model.graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    def ints(self, values: list[int] | tuple[int, ...], hint: str = "i") -> str:
        import numpy as np

        return self.const(np.array(list(values), np.int64), hint)

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attributes: Any) -> str:
        from onnx import helper

        output = output or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output

    def reshape(self, tensor: str, shape: list[int] | tuple[int, ...], output: str | None = None) -> str:
        return self.op("Reshape", [tensor, self.ints(shape, "shape")], output)

    def along_axis(self, tensor: str, shape: list[int], axis: int, matrix: Any) -> tuple[str, list[int]]:
        """TENSOR (of SHAPE) with its AXIS mapped through MATRIX (new length x old length): a
        MatMul on the tensor viewed as [before, axis, after], every view at most rank 3."""
        import numpy as np

        before, after = math.prod(shape[:axis]), math.prod(shape[axis + 1:])
        new_shape = [*shape[:axis], matrix.shape[0], *shape[axis + 1:]]
        view = self.reshape(tensor, [before, shape[axis], after])
        mapped = self.op("MatMul", [self.const(np.ascontiguousarray(matrix, np.float32), "axis_map"), view])
        return self.reshape(mapped, new_shape), new_shape


def replace_nodes(model: Any, nodes: list, changed: list[str]) -> list[str]:
    """MODEL's graph with NODES as its nodes where a rewrite CHANGED something; returns CHANGED."""
    if changed:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return changed


def node_attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def static_shapes(model: Any) -> dict[str, list[int | None]]:
    """Every tensor's shape as shape inference and the initializers give it (None: a dynamic dim)."""
    onnx = require("onnx")
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
              for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
              if v.type.tensor_type.HasField("shape")}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    return shapes


def known_shapes(model: Any) -> dict[str, list[int]]:
    """The shapes of the tensors whose every dim shape inference knows (the lowerings need them)."""
    return {name: [d for d in shape if isinstance(d, int)] for name, shape in static_shapes(model).items()
            if all(isinstance(d, int) and d > 0 for d in shape)}


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def is_float32(name: str, types: dict[str, int]) -> bool:
    from onnx import TensorProto

    return types.get(name) == TensorProto.FLOAT


def elem_types(model: Any) -> dict[str, int]:
    onnx = require("onnx")
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    return types


def _same_pads(size: int, kernel: int, stride: int, dilation: int, auto_pad: str) -> tuple[int, int]:
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - size)
    small, large = total // 2, total - total // 2
    return (small, large) if auto_pad == "SAME_UPPER" else (large, small)


def _lower_conv(b: Builder, node: Any, x_shape: list[int], w_shape: list[int], attributes: dict[str, Any],
                output: str) -> None:
    """Conv as tap Slices + one grouped MatMul (see the module docstring)."""
    rank = len(x_shape) - 2
    n, channels, spatial = x_shape[0], x_shape[1], x_shape[2:]
    filters, group_channels, kernel = w_shape[0], w_shape[1], w_shape[2:]
    group = int(attributes.get("group", 1))
    strides = list(attributes.get("strides", [1] * rank))
    dilations = list(attributes.get("dilations", [1] * rank))
    auto_pad = attributes.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pairs = [_same_pads(spatial[i], kernel[i], strides[i], dilations[i], auto_pad) for i in range(rank)]
        begins, ends = [p[0] for p in pairs], [p[1] for p in pairs]
    elif auto_pad == "VALID":
        begins, ends = [0] * rank, [0] * rank
    else:
        pads = list(attributes.get("pads", [0] * (2 * rank)))
        begins, ends = pads[:rank], pads[rank:]
    padded = [spatial[i] + begins[i] + ends[i] for i in range(rank)]
    out = [(padded[i] - ((kernel[i] - 1) * dilations[i] + 1)) // strides[i] + 1 for i in range(rank)]
    x = node.input[0]
    if any(begins) or any(ends):
        x = b.op("Pad", [x, b.ints([0, 0, *begins, 0, 0, *ends], "pads")], mode="constant")
    taps, length = math.prod(kernel), math.prod(out)
    sliced = []
    for offset in itertools.product(*[range(k) for k in kernel]):
        starts = [offset[i] * dilations[i] for i in range(rank)]
        stops = [starts[i] + (out[i] - 1) * strides[i] + 1 for i in range(rank)]
        tap = b.op("Slice", [x, b.ints(starts, "starts"), b.ints(stops, "ends"), b.ints(list(range(2, rank + 2)), "axes"),
                             b.ints(strides, "steps")])
        sliced.append(b.reshape(tap, [n, channels, 1, length]))
    patches = b.op("Concat", sliced, axis=2) if len(sliced) > 1 else sliced[0]
    patches = b.reshape(patches, [n, group, group_channels * taps, length])
    weights = b.reshape(node.input[1], [group, filters // group, group_channels * taps])
    product = b.op("MatMul", [weights, patches])
    has_bias = len(node.input) > 2 and node.input[2]
    result = b.reshape(product, [n, filters, *out], None if has_bias else output)
    if has_bias:
        bias = b.reshape(node.input[2], [filters, *([1] * rank)])
        b.op("Add", [result, bias], output)


def _transpose_pads(spatial: list[int], kernel: list[int], strides: list[int], dilations: list[int],
                    out: list[int], attributes: dict[str, Any]) -> list[int]:
    """Where ConvTranspose's output starts in its uncropped result, per spatial axis (onnxruntime's
    rule: given pads; else the padding an output_shape or SAME implies, split as auto_pad says)."""
    rank = len(spatial)
    auto_pad = attributes.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    output_padding = list(attributes.get("output_padding", [0] * rank))
    if "output_shape" not in attributes and auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        return list(attributes.get("pads", [0] * (2 * rank)))[:rank]
    begins = []
    for i in range(rank):
        total = strides[i] * (spatial[i] - 1) + output_padding[i] + (kernel[i] - 1) * dilations[i] + 1 - out[i]
        begins.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
    return begins


def _lower_conv_transpose(b: Builder, node: Any, x_shape: list[int], w_shape: list[int], out_shape: list[int],
                          attributes: dict[str, Any], output: str) -> tuple[Any, list[int], list[int]]:
    """ConvTranspose as a Conv over the input zero-stuffed and cropped (see the module docstring).
    Returns the Conv node (still to be lowered) with its input and weight shapes."""
    import numpy as np
    from onnx import helper

    rank = len(x_shape) - 2
    spatial, kernel, out = x_shape[2:], w_shape[2:], out_shape[2:]
    channels, group_filters = w_shape[0], w_shape[1]
    group = int(attributes.get("group", 1))
    strides = list(attributes.get("strides", [1] * rank))
    dilations = list(attributes.get("dilations", [1] * rank))
    begins = _transpose_pads(spatial, kernel, strides, dilations, out, attributes)
    x, shape = node.input[0], list(x_shape)
    for i in range(rank):
        reach = (kernel[i] - 1) * dilations[i]
        stuffed = np.zeros((out[i] + reach, spatial[i]), np.float32)  # (new length, old length)
        for position in range(spatial[i]):
            row = reach + position * strides[i] - begins[i]
            if 0 <= row < stuffed.shape[0]:
                stuffed[row, position] = 1.0
        x, shape = b.along_axis(x, shape, 2 + i, stuffed)
    taps = math.prod(kernel)
    flipped_order = b.ints(list(range(taps - 1, -1, -1)), "flip")
    w = b.reshape(node.input[1], [group, channels // group, group_filters, taps])
    w = b.op("Transpose", [w], perm=[0, 2, 1, 3])
    w = b.reshape(w, [group * group_filters, channels // group, taps])
    w = b.op("Gather", [w, flipped_order], axis=2)  # reversing the flattened taps flips every axis
    w = b.reshape(w, [group * group_filters, channels // group, *kernel])
    conv_inputs = [x, w] + ([node.input[2]] if len(node.input) > 2 and node.input[2] else [])
    conv = helper.make_node("Conv", conv_inputs, [output], name=b.name("conv"), group=group, dilations=dilations,
                            strides=[1] * rank, pads=[0] * (2 * rank))
    return conv, shape, [group * group_filters, channels // group, *kernel]


def lower_dynamic_convolutions(model: Any) -> list[str]:
    """Conv and ConvTranspose whose weights are not constants, lowered (static shapes only)."""
    constants = {t.name for t in model.graph.initializer}
    shapes, types = known_shapes(model), elem_types(model)
    nodes, changed = [], []
    for index, node in enumerate(model.graph.node):
        if node.op_type not in ("Conv", "ConvTranspose") or node.domain not in ("", "ai.onnx") \
                or len(node.input) < 2 or node.input[1] in constants:
            nodes.append(node)
            continue
        x_shape, w_shape, out_shape = shapes.get(node.input[0]), shapes.get(node.input[1]), shapes.get(node.output[0])
        if not (x_shape is not None and w_shape is not None and out_shape is not None) or len(x_shape) not in (3, 4, 5) \
                or not is_float32(node.input[0], types):
            nodes.append(node)
            continue
        b = Builder(model, f"{node.name or node.op_type}__lowered{index}")
        attributes = node_attributes(node)
        if node.op_type == "ConvTranspose":
            conv, conv_x, conv_w = _lower_conv_transpose(b, node, x_shape, w_shape, out_shape, attributes,
                                                         node.output[0])
            _lower_conv(b, conv, conv_x, conv_w, node_attributes(conv), node.output[0])
        else:
            _lower_conv(b, node, x_shape, w_shape, attributes, node.output[0])
        nodes.extend(b.nodes)
        changed.append(node.op_type)
    return replace_nodes(model, nodes, changed)


def _constant_values(model: Any) -> dict[str, Any]:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _axis_matrix(node: Any, attributes: dict[str, Any], length: int, new_length: int,
                 scale: float | None) -> Any:
    """Resize's interpolation matrix (new_length x length) for one axis, as onnxruntime computes
    it: the same Resize, with this axis's scale or size, applied to an identity matrix."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    kept = {k: v for k, v in attributes.items() if k not in ("axes", "keep_aspect_ratio_policy")}
    if scale is not None:
        inputs = ["x", "", "scales"]
        extra = [helper.make_tensor("scales", TensorProto.FLOAT, [2], [1.0, scale])]
    else:
        inputs = ["x", "", "", "sizes"]
        extra = [helper.make_tensor("sizes", TensorProto.INT64, [2], [length, new_length])]
    graph = helper.make_graph(
        [helper.make_node("Resize", inputs, ["y"], **kept)], "axis",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [length, length])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [length, new_length])], initializer=extra)
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    probe.ir_version = 9
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {"x": np.eye(length, dtype=np.float32)})
    if result.shape != (length, new_length):
        raise ValueError(f"Resize probe gave shape {result.shape}")
    return result.T  # row j: the weights output position j takes from each input position


def lower_resizes(model: Any) -> list[str]:
    """Resize (and Upsample) of a static-shape float32 tensor with constant scales or sizes, as one
    MatMul per resized axis. Not tf_crop_and_resize (an affine map, not a linear one) nor
    keep_aspect_ratio_policy other than stretch."""
    if _opset(model) < 11:  # Resize-10 takes (X, scales): not the inputs read here
        return []
    shapes, types, constants = known_shapes(model), elem_types(model), _constant_values(model)
    nodes, changed = [], []
    for index, node in enumerate(model.graph.node):
        attributes = node_attributes(node)
        mode = attributes.get("coordinate_transformation_mode", b"half_pixel")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        policy = attributes.get("keep_aspect_ratio_policy", b"stretch")
        policy = policy.decode() if isinstance(policy, bytes) else policy
        x_shape, out_shape = shapes.get(node.input[0]) if node.input else None, shapes.get(node.output[0])
        scales_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        sizes_name = node.input[3] if len(node.input) > 3 and node.input[3] else None
        if node.op_type != "Resize" or node.domain not in ("", "ai.onnx") or mode == "tf_crop_and_resize" \
                or policy != "stretch" or not (x_shape is not None and out_shape is not None) \
                or not is_float32(node.input[0], types) or len(x_shape) != len(out_shape) \
                or (scales_name and scales_name not in constants) or (sizes_name and sizes_name not in constants) \
                or not (scales_name or sizes_name):
            nodes.append(node)
            continue
        rank = len(x_shape)
        axes = [a % rank for a in attributes.get("axes", range(rank))]
        scales = dict(zip(axes, constants[scales_name].tolist())) if scales_name and constants[scales_name].size \
            else None
        b = Builder(model, f"{node.name or 'Resize'}__lowered{index}")
        try:
            x, shape = node.input[0], list(x_shape)
            for axis in range(rank):
                scale = scales.get(axis, 1.0) if scales is not None else None
                if out_shape[axis] == x_shape[axis] and (scale is None or scale == 1.0):
                    continue
                matrix = _axis_matrix(node, attributes, x_shape[axis], out_shape[axis], scale)
                x, shape = b.along_axis(x, shape, axis, matrix)
        except Exception:  # noqa: BLE001 - onnxruntime could not resize one axis alone: keep the op
            nodes.append(node)
            continue
        if x == node.input[0]:
            b.op("Identity", [x], node.output[0])
        else:
            b.nodes[-1].output[0] = node.output[0]
            b.nodes[-1].name = node.output[0]
        nodes.extend(b.nodes)
        changed.append("Resize")
    return replace_nodes(model, nodes, changed)


def _reduce_mean(b: Builder, tensor: str, axes: list[int], opset: int) -> str:
    if opset >= 18:
        return b.op("ReduceMean", [tensor, b.ints(axes, "axes")], keepdims=1)
    return b.op("ReduceMean", [tensor], axes=axes, keepdims=1)


def _normalized(b: Builder, x: str, axes: list[int], epsilon: float, opset: int) -> tuple[str, str, str]:
    """(x - mean) / sqrt(var + epsilon) over AXES, with the mean and the (population) variance."""
    import numpy as np

    mean = _reduce_mean(b, x, axes, opset)
    centered = b.op("Sub", [x, mean])
    variance = _reduce_mean(b, b.op("Mul", [centered, centered]), axes, opset)
    deviation = b.op("Sqrt", [b.op("Add", [variance, b.const(np.array(epsilon, np.float32), "epsilon")])])
    return b.op("Div", [centered, deviation]), mean, variance


def lower_normalizations(model: Any) -> list[str]:
    """BatchNormalization in training mode (batch statistics, and the running ones as outputs) and
    InstanceNormalization whose scale or bias is not constant, as the arithmetic the ONNX
    standard gives for them: onnx2tf has neither (no tensor for the running statistics; an
    InstanceNormalization scale that is a graph input fails)."""
    import numpy as np

    shapes, types, opset = known_shapes(model), elem_types(model), _opset(model)
    constants = {t.name for t in model.graph.initializer}
    nodes, changed = [], []
    for index, node in enumerate(model.graph.node):
        attributes = node_attributes(node)
        x_shape = shapes.get(node.input[0]) if node.input else None
        training = node.op_type == "BatchNormalization" and attributes.get("training_mode", 0) == 1
        instance = node.op_type == "InstanceNormalization" and any(
            name not in constants for name in node.input[1:3])
        if not (training or instance) or node.domain not in ("", "ai.onnx") or x_shape is None \
                or len(x_shape) < 2 or not is_float32(node.input[0], types) or opset < 13:
            nodes.append(node)
            continue
        rank = len(x_shape)
        b = Builder(model, f"{node.name or node.op_type}__lowered{index}")
        per_channel = [1, x_shape[1] or -1, *([1] * (rank - 2))]  # full rank: onnx2tf broadcasts it channel-last
        axes = [0, *range(2, rank)] if training else list(range(2, rank))
        epsilon = float(attributes.get("epsilon", 1e-5))
        normalized, mean, variance = _normalized(b, node.input[0], axes, epsilon, opset)
        scaled = b.op("Mul", [normalized, b.reshape(node.input[1], per_channel)])
        b.op("Add", [scaled, b.reshape(node.input[2], per_channel)], node.output[0])
        if training:
            momentum = b.const(np.array(float(attributes.get("momentum", 0.9)), np.float32), "momentum")
            rest = b.const(np.array(1.0 - float(attributes.get("momentum", 0.9)), np.float32), "rest")
            for output, running, current in zip(node.output[1:3], node.input[3:5], (mean, variance)):
                if output:
                    kept = b.op("Mul", [running, momentum])
                    new = b.op("Mul", [b.reshape(current, [x_shape[1] or -1]), rest])
                    b.op("Add", [kept, new], output)
        nodes.extend(b.nodes)
        changed.append(node.op_type)
    return replace_nodes(model, nodes, changed)


def lower_small_ops(model: Any) -> list[str]:
    """Split into uneven parts by `num_outputs` (onnx2tf's tf.split wants equal parts) as one
    Slice per part, IsInf as comparisons with the infinities (onnx2tf 1.29 fails on it), and a
    float Mod with fmod=1 as x - y * trunc(x / y) (onnx2tf takes the divisor's sign)."""
    import numpy as np

    shapes, types = known_shapes(model), elem_types(model)
    nodes, changed = [], []
    for index, node in enumerate(model.graph.node):
        attributes = node_attributes(node)
        shape = shapes.get(node.input[0]) if node.input else None
        b = Builder(model, f"{node.name or node.op_type}__lowered{index}")
        if node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        if node.op_type == "Split" and "num_outputs" in attributes and shape is not None and len(node.input) < 2:
            axis = int(attributes.get("axis", 0)) % len(shape)
            size, parts = shape[axis], int(attributes["num_outputs"])
            if not isinstance(size, int) or size % parts == 0:
                nodes.append(node)
                continue
            chunk = -(-size // parts)  # ONNX: equal parts of ceil(size / parts), the last one smaller
            for part, output in enumerate(node.output):
                if output:
                    b.op("Slice", [node.input[0], b.ints([part * chunk], "starts"),
                                   b.ints([min(size, (part + 1) * chunk)], "ends"), b.ints([axis], "axes")], output)
        elif node.op_type == "Mod" and attributes.get("fmod", 0) == 1 and is_float32(node.input[0], types):
            # C's fmod: the remainder takes the dividend's sign (x - y * trunc(x / y))
            quotient = b.op("Div", [node.input[0], node.input[1]])
            truncated = b.op("Mul", [b.op("Sign", [quotient]), b.op("Floor", [b.op("Abs", [quotient])])])
            b.op("Sub", [node.input[0], b.op("Mul", [node.input[1], truncated])], node.output[0])
        elif node.op_type == "IsInf" and is_float32(node.input[0], types):
            found = []
            for attribute, value in (("detect_positive", np.inf), ("detect_negative", -np.inf)):
                if attributes.get(attribute, 1):
                    found.append(b.op("Equal", [node.input[0], b.const(np.array(value, np.float32), "inf")]))
            if not found:
                found.append(b.op("Equal", [node.input[0], b.const(np.array(np.nan, np.float32), "nan")]))
            if len(found) == 2:
                b.op("Or", found, node.output[0])
            else:
                b.op("Identity", found, node.output[0])
        else:
            nodes.append(node)
            continue
        nodes.extend(b.nodes)
        changed.append(node.op_type)
    return replace_nodes(model, nodes, changed)


def lower_hardmax(model: Any) -> list[str]:
    """Hardmax as ArgMax (the first of tied maxima, as Hardmax takes) compared with the positions
    along its axis: onnx2tf 1.29 writes it as a one-hot that TF.js computes wrong, and changes its
    layout on rank-3 inputs. Static axis size only."""
    import numpy as np

    shapes, types = known_shapes(model), elem_types(model)
    nodes, changed = [], []
    for index, node in enumerate(model.graph.node):
        shape = shapes.get(node.input[0]) if node.input else None
        axis = int(node_attributes(node).get("axis", -1))
        if node.op_type != "Hardmax" or node.domain not in ("", "ai.onnx") or _opset(model) < 13 or not shape \
                or not isinstance(shape[axis % len(shape)], int) or not is_float32(node.input[0], types):
            nodes.append(node)
            continue
        axis %= len(shape)
        b = Builder(model, f"{node.name or 'Hardmax'}__lowered{index}")
        positions = np.arange(shape[axis], dtype=np.int64).reshape([-1 if d == axis else 1 for d in range(len(shape))])
        first = b.op("ArgMax", [node.input[0]], axis=axis, keepdims=1)
        b.op("Cast", [b.op("Equal", [first, b.const(positions, "positions")])], node.output[0], to=1)
        nodes.extend(b.nodes)
        changed.append("Hardmax")
    return replace_nodes(model, nodes, changed)


def lower_for_tensorflow_kernels(model: Any) -> list[str]:
    """Exact rewrites of ops the TensorFlow targets lack a kernel for, in every prepared form:
    Gelu as x/2 (1 + erf(x / sqrt 2)) (onnx2tf writes tf.nn.gelu, whose Erfc TF.js lacks) and
    Softsign as x / (1 + |x|) (TFLite has no builtin, TF.js no kernel). (Det and a one-element Gemm
    bias were tried too: onnx2tf converts the rewrites to wrong numbers, or TF.js still does.)"""
    import numpy as np

    shapes, types = known_shapes(model), elem_types(model)
    nodes, changed = [], []
    for index, node in enumerate(model.graph.node):
        shape = shapes.get(node.input[0]) if node.input else None
        attributes = node_attributes(node)
        b = Builder(model, f"{node.name or node.op_type}__lowered{index}")
        if node.domain not in ("", "ai.onnx") or not node.input or not is_float32(node.input[0], types):
            nodes.append(node)
            continue
        if node.op_type == "Gelu" and attributes.get("approximate", b"none") in (b"none", "none"):
            half = b.const(np.array(0.5, np.float32), "half")
            erf = b.op("Erf", [b.op("Mul", [node.input[0], b.const(np.array(1 / np.sqrt(2), np.float32), "s")])])
            one = b.const(np.array(1.0, np.float32), "one")
            b.op("Mul", [b.op("Mul", [node.input[0], half]), b.op("Add", [one, erf])], node.output[0])
        elif node.op_type == "Softsign":
            one = b.const(np.array(1.0, np.float32), "one")
            b.op("Div", [node.input[0], b.op("Add", [one, b.op("Abs", [node.input[0]])])], node.output[0])
        else:
            nodes.append(node)
            continue
        nodes.extend(b.nodes)
        changed.append(node.op_type)
    return replace_nodes(model, nodes, changed)


def lower_rms_normalization(model: Any) -> list[str]:
    """RMSNormalization of a static-shape input as its arithmetic with the scale broadcast at full
    rank (onnx2tf 1.29 fails on the op and on ONNX's body for it on rank-4 inputs, whose scale is
    broadcast from a lower rank). Runs before expansion, so that body never replaces it."""
    import numpy as np

    shapes, types, opset = known_shapes(model), elem_types(model), _opset(model)
    nodes, changed = [], []
    for index, node in enumerate(model.graph.node):
        shape = shapes.get(node.input[0]) if node.input else None
        scale_shape = shapes.get(node.input[1]) if len(node.input) > 1 else None
        attributes = node_attributes(node)
        if node.op_type != "RMSNormalization" or node.domain not in ("", "ai.onnx") or shape is None                 or scale_shape is None or not is_float32(node.input[0], types) or opset < 18:
            nodes.append(node)
            continue
        rank = len(shape)
        axis = int(attributes.get("axis", -1)) % rank
        b = Builder(model, f"{node.name or 'RMSNormalization'}__lowered{index}")
        square = b.op("Mul", [node.input[0], node.input[0]])
        mean = _reduce_mean(b, square, list(range(axis, rank)), opset)
        epsilon = b.const(np.array(float(attributes.get("epsilon", 1e-5)), np.float32), "epsilon")
        normalized = b.op("Div", [node.input[0], b.op("Sqrt", [b.op("Add", [mean, epsilon])])])
        scale = b.reshape(node.input[1], [1] * (rank - len(scale_shape)) + list(scale_shape))
        b.op("Mul", [normalized, scale], node.output[0])
        nodes.extend(b.nodes)
        changed.append("RMSNormalization")
    return replace_nodes(model, nodes, changed)


def lower_group_normalization(model: Any) -> list[str]:
    """GroupNormalization of a static-shape input as a reshape to (N, groups, rest), the statistics
    over the last axis, a reshape back and a full-rank per-channel scale and bias: onnx2tf 1.29
    converts ONNX's own function body for it (a rank-5 reshape, a rank-3 broadcast of the scale)
    to wrong numbers. Runs before expansion, so that body never replaces it."""
    shapes, types, opset = known_shapes(model), elem_types(model), _opset(model)
    nodes, changed = [], []
    for index, node in enumerate(model.graph.node):
        shape = shapes.get(node.input[0]) if node.input else None
        attributes = node_attributes(node)
        if node.op_type != "GroupNormalization" or node.domain not in ("", "ai.onnx") or shape is None \
                or len(shape) < 3 or not is_float32(node.input[0], types) or opset < 18:
            nodes.append(node)
            continue
        groups, channels, rank = int(attributes["num_groups"]), shape[1], len(shape)
        b = Builder(model, f"{node.name or 'GroupNormalization'}__lowered{index}")
        grouped = b.reshape(node.input[0], [shape[0], groups, -1])
        normalized, _, _ = _normalized(b, grouped, [2], float(attributes.get("epsilon", 1e-5)), opset)
        normalized = b.reshape(normalized, shape)
        per_channel = [1, channels, *([1] * (rank - 2))]

        def channelwise(name: str) -> str:
            if opset >= 21:  # one value per channel; before opset 21, one per group
                return b.reshape(name, per_channel)
            spread = b.op("Expand", [b.reshape(name, [groups, 1]), b.ints([groups, channels // groups], "shape")])
            return b.reshape(spread, per_channel)

        scaled = b.op("Mul", [normalized, channelwise(node.input[1])])
        b.op("Add", [scaled, channelwise(node.input[2])], node.output[0])
        nodes.extend(b.nodes)
        changed.append("GroupNormalization")
    return replace_nodes(model, nodes, changed)


_MAX_POOL_TAPS = 64  # per axis: the window's taps are Slices


def _pool_begin_pads(attributes: dict[str, Any], spatial: list[int], kernel: list[int], strides: list[int],
                     dilations: list[int]) -> tuple[list[int], list[int]]:
    """(begin, end) padding of each spatial axis as the attributes give it (SAME split as ONNX
    says: the larger half at the end for SAME_UPPER, at the beginning for SAME_LOWER)."""
    rank = len(spatial)
    auto_pad = attributes.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pairs = [_same_pads(spatial[i], kernel[i], strides[i], dilations[i], auto_pad) for i in range(rank)]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    if auto_pad == "VALID":
        return [0] * rank, [0] * rank
    pads = list(attributes.get("pads", [0] * (2 * rank)))
    return pads[:rank], pads[rank:]


def lower_pooling(model: Any) -> list[str]:
    """MaxPool (without its Indices output), AveragePool and LpPool of static shapes, pooled one
    axis at a time (a window's max or sum is one over each axis in turn): per axis, its taps as
    strided Slices of the input padded with -inf or 0, combined with Max or Add; an average divides
    by the count of the taps each window takes in (a constant: with count_include_pad, the padded
    ones too). onnx2tf changes the output shape of dilated and SAME_LOWER pooling."""
    import numpy as np

    shapes, types = known_shapes(model), elem_types(model)
    nodes, changed = [], []
    for index, node in enumerate(model.graph.node):
        shape = shapes.get(node.input[0]) if node.input else None
        out_shape = shapes.get(node.output[0]) if node.output else None
        attributes = node_attributes(node)
        kernel = list(attributes.get("kernel_shape", []))
        if node.op_type not in ("MaxPool", "AveragePool", "LpPool") or node.domain not in ("", "ai.onnx") \
                or shape is None or out_shape is None or len(shape) < 3 or len(kernel) != len(shape) - 2 \
                or (len(node.output) > 1 and node.output[1]) or attributes.get("storage_order", 0) \
                or max(kernel) > _MAX_POOL_TAPS or not is_float32(node.input[0], types):
            nodes.append(node)
            continue
        rank, spatial, out = len(kernel), shape[2:], out_shape[2:]
        strides = list(attributes.get("strides", [1] * rank))
        dilations = list(attributes.get("dilations", [1] * rank))
        begins, ends = _pool_begin_pads(attributes, spatial, kernel, strides, dilations)
        b = Builder(model, f"{node.name or node.op_type}__lowered{index}")
        x = node.input[0]
        power = float(attributes.get("p", 2)) if node.op_type == "LpPool" else None
        if power is not None:
            x = b.op("Pow", [b.op("Abs", [x]), b.const(np.array(power, np.float32), "p")])
        fill = -np.inf if node.op_type == "MaxPool" else 0.0
        combine = "Max" if node.op_type == "MaxPool" else "Add"
        counts = []
        for i in range(rank):
            axis = 2 + i
            reach = (out[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1  # padded length read
            after = max(0, reach - spatial[i] - begins[i])
            if begins[i] or after:
                pads = [0] * (2 * len(shape))
                pads[axis], pads[len(shape) + axis] = begins[i], after
                x = b.op("Pad", [x, b.ints(pads, "pads"), b.const(np.array(fill, np.float32), "fill")],
                         mode="constant")
            pooled = None
            for tap in range(kernel[i]):
                start = tap * dilations[i]
                piece = b.op("Slice", [x, b.ints([start], "s"), b.ints([start + (out[i] - 1) * strides[i] + 1], "e"),
                                       b.ints([axis], "a"), b.ints([strides[i]], "step")])
                pooled = piece if pooled is None else b.op(combine, [pooled, piece])
            x = pooled
            # how many taps of each window fall inside the input (or, counting pads, inside the
            # explicitly padded input)
            positions = np.arange(out[i])[:, None] * strides[i] + np.arange(kernel[i])[None, :] * dilations[i] \
                - begins[i]
            high = spatial[i] + (ends[i] if attributes.get("count_include_pad", 0) else 0)
            low = -begins[i] if attributes.get("count_include_pad", 0) else 0
            counts.append(((positions >= low) & (positions < high)).sum(axis=1))
        if node.op_type == "AveragePool":
            divisor = counts[0]
            for more in counts[1:]:
                divisor = np.multiply.outer(divisor, more)
            divisor = np.maximum(divisor, 1).astype(np.float32).reshape([1, 1, *out])
            x = b.op("Div", [x, b.const(divisor, "count")])
        elif power is not None:
            x = b.op("Pow", [x, b.const(np.array(1.0 / power, np.float32), "inverse_p")])
        b.op("Identity", [x], node.output[0])
        nodes.extend(b.nodes)
        changed.append(node.op_type)
    return replace_nodes(model, nodes, changed)
