"""Re-target an ONNX file to another opset (onnx.version_converter), for `--opset` on ONNX sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._lazy import require
from ..artifact import Artifact
from ..errors import ConversionFailed


def current_opset(path: Path) -> int:
    onnx = require("onnx")
    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _upgrade(onnx: Any, path: Path, opset: int) -> Any:
    try:
        converted = onnx.version_converter.convert_version(onnx.load(str(path)), opset)
        onnx.checker.check_model(converted)
        return converted
    except Exception as exc:  # the converter raises RuntimeError/ValidationError with C++ text
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionFailed(f"onnx.version_converter cannot move this model to opset {opset}: {first[:300]}",
                               "Pick another --opset, or re-export the model at that opset.") from None


def convert_opset(artifact: Artifact, opset: int, workdir: Path) -> Artifact:
    onnx = require("onnx")
    if current_opset(artifact.path) == opset:
        return artifact
    out = workdir / f"model.opset{opset}.onnx"
    converted, _ = lower_opset(onnx.load(str(artifact.path)), opset) if opset < current_opset(artifact.path) else (
        _upgrade(onnx, artifact.path, opset), "converted")
    onnx.save(converted, str(out))
    return artifact.with_(path=out, extra={**artifact.extra, "opset": opset}, companions=())  # data inlined


# Attribute values an op gained after the opset it is lowered to: such a node cannot be relabelled.
_NEWER_VALUES: dict[tuple[str, str], set[bytes]] = {
    ("Resize", "coordinate_transformation_mode"): {b"half_pixel_symmetric"},   # opset 19
    ("Pad", "mode"): {b"wrap"},                                                 # opset 19
}
# Values an op renamed (GridSample 20: bilinear -> linear, bicubic -> cubic): renamed back.
_RENAMED_VALUES: dict[tuple[str, str], dict[bytes, bytes]] = {
    ("GridSample", "mode"): {b"linear": b"bilinear", b"cubic": b"bicubic"},
}
_FLOAT8 = {17, 18, 19, 20, 23, 24}  # TensorProto FLOAT8* / FLOAT4 ids: where Cast's `saturate` matters


def _droppable(op: str, attribute: Any) -> bool:
    """An attribute added after the target opset whose value here means the older behaviour."""
    onnx = require("onnx")
    value = onnx.helper.get_attribute_value(attribute)
    if op in ("AveragePool", "LpPool", "MaxPool") and attribute.name == "dilations":
        return all(d == 1 for d in value)
    return op == "Cast" and attribute.name == "saturate"  # (checked with `to` by the caller)


def relabel_opset(model: Any, target: int) -> list[str]:
    """Lower MODEL's default-domain opset to TARGET in place where the onnx version converter has
    no adapter: every node whose op changed after TARGET only by widening its types (same inputs,
    outputs and attributes, which the schemas show) keeps its meaning at TARGET. Returns why it
    cannot (nodes using an op, attribute or value TARGET lacks); an empty list means done."""
    onnx = require("onnx")
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    problems: list[str] = []

    def visit(graph: Any) -> None:
        for node in graph.node:
            for attribute in node.attribute:
                for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                    visit(sub)
            if node.domain not in ("", "ai.onnx"):
                continue
            try:
                newer = onnx.defs.get_schema(node.op_type, current)
                older = onnx.defs.get_schema(node.op_type, target)
            except Exception:  # noqa: BLE001 - SchemaError: the op does not exist at TARGET
                problems.append(f"{node.op_type} (node '{node.name}') does not exist at opset {target}")
                continue
            if newer.since_version <= target:
                continue
            if len(node.input) > len(older.inputs) and not (older.inputs and older.inputs[-1].option ==
                                                             onnx.defs.OpSchema.FormalParameterOption.Variadic):
                problems.append(f"{node.op_type} (node '{node.name}') has {len(node.input)} inputs; "
                                f"opset {target} takes {len(older.inputs)}")
            to_float8 = any(a.name == "to" and a.i in _FLOAT8 for a in node.attribute)
            for attribute in list(node.attribute):
                key = (node.op_type, attribute.name)
                if attribute.name not in older.attributes:
                    if _droppable(node.op_type, attribute) and not to_float8:
                        node.attribute.remove(attribute)
                    else:
                        problems.append(f"{node.op_type} (node '{node.name}') uses '{attribute.name}', "
                                        f"new after opset {target}")
                elif key in _NEWER_VALUES and attribute.s in _NEWER_VALUES[key]:
                    problems.append(f"{node.op_type} (node '{node.name}') uses {attribute.name}="
                                    f"{attribute.s.decode()}, new after opset {target}")
                elif key in _RENAMED_VALUES and attribute.s in _RENAMED_VALUES[key]:
                    attribute.s = _RENAMED_VALUES[key][attribute.s]

    visit(model.graph)
    if problems:
        return problems
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = target
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - ValidationError with C++ text
        return [str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__]
    return []


def lower_opset(model: Any, target: int) -> tuple[Any, str]:
    """MODEL at opset TARGET: through the onnx version converter, else relabelled where every op
    keeps its meaning (`relabel_opset`). Returns the model and how ("converted" or "relabelled");
    raises ConversionFailed with both reasons when neither can."""
    onnx = require("onnx")
    try:
        return onnx.version_converter.convert_version(model, target), "converted"
    except Exception as exc:  # noqa: BLE001 - the version converter lacks adapters for some ops
        adapter = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    problems = relabel_opset(copy, target)
    if problems:
        raise ConversionFailed(f"this model cannot be lowered to opset {target}: {'; '.join(problems[:3])} "
                               f"(and the onnx version converter: {adapter[:120]})",
                               f"Export the source at --opset {target} or lower.")
    return copy, "relabelled"
