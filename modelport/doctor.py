"""`modelport doctor`: which backends are installed here, and so which formats read, run and
convert. Everything is derived from the format registry; nothing is imported to find out."""

from __future__ import annotations

import importlib.util
import platform
from importlib import metadata
from typing import Any

from .formats.base import load_object
from .toolchains import declared, state
from .registry import Registry, default


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def diagnose(registry: Registry | None = None) -> dict[str, Any]:
    registry = registry or default()
    modules = sorted({m for r in [s.requirement for s in registry.formats.values()] +
                      [e.requirement for e in registry.edges] for m in (*r.modules, *r.any_of)})
    dists = metadata.packages_distributions()
    backends: dict[str, dict[str, Any]] = {}
    for module in modules:
        installed = importlib.util.find_spec(module) is not None
        dist = (dists.get(module) or [module])[0]
        backends[module] = {"installed": installed, "version": _version(dist) if installed else None,
                            "package": dist}
    for spec in registry.formats.values():  # non-Python runtimes (Node.js for TF.js)
        if spec.requirement.versions:
            backends.update(load_object(spec.requirement.versions)())

    def verdict(problem: Any) -> dict[str, Any]:
        return {"works": problem is None, "missing": [] if problem is None else [problem.one_line()]}

    sources = {f"{s.name}: {s.description}": verdict(s.requirement.problem(f"to read {s.name} models"))
               for s in registry.formats.values() if s.source}
    targets: dict[str, dict[str, Any]] = {}
    for name in registry.targets():
        spec = registry.spec(name)
        runs = verdict(spec.requirement.problem(f"to run {name} models"))
        into = {e.name: verdict(e.requirement.problem(f"for {e.name}")) for e in registry.edges if e.dst == name}
        works = runs["works"] and (not into or any(v["works"] for v in into.values()))
        missing = runs["missing"] + [m for v in into.values() for m in v["missing"]]
        targets[name] = {"works": works, "missing": list(dict.fromkeys(missing)), "runtime": runs["works"],
                         "converters": {k: v["works"] for k, v in into.items()}}
    return {"python": platform.python_version(), "platform": platform.platform(), "backends": backends,
            "sources": sources, "targets": targets,
            "edges": [_edge(e) for e in registry.edges],
            "toolchains": [{**state(t).to_json(), "description": t.description, "python_version": t.python}
                           for t in declared().values()],
            "plugins": {"problems": registry.problems}}


def _edge(edge: Any) -> dict[str, Any]:
    problem = edge.requirement.problem(edge.name)
    return {"name": edge.name, "from": edge.src, "to": edge.dst, "extra": edge.requirement.extra,
            "toolchain": edge.requirement.toolchain, "works": problem is None,
            "install": (problem.hint or "").removeprefix("Install it with: ") if problem is not None else None}
