"""The format graph: formats are nodes, converters are edges registered by import string.

A new converter is one module plus one line in EDGES. `plan` finds the cheapest path; a direct
edge is given a lower cost than a path through ONNX so it wins where it exists.
"""

from __future__ import annotations

import heapq
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..errors import BadInput
from ..formats import Format

if TYPE_CHECKING:
    from ..artifact import Artifact


@dataclass(frozen=True)
class Edge:
    name: str
    src: str
    dst: str
    impl: str          # "module:function" taking (Artifact, workdir, EdgeContext) -> Artifact
    extra: str         # pip extra that brings what it needs
    cost: float = 1.0

    def load(self) -> Callable[..., Artifact]:
        module, _, function = self.impl.partition(":")
        return getattr(importlib.import_module(module), function)


EDGES: tuple[Edge, ...] = (
    Edge("torch2onnx", "torch", "onnx", "modelport.converters.torch2onnx:convert", "torch"),
    Edge("keras2savedmodel", "keras", "savedmodel", "modelport.converters.keras2savedmodel:convert", "tf"),
    Edge("jax2savedmodel", "jax", "savedmodel", "modelport.converters.jax2savedmodel:convert", "jax"),
    Edge("savedmodel2onnx", "savedmodel", "onnx", "modelport.converters.savedmodel2onnx:convert", "tf"),
    Edge("tflite2onnx", "tflite", "onnx", "modelport.converters.tflite2onnx:convert", "tf"),
    Edge("onnx2tf", "onnx", "tflite", "modelport.converters.onnx2tf:to_tflite", "tf"),
    Edge("onnx2savedmodel", "onnx", "savedmodel", "modelport.converters.onnx2tf:to_savedmodel", "tf"),
    Edge("savedmodel2tflite", "savedmodel", "tflite", "modelport.converters.savedmodel2tflite:convert", "tf"),
    Edge("savedmodel2tfjs", "savedmodel", "tfjs", "modelport.converters.savedmodel2tfjs:convert", "tfjs"),
    Edge("onnx2torchscript", "onnx", "torchscript", "modelport.converters.onnx2torchscript:convert", "torch"),
    # Direct edges are cheaper than a trip through ONNX, so the planner prefers them.
    Edge("torch2torchscript", "torch", "torchscript", "modelport.converters.torch2torchscript:convert", "torch",
         cost=0.5),
)

TARGETS: dict[str, str] = {
    "onnx": "modelport.targets.onnx:SPEC",
    "tflite": "modelport.targets.tflite:SPEC",
    "torchscript": "modelport.targets.torchscript:SPEC",
    "savedmodel": "modelport.targets.savedmodel:SPEC",
    "tfjs": "modelport.targets.tfjs:SPEC",
}

NODE_OF_FORMAT: dict[Format, str] = {
    Format.TORCH_MODULE: "torch", Format.TORCHSCRIPT: "torch", Format.TORCH_EXPORT: "torch",
    Format.TORCH_PICKLE: "torch", Format.ONNX: "onnx", Format.TFLITE: "tflite",
    Format.SAVEDMODEL: "savedmodel", Format.KERAS: "keras", Format.KERAS_H5: "keras", Format.TFJS: "tfjs",
    Format.JAX: "jax",
}


def target_spec(name: str) -> Any:
    module, _, attr = TARGETS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def parse_targets(text: str) -> list[str]:
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not names:
        raise BadInput("--to is empty.", f"Name one or more of: {', '.join(TARGETS)}, or all.")
    if "all" in names:
        return ["all"]  # expanded to the targets reachable from the source once it is known
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise BadInput(f"Unknown target '{unknown[0]}'.", f"Targets: {', '.join(TARGETS)}, or all.")
    return list(dict.fromkeys(names))


def plan(src: str, dst: str, via: tuple[str, ...] = ()) -> list[Edge]:
    """The cheapest chain of edges from node `src` to node `dst`, through `via` in order if given."""
    nodes = {e.src for e in EDGES} | {e.dst for e in EDGES}
    unknown = [v for v in via if v not in nodes]
    if unknown:
        raise BadInput(f"--via names '{unknown[0]}', which is not a format modelport converts through.",
                       f"Formats: {', '.join(sorted(nodes))}.")
    stops = [src, *via, dst]
    edges: list[Edge] = []
    for start, goal in zip(stops, stops[1:]):
        edges.extend(_shortest(start, goal))
    return edges


def alternatives(src: str, dst: str, limit: int = 3, max_edges: int = 5) -> list[list[Edge]]:
    """Up to `limit` loop-free paths from `src` to `dst`, cheapest first: what `convert` falls back
    to when a converter on the cheapest path fails."""
    found: list[tuple[float, list[Edge]]] = []

    def walk(node: str, path: list[Edge], seen: set[str]) -> None:
        if node == dst:
            found.append((sum(e.cost for e in path), list(path)))
            return
        if len(path) >= max_edges:
            return
        for edge in EDGES:
            if edge.src == node and edge.dst not in seen:
                walk(edge.dst, [*path, edge], seen | {edge.dst})

    walk(src, [], {src})
    found.sort(key=lambda item: (item[0], len(item[1])))
    return [path for _, path in found[:limit]]


def _shortest(src: str, dst: str) -> list[Edge]:
    if src == dst:
        return []
    queue: list[tuple[float, int, str, list[Edge]]] = [(0.0, 0, src, [])]
    seen: set[str] = set()
    counter = 0
    while queue:
        cost, _, node, path = heapq.heappop(queue)
        if node == dst:
            return path
        if node in seen:
            continue
        seen.add(node)
        for edge in EDGES:
            if edge.src == node and edge.dst not in seen:
                counter += 1
                heapq.heappush(queue, (cost + edge.cost, counter, edge.dst, [*path, edge]))
    raise BadInput(f"No conversion path from {src} to {dst} in this modelport.",
                   f"Known edges: {', '.join(f'{e.src}->{e.dst}' for e in EDGES)}.")


def reachable(src: str) -> list[str]:
    """Targets some path leads to from node `src`, in TARGETS order."""
    found, frontier = {src}, [src]
    while frontier:
        node = frontier.pop()
        for edge in EDGES:
            if edge.src == node and edge.dst not in found:
                found.add(edge.dst)
                frontier.append(edge.dst)
    return [t for t in TARGETS if t in found]


def explain(src: str, dst: str, via: tuple[str, ...] = ()) -> str:
    edges = plan(src, dst, via)
    return " -> ".join([src, *(e.dst for e in edges)]) + (f"  ({', '.join(e.name for e in edges)})" if edges else "")
