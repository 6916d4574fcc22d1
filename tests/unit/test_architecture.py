"""The shape of the package, checked: no import cycle anywhere (imports inside functions
included), and the layers of docs/architecture.md hold (a module imports only its own layer or
lower ones)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "modelport"

# Lowest first. A module may import modules of its own layer or below, never above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core types", ("modelport._version", "modelport.safety", "modelport.errors", "modelport.spec", "modelport._lazy", "modelport.artifact",
                    "modelport._channel", "modelport.bundle", "modelport.bundle.*")),
    ("validators", ("modelport.validators", "modelport.validators.compare", "modelport.validators.latency",
                    "modelport.validators.data", "modelport.validators.matching", "modelport.validators.validate",
                    "modelport.targets.base")),
    ("runners and readers", ("modelport.results", "modelport.toolchains", "modelport.toolchains.*",
                             "modelport.targets", "modelport.targets.*", "modelport.sources",
                             "modelport.sources.*", "modelport.converters.base", "modelport.formats",
                             "modelport.formats.base")),
    ("formats and edges", ("modelport.formats.*", "modelport.converters", "modelport.converters.*",
                           "modelport.registry")),
    ("services", ("modelport.worker", "modelport.records", "modelport.check_cache", "modelport.executors", "modelport.calibration", "modelport.bundles", "modelport.loading", "modelport.runners", "modelport.validation", "modelport.describe",
                  "modelport.options", "modelport.placement", "modelport.config", "modelport.doctor",
                  "modelport.validators.report", "modelport.validators.report_formats")),
    ("pipeline", ("modelport.pipeline", "modelport.comparison", "modelport.benchmark", "modelport.gate")),
    ("bundles", ("modelport.packaging", "modelport.quant_doctor", "modelport.debug")),
    ("api", ("modelport", "modelport.api")),
    ("cli", ("modelport.cli", "modelport.cli.*", "modelport.__main__")),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every modelport module `name` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "modelport")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "modelport":
                continue
            for alias in node.names:  # `from . import api` imports the module modelport.api
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def layer_of(name: str) -> int:
    best = None
    for rank, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            exact = pattern == name
            wildcard = pattern.endswith(".*") and name.startswith(pattern[:-1])
            if exact:
                return rank
            if wildcard and best is None:
                best = rank
    assert best is not None, f"{name} is in no layer: add it to LAYERS (and to docs/architecture.md)"
    return best


def test_no_import_cycles():
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert cycles == [], f"import cycles: {cycles}"


def test_layers_only_import_downwards():
    upward = []
    for name, targets in graph().items():
        for target in targets:
            if layer_of(target) > layer_of(name):
                upward.append(f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})")
    assert upward == []


def test_the_checker_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from .pipeline import convert\n    import modelport.api\n")
    found = imports_of("modelport.probe", probe, {"modelport.pipeline", "modelport.api"})
    assert found == {"modelport.pipeline", "modelport.api"}
