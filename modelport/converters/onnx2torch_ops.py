"""ONNX ops onnx2torch 1.5 lacks, registered through its own `add_converter`.

Each is a small torch module that the TorchScript trace records like onnx2torch's own; each
follows the ONNX operator spec of its version (the conformance table tests them against the
ONNX backend node tests). Registered once per process, before the first conversion.
"""

from __future__ import annotations

import math
from typing import Any

_registered = False

# Ops added after opset 18 that modelport converts itself. The onnx version converter cannot take
# them down to onnx2torch's opset 18 (they do not exist there), so `own_newer_ops` moves them to
# this domain first, where the graph keeps them as they are and these converters take them.
NEWER_DOMAIN = "modelport_newer"  # no dot: onnx2torch names modules domain/op
NEWER_OPS = ("Gelu", "GroupNormalization", "RMSNormalization", "Attention")


def _newer(node: Any) -> bool:
    """Ops added after opset 18, and AveragePool using the dilations opset 19 gave it."""
    if node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type == "AveragePool":
        return any(a.name == "dilations" and any(d != 1 for d in a.ints) for a in node.attribute)
    return node.op_type in NEWER_OPS


def own_newer_ops(model: Any) -> Any:
    """MODEL with its newer nodes (`_newer`) in NEWER_DOMAIN (a copy; the input is left as it was)."""
    import onnx

    if not any(_newer(n) for n in model.graph.node):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        if _newer(node):
            node.domain = NEWER_DOMAIN
    if not any(o.domain == NEWER_DOMAIN for o in copy.opset_import):
        copy.opset_import.append(onnx.helper.make_opsetid(NEWER_DOMAIN, 1))
    return copy


