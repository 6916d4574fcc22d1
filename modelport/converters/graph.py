"""The format graph: formats are nodes, converters are edges (declared beside their code and
collected by the registry). `plan` finds the cheapest path; a direct edge is given a lower cost
than a path through ONNX so it wins where it exists."""

from __future__ import annotations

import heapq

from ..errors import BadInput
from ..formats.base import Edge
from ..registry import Registry, default


def parse_targets(text: str, registry: Registry | None = None) -> list[str]:
    targets = (registry or default()).targets()
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not names:
        raise BadInput("--to is empty.", f"Name one or more of: {', '.join(targets)}, or all.")
    if "all" in names:
        return ["all"]  # expanded to the targets reachable from the source once it is known
    unknown = [n for n in names if n not in targets]
    if unknown:
        raise BadInput(f"Unknown target '{unknown[0]}'.", f"Targets: {', '.join(targets)}, or all.")
    return list(dict.fromkeys(names))


def plan(src: str, dst: str, via: tuple[str, ...] = (), registry: Registry | None = None,
         edges_allowed: list[Edge] | None = None) -> list[Edge]:
    """The cheapest chain of edges from node `src` to node `dst`, through `via` in order if given."""
    registry = registry or default()
    nodes = registry.nodes()
    unknown = [v for v in via if v not in nodes]
    if unknown:
        raise BadInput(f"--via names '{unknown[0]}', which is not a format modelport converts through.",
                       f"Formats: {', '.join(sorted(nodes))}.")
    stops = [src, *via, dst]
    edges: list[Edge] = []
    for start, goal in zip(stops, stops[1:]):
        edges.extend(_shortest(start, goal, registry.edges if edges_allowed is None else edges_allowed))
    return edges


def alternatives(src: str, dst: str, limit: int = 3, max_edges: int = 5, edges_allowed: list[Edge] | None = None,
                 registry: Registry | None = None) -> list[list[Edge]]:
    """Up to `limit` loop-free paths from `src` to `dst`, cheapest first: what `convert` falls back
    to when a converter on the cheapest path fails."""
    all_edges = (registry or default()).edges if edges_allowed is None else edges_allowed
    found: list[tuple[float, list[Edge]]] = []

    def walk(node: str, path: list[Edge], seen: set[str]) -> None:
        if node == dst:
            found.append((sum(e.cost for e in path), list(path)))
            return
        if len(path) >= max_edges:
            return
        for edge in all_edges:
            if edge.src == node and edge.dst not in seen:
                walk(edge.dst, [*path, edge], seen | {edge.dst})

    walk(src, [], {src})
    found.sort(key=lambda item: (item[0], len(item[1])))
    return [path for _, path in found[:limit]]


def _shortest(src: str, dst: str, edges: list[Edge]) -> list[Edge]:
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
        for edge in edges:
            if edge.src == node and edge.dst not in seen:
                counter += 1
                heapq.heappush(queue, (cost + edge.cost, counter, edge.dst, [*path, edge]))
    raise BadInput(f"No conversion path from {src} to {dst} in this modelport.",
                   f"Known edges: {', '.join(f'{e.src}->{e.dst}' for e in edges)}.")


def reachable(src: str, registry: Registry | None = None) -> list[str]:
    """Targets some path leads to from node `src` (the source's own format included), in registry order."""
    registry = registry or default()
    found, frontier = {src}, [src]
    while frontier:
        node = frontier.pop()
        for edge in registry.edges:
            if edge.src == node and edge.dst not in found:
                found.add(edge.dst)
                frontier.append(edge.dst)
    return [t for t in registry.targets() if t in found]


def explain(src: str, dst: str, via: tuple[str, ...] = (), registry: Registry | None = None) -> str:
    edges = plan(src, dst, via, registry)
    return " -> ".join([src, *(e.dst for e in edges)]) + (f"  ({', '.join(e.name for e in edges)})" if edges else "")
