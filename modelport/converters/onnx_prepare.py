"""Graph preparation for converters that fail on an ONNX graph as exported: the retry path.

Two rewrites, both from ONNX's own tooling, neither changing what the graph computes:

- **fold**: onnxscript's optimizer folds constants and static shapes (Shape -> Gather -> Concat
  chains, CastLike, `Constant` nodes holding `value_float`/`value_ints`). onnx2tf runs `onnxsim`
  for this, but the onnxsim that installs beside onnx2tf 1.29 rejects IR version 11 (opset 23+),
  so opset-23 graphs reach onnx2tf unfolded, and its Keras layers fail on the shape arithmetic.
- **expand**: ops that the ONNX standard defines as a function of simpler ops (Attention,
  RMSNormalization, LayerNormalization, GroupNormalization, Gelu, ...) are replaced by the
  schema's own function body, then folded. A converter that lacks the op, or mishandles it, then
  sees only the ops it knows.

Models with external data are left as they are: folding would pull every weight into memory and
the result past 2 GB would need rewriting as external data too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._lazy import captured_output, require
from ..artifact import Artifact
from ..errors import ConversionFailed
from .onnx_lower import (lower_dynamic_convolutions, lower_for_tensorflow_kernels, lower_group_normalization,
                         lower_hardmax, lower_normalizations, lower_pooling, lower_resizes, lower_rms_normalization,
                         lower_small_ops, replace_nodes, static_shapes)
from .onnx_lower_grid import lower_grid_samples
from .onnx_lower_rnn import lower_recurrent

_EXPANDED_DOMAIN = "modelport.expanded"
_CONTROL_FLOW = {"Loop", "If", "Scan"}
# Elementwise activations and softmax have function bodies too, but every converter has them as
# kernels: expanding them only makes the graph slower and less exact.
_KEPT_AS_OPS = {"Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "ThresholdedRelu", "HardSigmoid",
                "HardSwish", "Sigmoid", "Tanh", "Softplus", "Softsign", "Mish", "Softmax", "LogSoftmax"}


def _function_body(node: Any, schema: Any, opset: int, types: dict[str, Any]) -> Any | None:
    """The op's ONNX function body in its newest version at or below the model's opset (the
    caller re-stamps it to the model's opset where that keeps its meaning)."""
    onnx = require("onnx")
    if schema.has_function:
        versions = [v for v in schema.function_opset_versions if v <= opset]
        if not versions:
            return None
        body = schema.get_function_with_opset_version(max(versions))
        return onnx.FunctionProto.FromString(body) if isinstance(body, bytes) else body
    versions = [v for v in schema.context_dependent_function_opset_versions if v <= opset]
    if not schema.has_context_dependent_function or not versions:
        return None
    # A context-dependent body (Attention, LayerNormalization...) is built for these input types.
    input_types = [types[name].SerializeToString() if name in types else onnx.TypeProto().SerializeToString()
                   for name in node.input]
    try:
        raw = schema.get_context_dependent_function_with_opset_version(max(versions), node.SerializeToString(),
                                                                        input_types)
    except Exception:  # the schema could not build a body for these inputs: keep the op
        return None
    return onnx.FunctionProto.FromString(raw) if raw else None


# Ops whose meaning changed between opsets without a change of signature (Split's outputs,
# GridSample's mode names, Resize's and Pad's modes): a body using them is never re-stamped.
_CHANGED_MEANING = {"Split", "GridSample", "Resize", "Pad"}


def _restamp_opset(body: Any, opset: int) -> bool:
    """Make a function body written at an older opset (LayerNormalization's is 18's) say the
    model's opset, which ONNX's inliner requires, where every op in it means the same at both:
    its schema at the model's opset only widened types (the node's inputs and attributes all
    still exist, none with a new meaning). False where one did not."""
    onnx = require("onnx")
    for entry in body.opset_import:
        if entry.domain not in ("", "ai.onnx") or entry.version == opset:
            continue
        for node in body.node:
            if node.domain not in ("", "ai.onnx"):
                continue
            try:
                older = onnx.defs.get_schema(node.op_type, entry.version, node.domain)
                newer = onnx.defs.get_schema(node.op_type, opset, node.domain)
            except Exception:  # an op unknown at one of the two opsets
                return False
            if newer.since_version == older.since_version:
                continue
            variadic = bool(newer.inputs) and newer.inputs[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic
            if (node.op_type in _CHANGED_MEANING or (len(node.input) > len(newer.inputs) and not variadic)
                    or any(a.name not in newer.attributes for a in node.attribute)):
                return False
        entry.version = opset
    return True


def _signature(model: Any) -> list:
    return [(n.op_type, tuple(n.input), tuple(n.output)) for n in model.graph.node]


def expand_functions(model: Any) -> tuple[Any, list[str]]:
    """Replace every standard op defined as a function by its body (top-level graph only).
    Returns the new model and the op types expanded."""
    onnx = require("onnx")
    require("onnx.inliner")
    from onnx import helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        return model, []
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    for init in model.graph.initializer:
        types.setdefault(init.name, helper.make_tensor_type_proto(init.data_type, list(init.dims)))
    functions, expanded = [], []
    for index, node in enumerate(model.graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type in _KEPT_AS_OPS:
            continue
        try:
            schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
        except Exception:  # not a standard op at this opset
            continue
        body = _function_body(node, schema, opset, types)
        if body is None or not body.node or any(n.op_type in _CONTROL_FLOW for n in body.node):
            continue  # (Range's body is a Loop: the op itself converts better)
        if not _restamp_opset(body, opset):
            continue
        function = onnx.FunctionProto()
        function.CopyFrom(body)
        function.name, function.domain = f"{node.op_type}_{index}", _EXPANDED_DOMAIN
        functions.append(function)
        expanded.append(node.op_type)
        node.domain, node.op_type = _EXPANDED_DOMAIN, function.name
    if not functions:
        return model, []
    model.functions.extend(functions)
    model.opset_import.append(helper.make_opsetid(_EXPANDED_DOMAIN, 1))
    return onnx.inliner.inline_local_functions(model), expanded


def split_variadic_sums(model: Any) -> int:
    """`Sum` of broadcasting inputs as a chain of `Add`: onnx2tf lowers Sum to tf.add_n, which
    needs equal shapes. The same arithmetic (Sum's order of addition is unspecified)."""
    from onnx import helper

    nodes, changed = [], 0
    for node in model.graph.node:
        if node.op_type != "Sum" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            nodes.append(node)
            continue
        changed += 1
        total = node.input[0]
        for index, addend in enumerate(node.input[1:], start=1):
            last = index == len(node.input) - 1
            out = node.output[0] if last else f"{node.output[0]}__sum{index}"
            nodes.append(helper.make_node("Add", [total, addend], [out], name=f"{node.name or 'Sum'}__add{index}"))
            total = out
    return len(replace_nodes(model, nodes, ["Sum"] * changed))


def reverse_select_last_index(model: Any) -> list[str]:
    """ArgMax/ArgMin with `select_last_index=1` (the last of tied extremes) as the same op with
    the default on the input reversed along its axis (a Gather of constant indices), the index
    mapped back (size - 1 - index). Neither onnx2tf (1.29: a failing tf.reverse; 2.x: "select_last_index
    must be 0") takes the attribute. Exact: ties resolve to the same element. Only where the
    axis has a static size."""
    import numpy as np
    from onnx import helper, numpy_helper

    shapes = static_shapes(model)
    nodes, changed = [], []
    for index, node in enumerate(model.graph.node):
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        shape = shapes.get(node.input[0]) if node.input else None
        axis = int(attributes.get("axis", 0))
        size = shape[axis] if shape and -len(shape) <= axis < len(shape) else None
        if node.op_type not in ("ArgMax", "ArgMin") or node.domain not in ("", "ai.onnx") \
                or not attributes.get("select_last_index") or not size:
            nodes.append(node)
            continue
        tag = f"{node.name or node.op_type}__last{index}"
        model.graph.initializer.extend([
            numpy_helper.from_array(np.arange(size - 1, -1, -1, dtype=np.int64), f"{tag}_order"),
            numpy_helper.from_array(np.array(size - 1, np.int64), f"{tag}_last")])
        nodes += [
            helper.make_node("Gather", [node.input[0], f"{tag}_order"], [f"{tag}_reversed"], name=f"{tag}_reverse",
                             axis=axis),
            helper.make_node(node.op_type, [f"{tag}_reversed"], [f"{tag}_index"], name=f"{tag}_first",
                             axis=axis, keepdims=int(attributes.get("keepdims", 1))),
            helper.make_node("Sub", [f"{tag}_last", f"{tag}_index"], [node.output[0]], name=node.name or tag),
        ]
        changed.append(node.op_type)
    return replace_nodes(model, nodes, changed)


_COMPARISONS = {"Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Equal"}


def explicit_comparison_broadcast(model: Any) -> list[str]:
    """A comparison of two inputs of different static shapes, with the smaller one Expanded to the
    result's shape first: onnx2tf 1.29 fails on broadcasting comparisons of rank-3+ tensors
    (its channel-last rewriting of one side). Expand is exactly the broadcast ONNX defines."""
    import numpy as np
    from onnx import numpy_helper

    onnx = require("onnx")
    helper = onnx.helper
    shapes = static_shapes(model)
    nodes, changed = [], []
    for index, node in enumerate(model.graph.node):
        out = shapes.get(node.output[0]) if node.output else None
        ins = [shapes.get(name) for name in node.input]
        if node.op_type not in _COMPARISONS or node.domain not in ("", "ai.onnx") or len(node.input) != 2 \
                or out is None or None in out or any(s is None for s in ins) or ins[0] == ins[1] or len(out) < 3:
            nodes.append(node)
            continue
        target = f"{node.name or node.op_type}__shape{index}"
        model.graph.initializer.append(numpy_helper.from_array(np.array(out, np.int64), target))
        inputs = list(node.input)
        for side, shape in enumerate(ins):
            if shape != out:
                expanded = f"{inputs[side]}__expanded{index}_{side}"
                nodes.append(helper.make_node("Expand", [inputs[side], target], [expanded], name=expanded))
                inputs[side] = expanded
        del node.input[:]
        node.input.extend(inputs)
        nodes.append(node)
        changed.append(node.op_type)
    return replace_nodes(model, nodes, changed)


def has_external_data(path: Path) -> bool:
    onnx = require("onnx")
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    return any(uses_external_data(t) for t in model.graph.initializer)


def prepare(onnx_artifact: Artifact, workdir: Path, verbose: bool = False,
            expand: bool = True) -> tuple[Artifact, str]:
    """The artifact's graph folded (and with `expand`, its function ops expanded), in `workdir`;
    plus a line for the report's workarounds. Raises ConversionFailed when there is nothing to gain
    (the graph unchanged, or nothing to expand) or a rewrite fails, so callers keep the error of
    the attempt on the graph as given."""
    onnx = require("onnx")
    if has_external_data(onnx_artifact.path):
        raise ConversionFailed("The model keeps its weights as external data: modelport does not rewrite it.")
    optimizer = require("onnxscript.optimizer", purpose="to fold and expand the ONNX graph")
    model = onnx.load(str(onnx_artifact.path))
    before = _signature(model)
    expanded: list[str] = []
    lowered: list[str] = []
    broadcast: list[str] = []
    try:
        with captured_output(verbose):
            model = optimizer.optimize(model)  # first: folding removes ops (Range of constants) before expansion
            if expand:
                lowered = lower_group_normalization(model) + lower_rms_normalization(model)
                model, expanded = expand_functions(model)
                if expanded:
                    model = optimizer.optimize(model)
                broadcast = explicit_comparison_broadcast(model)
                lowered += (lower_dynamic_convolutions(model) + lower_resizes(model) + lower_normalizations(model)
                            + lower_grid_samples(model) + lower_small_ops(model) + lower_recurrent(model)
                            + lower_pooling(model))
            lowered += reverse_select_last_index(model) + lower_hardmax(model) + lower_for_tensorflow_kernels(model)
            split_variadic_sums(model)
            onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # a rewrite that fails leaves the first attempt's error standing
        raise ConversionFailed(f"modelport could not fold the graph: {type(exc).__name__}: {str(exc)[:160]}") from None
    if expand and not expanded and not lowered and not broadcast:
        raise ConversionFailed("The graph has no op that ONNX defines as a function, nor one to lower.")
    if _signature(model) == before:
        raise ConversionFailed("Folding left the graph unchanged.")
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / ("model.expanded.onnx" if expand else "model.folded.onnx")
    onnx.save(model, str(target))
    what = "folded constants and static shapes (onnxscript's optimizer)"
    if any(op in lowered for op in ("ArgMax", "ArgMin")):
        what += f", {', '.join(sorted(set(lowered) & {'ArgMax', 'ArgMin'}))} select_last_index as a reversed input"
    if any(op in lowered for op in ("Conv", "ConvTranspose")):
        what += (f", {', '.join(sorted(set(lowered) & {'Conv', 'ConvTranspose'}))} with input weights lowered "
                 "to Slice and MatMul")
    normalizations = sorted(set(lowered) & {"BatchNormalization", "InstanceNormalization", "GroupNormalization",
                                            "RMSNormalization"})
    if normalizations:
        what += f", {', '.join(normalizations)} as its arithmetic"
    if any(op in lowered for op in ("Split", "IsInf", "Mod")):
        what += f", {', '.join(sorted(set(lowered) & {'Split', 'IsInf', 'Mod'}))} as simpler ops"
    if any(op in lowered for op in ("LSTM", "GRU", "RNN")):
        what += (f", {', '.join(sorted(set(lowered) & {'LSTM', 'GRU', 'RNN'}))} with input weights unrolled over "
                 "its time steps")
    if any(op in lowered for op in ("Softsign", "Gelu")):
        what += f", {', '.join(sorted(set(lowered) & {'Softsign', 'Gelu'}))} as ops with TensorFlow kernels"
    if any(op in lowered for op in ("MaxPool", "AveragePool", "LpPool")):
        what += (f", {', '.join(sorted(set(lowered) & {'MaxPool', 'AveragePool', 'LpPool'}))} as Slices "
                 "combined one axis at a time")
    if "Hardmax" in lowered:
        what += ", Hardmax as ArgMax compared with the positions along its axis"
    if "GridSample" in lowered:
        what += ", GridSample as tap indices and weights with GatherElements"
    if "Resize" in lowered:
        what += ", Resize lowered to one MatMul per resized axis"
    if broadcast:
        what += f", the broadcast of {', '.join(sorted(set(broadcast)))} made explicit (Expand)"
    if expanded:
        what += f" and expanded {', '.join(sorted(set(expanded)))} into their ONNX function bodies"
    return onnx_artifact.with_(path=target, companions=()), what


def all_failed(failures: list[tuple[str, ConversionFailed]]) -> ConversionFailed:
    """One error for a converter that failed on every form of the graph it was given: the first
    form's message, then what the others failed with (when it differs)."""
    (_, first), others = failures[0], failures[1:]
    said = [f"on the {label}: {exc.message.rstrip('.')}" for label, exc in others if exc.message != first.message]
    if not said:
        return first
    return ConversionFailed(f"{first.message.rstrip('.')} ({'; '.join(said)}).", first.hint)