def register() -> None:
    global _registered
    if _registered:
        return
    import torch
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription, add_converter
    from onnx2torch.utils.common import OnnxToTorchModule, OperationConverterResult, onnx_mapping_from_node

    def new(op: str, version: int) -> Any:
        """add_converter, skipping versions a newer onnx2torch registers itself."""
        if OperationDescription("", op, version) in _CONVERTER_REGISTRY:
            return lambda converter: converter
        return add_converter(operation_type=op, version=version)

    class Size(torch.nn.Module, OnnxToTorchModule):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor(x.numel(), dtype=torch.int64)

    class CastLike(torch.nn.Module, OnnxToTorchModule):
        def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
            return x.to(like.dtype)

    class Reduce18(torch.nn.Module, OnnxToTorchModule):
        """The Reduce ops from opset 18 (ReduceSum from 13): the axes are an optional input."""

        def __init__(self, kind: str, keepdims: bool, noop_with_empty_axes: bool) -> None:
            super().__init__()
            self.kind, self.keepdims, self.noop = kind, keepdims, noop_with_empty_axes

        def forward(self, x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
            dims = [int(a) % max(x.dim(), 1) for a in axes.tolist()] if axes is not None else []
            if not dims:
                if self.noop:
                    return x
                dims = list(range(x.dim()))
            if not dims:  # a scalar: nothing to reduce
                return x
            kind, keep = self.kind, self.keepdims
            if kind == "ReduceMax":
                return torch.amax(x, dim=dims, keepdim=keep)
            if kind == "ReduceMin":
                return torch.amin(x, dim=dims, keepdim=keep)
            if kind == "ReduceMean":
                return torch.mean(x, dim=dims, keepdim=keep)
            if kind == "ReduceLogSumExp":
                return torch.logsumexp(x, dim=dims, keepdim=keep)
            if kind == "ReduceProd":
                for dim in sorted(dims, reverse=True):
                    x = torch.prod(x, dim=dim, keepdim=keep)
                return x
            if kind in ("ReduceL1", "ReduceL2", "ReduceSumSquare"):
                x = x.abs() if kind == "ReduceL1" else x * x
            total = torch.sum(x, dim=dims, keepdim=keep)
            if kind == "ReduceL2":
                return torch.sqrt(total)
            if kind == "ReduceLogSum":
                return torch.log(total)
            return total

    class Split18(torch.nn.Module, OnnxToTorchModule):
        """Split from opset 18: sizes from the `split` input, or `num_outputs` chunks of
        ceil(length / num_outputs), the last one smaller."""

        def __init__(self, axis: int, num_outputs: int) -> None:
            super().__init__()
            self.axis, self.num_outputs = axis, num_outputs

        def forward(self, x: torch.Tensor, split: torch.Tensor | None = None) -> list[torch.Tensor]:
            if split is not None:
                return list(torch.split(x, [int(s) for s in split.tolist()], dim=self.axis))
            return list(torch.split(x, math.ceil(x.shape[self.axis] / self.num_outputs), dim=self.axis))

    @new("Size", 1)
    @new("Size", 13)
    def _size(node: Any, graph: Any) -> Any:
        return OperationConverterResult(torch_module=Size(), onnx_mapping=onnx_mapping_from_node(node))

    @new("CastLike", 15)
    def _cast_like(node: Any, graph: Any) -> Any:
        return OperationConverterResult(torch_module=CastLike(), onnx_mapping=onnx_mapping_from_node(node))

    def _reduce(node: Any, graph: Any) -> Any:
        attributes = node.attributes
        module = Reduce18(node.operation_type, bool(attributes.get("keepdims", 1)),
                          bool(attributes.get("noop_with_empty_axes", 0)))
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    for op in ("ReduceMax", "ReduceMin", "ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
               "ReduceLogSumExp", "ReduceSumSquare"):
        new(op, 18)(_reduce)

    @new("Split", 18)
    def _split(node: Any, graph: Any) -> Any:
        attributes = node.attributes
        module = Split18(int(attributes.get("axis", 0)), int(attributes.get("num_outputs", len(node.output_values))))
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    class Flatten(torch.nn.Module, OnnxToTorchModule):
        """ONNX Flatten for any axis in [-rank, rank]: (prod(dims[:axis]), prod(dims[axis:]))."""

        def __init__(self, axis: int) -> None:
            super().__init__()
            self.axis = axis

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            axis = self.axis % x.dim() if self.axis < 0 else self.axis
            outer = 1
            for size in x.shape[:axis]:
                outer *= int(size)
            inner = 1
            for size in x.shape[axis:]:
                inner *= int(size)
            return x.reshape(outer, inner)

    for version in (1, 9, 11, 13, 21):
        # onnx2torch's own flattens everything for axis 0 and fails on negative axes: its axis 1 stays.
        description = OperationDescription("", "Flatten", version)
        theirs = _CONVERTER_REGISTRY.get(description)

        def _flatten(node: Any, graph: Any, theirs: Any = theirs) -> Any:
            axis = int(node.attributes.get("axis", 1))
            if axis == 1 and theirs is not None:
                return theirs(node, graph)
            return OperationConverterResult(torch_module=Flatten(axis), onnx_mapping=onnx_mapping_from_node(node))

        _CONVERTER_REGISTRY[description] = _flatten

    class Clip(torch.nn.Module, OnnxToTorchModule):
        """Clip whose bounds are tensors computed in the graph (or graph inputs), not constants."""

        def forward(self, x: torch.Tensor, min_value: torch.Tensor | None = None,
                    max_value: torch.Tensor | None = None) -> torch.Tensor:
            if min_value is not None:
                x = torch.maximum(x, min_value.to(x.dtype))
            if max_value is not None:
                x = torch.minimum(x, max_value.to(x.dtype))
            return x

    class Hardmax(torch.nn.Module, OnnxToTorchModule):
        def __init__(self, axis: int) -> None:
            super().__init__()
            self.axis = axis

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # torch.argmax returns the first of equal maxima, as ONNX asks
            hot = torch.nn.functional.one_hot(torch.argmax(x, dim=self.axis), x.shape[self.axis])
            return hot.movedim(-1, self.axis).to(x.dtype)

    class LayerNorm(torch.nn.Module, OnnxToTorchModule):
        """LayerNormalization with its optional Mean and InvStdDev outputs (onnx2torch gives Y only)."""

        def __init__(self, axis: int, epsilon: float, outputs: int) -> None:
            super().__init__()
            self.axis, self.epsilon, self.outputs = axis, epsilon, outputs

        def forward(self, x: torch.Tensor, scale: torch.Tensor,
                    bias: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
            dims = list(range(self.axis % x.dim(), x.dim()))
            mean = x.mean(dim=dims, keepdim=True)
            inv_std = torch.rsqrt(((x - mean) ** 2).mean(dim=dims, keepdim=True) + self.epsilon)
            y = (x - mean) * inv_std * scale
            if bias is not None:
                y = y + bias
            return (y, mean, inv_std)[: self.outputs]

    def _replace(op: str, versions: tuple[int, ...], ours: Any) -> None:
        """Our converter where onnx2torch's refuses the node (NotImplementedError) or would drop
        what the node asks for (`ours` returns None to leave the node to theirs)."""
        for version in versions:
            description = OperationDescription("", op, version)
            theirs = _CONVERTER_REGISTRY.get(description)

            def convert(node: Any, graph: Any, theirs: Any = theirs) -> Any:
                mine = ours(node, graph)
                if mine is not None or theirs is None:
                    if mine is None:
                        raise NotImplementedError(f"operation_type='{node.operation_type}', version={version}")
                    return mine
                return theirs(node, graph)

            _CONVERTER_REGISTRY[description] = convert

    def _clip(node: Any, graph: Any) -> Any:
        from onnx2torch.utils.common import get_const_value

        bounds = [name for name in node.input_values[1:] if name]
        try:
            for name in bounds:
                get_const_value(name, graph)
            if bounds:
                return None  # constant bounds: onnx2torch's own
        except KeyError:
            pass
        return OperationConverterResult(torch_module=Clip(), onnx_mapping=onnx_mapping_from_node(node))

    _replace("Clip", (11, 12, 13), _clip)

    class TensorWeightConv(torch.nn.Module, OnnxToTorchModule):
        """Conv / ConvTranspose whose weights are a graph input or computed (onnx2torch needs
        constants): torch's functional conv, ONNX's padding applied (or cropped) around it."""

        def __init__(self, transpose: bool, attributes: dict) -> None:
            super().__init__()
            self.transpose = transpose
            self.strides = list(attributes.get("strides", []))
            self.dilations = list(attributes.get("dilations", []))
            self.pads = list(attributes.get("pads", []))
            self.group = int(attributes.get("group", 1))
            self.auto_pad = str(attributes.get("auto_pad", "NOTSET"))
            self.output_padding = list(attributes.get("output_padding", []))
            self.output_shape = list(attributes.get("output_shape", []))

        def _same(self, total: int) -> tuple[int, int]:
            small, large = total // 2, total - total // 2
            return (small, large) if self.auto_pad == "SAME_UPPER" else (large, small)

        def forward(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
            n = x.dim() - 2
            strides, dilations = self.strides or [1] * n, self.dilations or [1] * n
            extent = [(int(w.shape[2 + i]) - 1) * dilations[i] + 1 for i in range(n)]
            size = [int(d) for d in x.shape[2:]]
            pads = self.pads or [0] * (2 * n)
            functional = torch.nn.functional
            if not self.transpose:
                if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                    pairs = [self._same(max((-(-size[i] // strides[i]) - 1) * strides[i] + extent[i] - size[i], 0))
                             for i in range(n)]
                    pads = [p[0] for p in pairs] + [p[1] for p in pairs]
                elif self.auto_pad == "VALID":
                    pads = [0] * (2 * n)
                torch_pads = [v for i in reversed(range(n)) for v in (pads[i], pads[n + i])]
                conv = (functional.conv1d, functional.conv2d, functional.conv3d)[n - 1]
                return conv(functional.pad(x, torch_pads), w, b, stride=strides, dilation=dilations, groups=self.group)
            extra = self.output_padding or [0] * n
            full = [strides[i] * (size[i] - 1) + extent[i] + extra[i] for i in range(n)]
            wanted = self.output_shape[-n:] if self.output_shape else (
                [size[i] * strides[i] for i in range(n)] if self.auto_pad in ("SAME_UPPER", "SAME_LOWER") else None)
            if wanted is not None:
                pairs = [self._same(full[i] - int(wanted[i])) for i in range(n)]
                pads = [p[0] for p in pairs] + [p[1] for p in pairs]
            conv_t = (functional.conv_transpose1d, functional.conv_transpose2d, functional.conv_transpose3d)[n - 1]
            y = conv_t(x, w, None, stride=strides, groups=self.group, dilation=dilations)
            # output_padding is added at the end of each dim; ONNX's pads crop (negative: zero-extend)
            torch_pads = [v for i in reversed(range(n)) for v in (-pads[i], extra[i] - pads[n + i])]
            y = functional.pad(y, torch_pads)
            if b is not None:
                y = y + b.reshape(1, -1, *([1] * n))
            return y

    def _tensor_weights(transpose: bool) -> Any:
        def convert(node: Any, graph: Any) -> Any:
            from onnx2torch.utils.common import get_const_value

            try:
                get_const_value(node.input_values[1], graph)
                return None  # constant weights: onnx2torch's own
            except KeyError:
                return OperationConverterResult(torch_module=TensorWeightConv(transpose, dict(node.attributes)),
                                                onnx_mapping=onnx_mapping_from_node(node))
        return convert

    _replace("Conv", (1, 11), _tensor_weights(False))
    _replace("ConvTranspose", (1, 11), _tensor_weights(True))
    _replace("LayerNormalization", (17,), lambda node, graph: None if len(node.output_values) < 2 else
             OperationConverterResult(torch_module=LayerNorm(int(node.attributes.get("axis", -1)),
                                                             float(node.attributes.get("epsilon", 1e-5)),
                                                             len(node.output_values)),
                                      onnx_mapping=onnx_mapping_from_node(node)))

    @new("Hardmax", 13)
    def _hardmax(node: Any, graph: Any) -> Any:
        return OperationConverterResult(torch_module=Hardmax(int(node.attributes.get("axis", -1))),
                                        onnx_mapping=onnx_mapping_from_node(node))

    class GridSample(torch.nn.Module, OnnxToTorchModule):
        """ONNX GridSample was specified after torch's grid_sample: the same modes and padding."""

        def __init__(self, mode: str, padding_mode: str, align_corners: bool) -> None:
            super().__init__()
            self.mode = {"linear": "bilinear", "cubic": "bicubic"}.get(mode, mode)
            self.padding_mode, self.align_corners = padding_mode, align_corners

        def forward(self, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.grid_sample(x, grid.to(x.dtype), mode=self.mode, padding_mode=self.padding_mode,
                                                   align_corners=self.align_corners)

    @new("GridSample", 16)
    def _grid_sample(node: Any, graph: Any) -> Any:
        attributes = node.attributes
        module = GridSample(str(attributes.get("mode", "bilinear")), str(attributes.get("padding_mode", "zeros")),
                            bool(attributes.get("align_corners", 0)))
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    class LpPool(torch.nn.Module, OnnxToTorchModule):
        """(sum over each window of |x|^p)^(1/p), after ONNX's zero padding."""

        def __init__(self, kernel: list[int], strides: list[int], pads: list[int], p: float, auto_pad: str) -> None:
            super().__init__()
            self.kernel, self.strides, self.pads, self.p, self.auto_pad = kernel, strides, pads, p, auto_pad

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n = len(self.kernel)
            strides = self.strides or [1] * n
            pads = self.pads or [0] * (2 * n)
            if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                size = [int(d) for d in x.shape[2:]]
                totals = [max((-(-size[i] // strides[i]) - 1) * strides[i] + self.kernel[i] - size[i], 0)
                          for i in range(n)]
                upper = self.auto_pad == "SAME_UPPER"
                pads = ([t // 2 if upper else t - t // 2 for t in totals]
                        + [t - t // 2 if upper else t // 2 for t in totals])
            elif self.auto_pad == "VALID":
                pads = [0] * (2 * n)
            functional = torch.nn.functional
            x = functional.pad(x.abs() ** self.p, [v for i in reversed(range(n)) for v in (pads[i], pads[n + i])])
            pool = (functional.avg_pool1d, functional.avg_pool2d, functional.avg_pool3d)[n - 1]
            windows = 1
            for k in self.kernel:
                windows *= k
            return (pool(x, self.kernel, strides) * windows) ** (1.0 / self.p)

    def _lp_pool(node: Any, graph: Any) -> Any:
        attributes = node.attributes
        if any(d != 1 for d in attributes.get("dilations", [])) or attributes.get("ceil_mode", 0):
            raise NotImplementedError("operation_type='LpPool', version=18 with dilations or ceil_mode")
        module = LpPool(list(attributes["kernel_shape"]), list(attributes.get("strides", [])),
                        list(attributes.get("pads", [])), float(attributes.get("p", 2)),
                        str(attributes.get("auto_pad", "NOTSET")))
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    for version in (11, 18):
        new("LpPool", version)(_lp_pool)

    class Mish(torch.nn.Module, OnnxToTorchModule):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.mish(x)

    class SpaceDepth(torch.nn.Module, OnnxToTorchModule):
        """DepthToSpace (DCR and CRD) and SpaceToDepth, by the reshapes and transposes of the spec."""

        def __init__(self, op: str, blocksize: int, mode: str) -> None:
            super().__init__()
            self.op, self.block, self.mode = op, blocksize, mode

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, c, h, w = (int(d) for d in x.shape)
            k = self.block
            if self.op == "SpaceToDepth":
                y = x.reshape(b, c, h // k, k, w // k, k).permute(0, 3, 5, 1, 2, 4)
                return y.reshape(b, c * k * k, h // k, w // k)
            if self.mode == "DCR":
                y = x.reshape(b, k, k, c // (k * k), h, w).permute(0, 3, 4, 1, 5, 2)
            else:
                y = x.reshape(b, c // (k * k), k, k, h, w).permute(0, 1, 4, 2, 5, 3)
            return y.reshape(b, c // (k * k), h * k, w * k)

    @new("Mish", 18)
    def _mish(node: Any, graph: Any) -> Any:
        return OperationConverterResult(torch_module=Mish(), onnx_mapping=onnx_mapping_from_node(node))

    def _space_depth(node: Any, graph: Any) -> Any:
        attributes = node.attributes
        module = SpaceDepth(node.operation_type, int(attributes["blocksize"]), str(attributes.get("mode", "DCR")))
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    for version in (1, 13):
        new("SpaceToDepth", version)(_space_depth)
    _replace("DepthToSpace", (1, 11, 13), lambda node, graph: _space_depth(node, graph))

    from .onnx2torch_rnn import recurrent_converter

    for op in ("RNN", "GRU", "LSTM"):
        for version in (7, 14):
            new(op, version)(recurrent_converter(OperationConverterResult))

    _register_average_pool(torch, add_converter, _replace, OnnxToTorchModule, OperationConverterResult,
                           onnx_mapping_from_node)
    _register_elementwise(torch, new, _replace, OnnxToTorchModule, OperationConverterResult, onnx_mapping_from_node)
    _register_newer(torch, add_converter, OnnxToTorchModule, OperationConverterResult, onnx_mapping_from_node)

    resize13 = _CONVERTER_REGISTRY.get(OperationDescription("", "Resize", 13))
    if resize13 is not None:
        @new("Resize", 18)
        def _resize(node: Any, graph: Any) -> Any:
            # Resize 18 added antialias, axes and keep_aspect_ratio_policy; at their defaults it is Resize 13.
            attributes = node.attributes
            if (attributes.get("antialias", 0) or "axes" in attributes
                    or attributes.get("keep_aspect_ratio_policy", "stretch") != "stretch"):
                raise NotImplementedError("operation_type='Resize', version=18 with antialias, axes or "
                                          "keep_aspect_ratio_policy")
            return resize13(node, graph)

    _registered = True


def _register_newer(torch: Any, add_converter: Any, base: Any, result: Any, mapping_of: Any) -> None:
    """Converters for NEWER_OPS, in NEWER_DOMAIN (see own_newer_ops), from their ONNX specs."""

    class Gelu(torch.nn.Module, base):
        def __init__(self, approximate: str) -> None:
            super().__init__()
            self.approximate = approximate

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.gelu(x, approximate=self.approximate)

    class GroupNorm(torch.nn.Module, base):
        """GroupNormalization 21 (scale and bias per channel) and 18 (per group)."""

        def __init__(self, groups: int, epsilon: float) -> None:
            super().__init__()
            self.groups, self.epsilon = groups, epsilon

        def forward(self, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            channels = int(x.shape[1])
            if scale.numel() != channels:  # opset 18: one value per group
                scale = scale.repeat_interleave(channels // self.groups)
                bias = bias.repeat_interleave(channels // self.groups)
            return torch.nn.functional.group_norm(x, self.groups, scale, bias, self.epsilon)

    class RMSNorm(torch.nn.Module, base):
        def __init__(self, axis: int, epsilon: float) -> None:
            super().__init__()
            self.axis, self.epsilon = axis, epsilon

        def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            dims = list(range(self.axis % x.dim(), x.dim()))
            return x * torch.rsqrt((x * x).mean(dim=dims, keepdim=True) + self.epsilon) * scale

    class Attention(torch.nn.Module, base):
        """Attention 23 without a KV cache: 3-D (heads from q_num_heads / kv_num_heads) or 4-D
        inputs, grouped-query heads, a boolean or additive mask, is_causal, scale, softcap."""

        def __init__(self, attributes: dict) -> None:
            super().__init__()
            self.is_causal = bool(attributes.get("is_causal", 0))
            self.q_heads = int(attributes.get("q_num_heads", 0))
            self.kv_heads = int(attributes.get("kv_num_heads", 0))
            scale = attributes.get("scale")
            self.scale = float(scale) if scale is not None else None
            self.softcap = float(attributes.get("softcap", 0.0))

        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    attn_mask: torch.Tensor | None = None) -> torch.Tensor:
            three_d = q.dim() == 3
            if three_d:
                batch = int(q.shape[0])
                q = q.reshape(batch, int(q.shape[1]), self.q_heads, -1).transpose(1, 2)
                k = k.reshape(batch, int(k.shape[1]), self.kv_heads, -1).transpose(1, 2)
                v = v.reshape(batch, int(v.shape[1]), self.kv_heads, -1).transpose(1, 2)
            heads, kv_heads = int(q.shape[1]), int(k.shape[1])
            if kv_heads != heads:
                k = k.repeat_interleave(heads // kv_heads, dim=1)
                v = v.repeat_interleave(heads // kv_heads, dim=1)
            scale = self.scale if self.scale is not None else 1.0 / float(int(q.shape[-1])) ** 0.5
            scores = (q @ k.transpose(-1, -2)) * scale
            length_q, length_k = int(scores.shape[-2]), int(scores.shape[-1])
            if attn_mask is not None:
                if attn_mask.dtype == torch.bool:
                    scores = scores.masked_fill(~attn_mask, float("-inf"))
                else:
                    scores = scores + attn_mask.to(scores.dtype)
            if self.is_causal:
                keep = torch.ones(length_q, length_k, dtype=torch.bool).tril(0)  # upper-left, as the spec's reference
                scores = scores.masked_fill(~keep, float("-inf"))
            if self.softcap > 0:
                scores = self.softcap * torch.tanh(scores / self.softcap)
            out = torch.softmax(scores, dim=-1) @ v
            if three_d:
                out = out.transpose(1, 2).reshape(int(out.shape[0]), length_q, -1)
            return out

    def register(op: str, build: Any) -> None:
        def convert(node: Any, graph: Any) -> Any:
            return result(torch_module=build(node), onnx_mapping=mapping_of(node))
        add_converter(operation_type=op, version=1, domain=NEWER_DOMAIN)(convert)

    def attention(node: Any) -> Any:
        named_outputs = [name for name in node.output_values if name]
        if len(node.input_values) > 4 and any(node.input_values[4:]) or len(named_outputs) > 1:
            raise NotImplementedError("operation_type='Attention' with a KV cache or extra outputs")
        if node.attributes.get("qk_matmul_output_mode", 0):
            raise NotImplementedError("operation_type='Attention' with qk_matmul_output_mode")
        return Attention(dict(node.attributes))

    register("Gelu", lambda node: Gelu(str(node.attributes.get("approximate", "none"))))
    register("GroupNormalization", lambda node: GroupNorm(int(node.attributes["num_groups"]),
                                                          float(node.attributes.get("epsilon", 1e-5))))
    register("RMSNormalization", lambda node: RMSNorm(int(node.attributes.get("axis", -1)),
                                                      float(node.attributes.get("epsilon", 1e-5))))
    register("Attention", attention)


def _register_elementwise(torch: Any, new: Any, replace: Any, base: Any, result: Any, mapping_of: Any) -> None:
    """Elementwise and small ops, each one line of torch following the ONNX spec."""

    class Lambda(torch.nn.Module, base):
        def __init__(self, op: str, attributes: dict) -> None:
            super().__init__()
            self.op = op
            self.alpha = float(attributes.get("alpha", {"Selu": 1.67326319217681884765625, "ThresholdedRelu": 1.0}
                                              .get(op, 0.0)))
            self.gamma = float(attributes.get("gamma", 1.05070102214813232421875))
            self.bias = float(attributes.get("bias", 0.0))
            self.lambd = float(attributes.get("lambd", 0.5))
            self.axis = int(attributes.get("axis", -1))
            self.outputs = int(attributes.get("_outputs", 1))

        def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, z: torch.Tensor | None = None) -> Any:
            op = self.op
            if op == "Acosh":
                return torch.acosh(x)
            if op == "Asinh":
                return torch.asinh(x)
            if op == "Atanh":
                return torch.atanh(x)
            if op == "Cosh":
                return torch.cosh(x)
            if op == "Sinh":
                return torch.sinh(x)
            if op == "ThresholdedRelu":
                return torch.where(x > self.alpha, x, torch.zeros_like(x))
            if op == "Selu":
                return self.gamma * torch.where(x > 0, x, self.alpha * (torch.exp(x) - 1))
            if op == "Shrink":
                return torch.where(x < -self.lambd, x + self.bias,
                                   torch.where(x > self.lambd, x - self.bias, torch.zeros_like(x)))
            if op == "GreaterOrEqual":
                return x >= y
            if op == "LessOrEqual":
                return x <= y
            if op == "GlobalMaxPool":
                return torch.amax(x, dim=list(range(2, x.dim())), keepdim=True)
            if op == "Det":
                return torch.linalg.det(x)
            if op == "Dropout":  # inference: the identity; its mask output, all true
                return x if self.outputs == 1 else (x, torch.ones_like(x, dtype=torch.bool))
            raise NotImplementedError(f"operation_type='{op}'")

    def convert(node: Any, graph: Any) -> Any:
        attributes = {**node.attributes, "_outputs": len([o for o in node.output_values if o])}
        return result(torch_module=Lambda(node.operation_type, attributes), onnx_mapping=mapping_of(node))

    for op, versions in {"Acosh": (9,), "Asinh": (9,), "Atanh": (9,), "Cosh": (9,), "Sinh": (9,),
                         "ThresholdedRelu": (10, 22), "Shrink": (9,), "GreaterOrEqual": (12, 16),
                         "LessOrEqual": (12, 16), "GlobalMaxPool": (1, 22), "Det": (11, 22)}.items():
        for version in versions:
            new(op, version)(convert)

    def selu(node: Any, graph: Any) -> Any:  # onnx2torch's refuses any alpha but torch's own
        return convert(node, graph) if "alpha" in node.attributes or "gamma" in node.attributes else None

    replace("Selu", (6,), selu)

    def dropout(node: Any, graph: Any) -> Any:  # inference only: onnx2torch refuses a seed it would not use
        training = [name for name in node.input_values[2:3] if name]
        return None if training else convert(node, graph)

    replace("Dropout", (12, 13), dropout)


def _register_average_pool(torch: Any, add_converter: Any, replace: Any, base: Any, result: Any, mapping_of: Any) -> None:
    class AveragePool(torch.nn.Module, base):
        """AveragePool for what onnx2torch refuses (auto_pad SAME_*, dilations, pads past half the
        kernel): window sums by a depthwise conv of ones, divided by the counted positions (the
        padding counts only with count_include_pad; the room ceil_mode adds never counts)."""

        def __init__(self, attributes: dict) -> None:
            super().__init__()
            self.kernel = [int(k) for k in attributes["kernel_shape"]]
            n = len(self.kernel)
            self.strides = [int(v) for v in attributes.get("strides", [1] * n)]
            self.dilations = [int(v) for v in attributes.get("dilations", [1] * n)]
            self.pads = [int(v) for v in attributes.get("pads", [0] * (2 * n))]
            self.auto_pad = str(attributes.get("auto_pad", "NOTSET"))
            self.ceil = bool(attributes.get("ceil_mode", 0))
            self.include_pad = bool(attributes.get("count_include_pad", 0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n = len(self.kernel)
            size = [int(d) for d in x.shape[2:]]
            extent = [(self.kernel[i] - 1) * self.dilations[i] + 1 for i in range(n)]
            begin, end = self.pads[:n], self.pads[n:]
            if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                totals = [max((-(-size[i] // self.strides[i]) - 1) * self.strides[i] + extent[i] - size[i], 0)
                          for i in range(n)]
                small = [t // 2 for t in totals]
                large = [t - t // 2 for t in totals]
                begin, end = (small, large) if self.auto_pad == "SAME_UPPER" else (large, small)
            elif self.auto_pad == "VALID":
                begin, end = [0] * n, [0] * n
            extra = []
            for i in range(n):
                span = size[i] + begin[i] + end[i] - extent[i]
                out = (-(-span // self.strides[i]) if self.ceil else span // self.strides[i]) + 1
                if self.ceil and (out - 1) * self.strides[i] >= size[i] + begin[i]:
                    out -= 1  # the last window must start inside the input or its left padding
                extra.append(max((out - 1) * self.strides[i] + extent[i] - (size[i] + begin[i] + end[i]), 0))
            functional = torch.nn.functional
            padding = [v for i in reversed(range(n)) for v in (begin[i], end[i] + extra[i])]
            counted = torch.ones((1, 1, *size), dtype=x.dtype)
            if self.include_pad:
                counted = functional.pad(counted, [v for i in reversed(range(n)) for v in (begin[i], end[i])], value=1.0)
                counted = functional.pad(counted, [v for i in reversed(range(n)) for v in (0, extra[i])])
            else:
                counted = functional.pad(counted, padding)
            channels = int(x.shape[1])
            conv = (functional.conv1d, functional.conv2d, functional.conv3d)[n - 1]
            ones = torch.ones((channels, 1, *self.kernel), dtype=x.dtype)
            sums = conv(functional.pad(x, padding), ones, stride=self.strides, dilation=self.dilations, groups=channels)
            counts = conv(counted, ones[:1], stride=self.strides, dilation=self.dilations)
            return sums / counts

    def ours(node: Any, graph: Any) -> Any:
        attributes = dict(node.attributes)
        kernel = list(attributes.get("kernel_shape", []))
        pads = list(attributes.get("pads", []))
        unusual = (str(attributes.get("auto_pad", "NOTSET")) in ("SAME_UPPER", "SAME_LOWER")
                   or any(d != 1 for d in attributes.get("dilations", []))
                   or any(2 * p > kernel[i % len(kernel)] for i, p in enumerate(pads)))
        return result(torch_module=AveragePool(attributes), onnx_mapping=mapping_of(node)) if unusual else None

    replace("AveragePool", (1, 7, 10, 11), ours)
    add_converter(operation_type="AveragePool", version=1, domain=NEWER_DOMAIN)(
        lambda node, graph: result(torch_module=AveragePool(dict(node.attributes)), onnx_mapping=mapping_of(node)))
