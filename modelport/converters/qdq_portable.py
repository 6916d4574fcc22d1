"""Make an int8 QDQ ONNX (QuantizeLinear/DequantizeLinear, as tf2onnx writes for a full-int8 TFLite
file) compute correctly under onnxruntime's *default* session options on every x86-64 CPU.

Why: with graph optimizations on (the default), onnxruntime fuses each DQ -> op -> Q group into an
integer kernel (QLinearConv, QLinearMatMul, ...). With int8 weights it runs its U8S8 GEMM (int8
activations are shifted to uint8 first), which on AVX2/AVX-512 CPUs *without VNNI* uses VPMADDUBSW:
the int16 sum of two u8*s8 products saturates. onnxruntime documents this (U8S8 "might suffer from
saturation issues"; U8U8 does not). A fully int8 MobileNetV2 from tf2onnx drifts to cosine ~0.6
against LiteRT there, yet matches with optimizations disabled. A user re-running the file uses the
defaults, so the file itself has to be safe.

What: the same quantized graph, stored in uint8. Every int8 tensor that only travels between
QuantizeLinear, DequantizeLinear and value-preserving data movement (Transpose, Reshape, ...) becomes
uint8 with its zero point moved by +128. That is exact: quantizing gives
clip(round(x/s) + z + 128, 0, 255) = q + 128, and dequantizing (q + 128 - (z + 128)) * s is the same
float. Int8 weights read by DequantizeLinear get +128 on their values and zero points. With uint8
activations *and* uint8 weights onnxruntime picks its U8U8 kernels, which widen before multiplying
and never saturate (it also fuses more: every Conv, Add, pool and MatMul of MobileNetV2, against 36
of its 52 Convs before). The model's interface does not change: an int8 graph input or output is
shifted at the boundary by a DequantizeLinear/QuantizeLinear pair of scale 1 (int8 v <-> uint8
v + 128, exact for all 256 values).

Parts of the graph it cannot prove safe (an op computing on the int8 values, a zero point that is
not a constant, a tensor a subgraph reads) keep their int8: correct, just not rewritten.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Ops whose output elements are input elements, moved or selected (never combined): they commute
# with "add 128, store as uint8". Value: the inputs that carry the quantized data (None: all of
# them). Only output 0 carries it, except for Split (every output).
_MOVERS: dict[str, tuple[int, ...] | None] = {
    "Transpose": (0,), "Reshape": (0,), "Flatten": (0,), "Squeeze": (0,), "Unsqueeze": (0,),
    "Identity": (0,), "Concat": None, "Split": (0,), "Slice": (0,), "Gather": (0,), "Expand": (0,),
    "Tile": (0,), "DepthToSpace": (0,), "SpaceToDepth": (0,), "MaxPool": (0,),
}
_INT8, _UINT8 = 3, 2  # onnx.TensorProto.INT8 / UINT8
_ONNX_DOMAINS = ("", "ai.onnx")


def make_portable(onnx_path: Path) -> dict[str, Any]:
    """Rewrite the int8 QDQ of `onnx_path` in place as uint8 QDQ computing the same values.

    Returns what changed, e.g. {"rewrote": "int8 QDQ -> uint8", "tensors": 120, "weights": 53,
    "boundaries": 2}, or {} with the file untouched when there is no int8 QDQ to rewrite (float
    models, uint8 QDQ, a file this function already rewrote) or when the file fails
    onnx.checker's full check to begin with. Raises onnx.checker.ValidationError, file untouched,
    if the rewritten model fails that check while the original passes it.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    if not any(_is_qdq(n) for n in graph.node):
        return {}

    inits = {t.name: t for t in graph.initializer}
    declared_inputs = {i.name for i in graph.input}
    graph_inputs = declared_inputs - set(inits)
    graph_outputs = {o.name for o in graph.output}
    types = _element_types(onnx, model)
    producer: dict[str, Any] = {}
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for name in node.output:
            if name:
                producer[name] = node
        for i, name in enumerate(node.input):
            if name:
                consumers.setdefault(name, []).append((node, i))
    in_subgraphs = _names_read_by_subgraphs(graph)

    def zero_point(node: Any) -> str:
        return node.input[2] if len(node.input) > 2 else ""

    def zero_point_type(node: Any) -> int | None:
        name = zero_point(node)
        return (inits[name].data_type if name in inits else types.get(name)) if name else None

    def is_mover(node: Any) -> bool:
        return node.op_type in _MOVERS and node.domain in _ONNX_DOMAINS

    def data_inputs(node: Any) -> list[str]:
        which = _MOVERS[node.op_type]
        return [n for i, n in enumerate(node.input) if n and (which is None or i in which)]

    def data_outputs(node: Any) -> list[str]:
        return [n for n in (node.output if node.op_type == "Split" else node.output[:1]) if n]

    # Seeds: the quantized int8 tensors (output of an int8 Q, data input of an int8 DQ).
    seeds = set()
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and _is_qdq(node) and zero_point_type(node) == _INT8:
            seeds.add(node.output[0])
        elif node.op_type == "DequantizeLinear" and _is_qdq(node) and _INT8 in (
                zero_point_type(node), types.get(node.input[0])):
            seeds.add(node.input[0])

    # Grow the seeds through data-movement ops into components: sets of tensors holding the same
    # quantized values, which have to change type together.
    component_of: dict[str, int] = {}
    components: list[set[str]] = []
    for seed in seeds:
        if seed in component_of:
            continue
        members, todo = set(), [seed]
        while todo:
            name = todo.pop()
            if name in members:
                continue
            members.add(name)
            node = producer.get(name)
            if node is not None and is_mover(node):
                todo += data_inputs(node) + data_outputs(node)
            for node, _ in consumers.get(name, []):
                if is_mover(node) and name in data_inputs(node):
                    todo += data_inputs(node) + data_outputs(node)
        for name in members:
            component_of[name] = len(components)
        components.append(members)

    def convertible(members: set[str]) -> bool:
        """Every producer and reader of the component is one this rewrite knows to keep exact."""
        for name in members:
            if name in in_subgraphs or (name in graph_inputs and name in graph_outputs):
                return False
            if name in inits:
                if inits[name].data_type != _INT8 or name in declared_inputs:
                    return False
            elif name in producer:
                node = producer[name]
                if node.op_type == "QuantizeLinear" and _is_qdq(node):
                    if zero_point_type(node) != _INT8 or zero_point(node) not in inits:
                        return False
                elif not is_mover(node):
                    return False
            elif name not in graph_inputs or types.get(name) != _INT8:
                return False
            for node, i in consumers.get(name, []):
                if _is_qdq(node) and i == 2 and name in inits:
                    continue  # an int8 constant that is also some zero point: both get +128
                if node.op_type == "DequantizeLinear" and _is_qdq(node) and i == 0:
                    if zero_point(node) and zero_point(node) not in inits:
                        return False
                elif not (is_mover(node) and name in data_inputs(node)):
                    return False
        return True

    def computes(members: set[str]) -> bool:
        """Whether an integer kernel could read or write the component. One that is only
        requantized (DQ -> Q, e.g. the boundary pairs this function adds) is left as it is."""
        for name in members:
            node = producer.get(name)
            if node is not None and node.op_type == "QuantizeLinear":
                before = producer.get(node.input[0])
                if before is None or before.op_type != "DequantizeLinear":
                    return True
            for node, i in consumers.get(name, []):
                if node.op_type == "DequantizeLinear" and i == 0:
                    after = [n for n, _ in consumers.get(node.output[0], [])]
                    if node.output[0] in graph_outputs or any(n.op_type != "QuantizeLinear" for n in after):
                        return True
        return False

    chosen = [m for m in components if convertible(m) and computes(m)]
    if not chosen:
        return {}
    tensors: set[str] = set().union(*chosen)

    taken = set(inits) | set(producer) | set(consumers) | declared_inputs | graph_outputs

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        return name

    new_inits: list[Any] = []
    shifted: dict[str, str] = {}

    def as_uint8(name: str) -> str:
        """A uint8 copy, +128, of the int8 initializer `name` (one per original)."""
        if name not in shifted:
            shifted[name] = fresh(f"{name}_u8")
            values = numpy_helper.to_array(inits[name]).astype(np.int16) + 128
            new_inits.append(numpy_helper.from_array(values.astype(np.uint8), shifted[name]))
        return shifted[name]

    constants: dict[str, str] = {}

    def constant(base: str, value: Any) -> str:
        if base not in constants:
            constants[base] = fresh(base)
            new_inits.append(numpy_helper.from_array(value, constants[base]))
        return constants[base]

    # Graph inputs in a component: shifted to uint8 once; the graph reads the shifted tensor.
    # Graph outputs in a component: the graph computes "<name>_u8", shifted back into <name>.
    inputs_to_u8 = {name: fresh(f"{name}_u8") for name in sorted(tensors & graph_inputs)}
    outputs_from_u8 = {name: fresh(f"{name}_u8") for name in sorted(tensors & graph_outputs)}
    internal = (tensors - set(inputs_to_u8) - set(outputs_from_u8)) | set(inputs_to_u8.values()) | set(
        outputs_from_u8.values())
    weights = 0
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = inputs_to_u8.get(name, outputs_from_u8.get(name, name))
        for i, name in enumerate(node.output):
            node.output[i] = outputs_from_u8.get(name, name)
        if node.op_type == "QuantizeLinear" and _is_qdq(node) and node.output[0] in internal:
            node.input[2] = as_uint8(node.input[2])
        elif node.op_type == "DequantizeLinear" and _is_qdq(node) and node.input[0] in internal:
            if node.input[0] in inits:
                weights += node.input[0] not in shifted
                node.input[0] = as_uint8(node.input[0])
            if zero_point(node):
                node.input[2] = as_uint8(node.input[2])
            else:  # the int8 zero point defaulted to 0; the uint8 one is 128
                node.input.append(constant("qdq_portable_zero_point_128", np.array(128, dtype=np.uint8)))

    boundary = bool(inputs_to_u8 or outputs_from_u8)
    one = constant("qdq_portable_scale_1", np.array(1.0, dtype=np.float32)) if boundary else ""
    def shift(source: str, target: str, zero_in: Any, zero_out: Any, label: str) -> None:
        """source -> float (scale 1, zero_in) -> target (scale 1, zero_out): exact, moves values by 128."""
        as_float = fresh(f"{source}_{label}")
        graph.node.append(helper.make_node("DequantizeLinear", [source, one, zero_in], [as_float],
                                           name=fresh(f"{source}_{label}_dq")))
        graph.node.append(helper.make_node("QuantizeLinear", [as_float, one, zero_out], [target],
                                           name=fresh(f"{source}_{label}_q")))

    for name, shifted_name in inputs_to_u8.items():  # int8 v -> float v + 128 -> uint8 v + 128
        shift(name, shifted_name, constant("qdq_portable_zero_point_minus128", np.array(-128, dtype=np.int8)),
              constant("qdq_portable_zero_point_0_u8", np.array(0, dtype=np.uint8)), "int8_to_uint8")
    for name, computed in outputs_from_u8.items():  # uint8 u -> float u - 128 -> int8 u - 128
        shift(computed, name, constant("qdq_portable_zero_point_128", np.array(128, dtype=np.uint8)),
              constant("qdq_portable_zero_point_0_i8", np.array(0, dtype=np.int8)), "uint8_to_int8")

    # The int8 originals nobody reads any more go; the uint8 copies come in.
    still_read = {n for node in graph.node for n in node.input} | in_subgraphs | graph_outputs | declared_inputs
    kept = [t for t in graph.initializer if t.name in still_read]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    for info in graph.value_info:
        if info.name in internal and info.type.tensor_type.elem_type == _INT8:
            info.type.tensor_type.elem_type = _UINT8
    _topological_sort(graph)

    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        try:  # blame the rewrite only if the original passes the same check
            onnx.checker.check_model(onnx.load(str(onnx_path)), full_check=True)
        except onnx.checker.ValidationError:
            return {}  # an invalid file stays as it came: there is no valid result to compare with
        raise exc
    onnx.save(model, str(onnx_path))
    return {"rewrote": "int8 QDQ -> uint8", "tensors": len(tensors), "weights": weights,
            "boundaries": len(inputs_to_u8) + len(outputs_from_u8)}


def _is_qdq(node: Any) -> bool:
    return node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.domain in _ONNX_DOMAINS


def _element_types(onnx: Any, model: Any) -> dict[str, int]:
    """Element type of each tensor: declared (inputs, outputs, value_info, initializers) or inferred."""
    try:
        graph = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    except Exception:  # inference only helps here; the declared types are enough
        graph = model.graph
    types = {info.name: info.type.tensor_type.elem_type
             for info in (*graph.input, *graph.output, *graph.value_info) if info.type.HasField("tensor_type")}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    return types


def _names_read_by_subgraphs(graph: Any) -> set[str]:
    """Every tensor name read inside a subgraph (If/Loop/Scan bodies), nested ones included."""
    names: set[str] = set()
    for node in graph.node:
        names |= _names_read_by_subgraphs_of(node)
    return names


def _topological_sort(graph: Any) -> None:
    """Order the nodes so each follows the producers of what it reads (the boundary pairs were
    appended at the end); otherwise keep the original order."""
    import heapq

    nodes = list(graph.node)
    made_by = {name: k for k, node in enumerate(nodes) for name in node.output if name}
    waiting_on: list[set[int]] = []
    feeds: dict[int, list[int]] = {}
    for k, node in enumerate(nodes):
        reads = set(node.input) | _names_read_by_subgraphs_of(node)
        before = {made_by[n] for n in reads if n in made_by and made_by[n] != k}
        waiting_on.append(before)
        for b in before:
            feeds.setdefault(b, []).append(k)
    ready = [k for k, before in enumerate(waiting_on) if not before]
    heapq.heapify(ready)
    order = []
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        for after in feeds.get(k, []):
            waiting_on[after].discard(k)
            if not waiting_on[after]:
                heapq.heappush(ready, after)
    if len(order) != len(nodes):  # a cycle: not ours to fix, keep the order as it is
        return
    copies = []
    for k in order:
        copy = type(nodes[k])()
        copy.CopyFrom(nodes[k])
        copies.append(copy)
    del graph.node[:]
    graph.node.extend(copies)


def _names_read_by_subgraphs_of(node: Any) -> set[str]:
    names: set[str] = set()
    for attr in node.attribute:
        for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            names.update(n for inner in sub.node for n in inner.input if n)
            names |= _names_read_by_subgraphs(sub)
    return names
