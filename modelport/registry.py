"""The registry: every format spec and converter edge, built in or from a plugin, and the tables
derived from them (targets, --framework choices, extras, package versions, detection).

A new format or edge is one module declaring `FORMAT` (a FormatSpec) and/or `EDGES` (Edges),
plus one line in BUILTIN below. Third-party packages register theirs through the entry-point
group `modelport.formats`: each entry point names such a module, a FormatSpec, or an Edge.
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import BadInput
from .safety import check_model_path
from .formats.base import Detected, Edge, FormatSpec, Probe, load_object

ENTRY_POINT_GROUP = "modelport.formats"

# Order matters twice: `--to all` lists targets in this order, and detection asks in this order.
BUILTIN = (
    "modelport.formats.onnx",
    "modelport.formats.tflite",
    "modelport.formats.torchscript",
    "modelport.formats.savedmodel",
    "modelport.formats.tfjs",
    "modelport.formats.torch",
    "modelport.formats.keras",
    "modelport.formats.jax",
    "modelport.converters.torch2onnx",
    "modelport.converters.torch2torchscript",
    "modelport.converters.keras2savedmodel",
    "modelport.converters.jax2savedmodel",
    "modelport.converters.savedmodel2onnx",
    "modelport.converters.tflite2onnx",
    "modelport.converters.onnx2tf",
    "modelport.converters.onnx2tf2",
    "modelport.converters.savedmodel2tflite",
    "modelport.converters.savedmodel2tfjs",
    "modelport.converters.onnx2torchscript",
    "modelport.formats.ort",
    "modelport.formats.executorch",
    "modelport.converters.torch2executorch",
)

ENTRY_KIND = "python-entry"  # file.py:name or package.module:name, resolved when loaded
_ENTRY = re.compile(r"^(?P<target>.+?\.py|[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*):(?P<attr>[A-Za-z_]\w*)$")


def is_entry_point(source: str) -> bool:
    match = _ENTRY.match(source)
    if not match:
        return False
    return match.group("target").endswith(".py") or not Path(source).exists()


@dataclass
class Registry:
    formats: dict[str, FormatSpec] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # plugins that failed to load, for doctor

    # -- building ------------------------------------------------------------------------------
    def add(self, item: Any, origin: str) -> None:
        """Register a FormatSpec, an Edge, a module declaring FORMAT/EDGES, or a list of these."""
        if isinstance(item, FormatSpec):
            if item.name in self.formats:
                raise ValueError(f"{origin}: format '{item.name}' is already registered")
            self.formats[item.name] = item
        elif isinstance(item, Edge):
            if any(e.name == item.name for e in self.edges):
                raise ValueError(f"{origin}: edge '{item.name}' is already registered")
            self.edges.append(item)
        elif isinstance(item, ModuleType):
            found = [getattr(item, "FORMAT", None), *getattr(item, "EDGES", ())]
            if not any(found):
                raise ValueError(f"{origin}: module {item.__name__} declares neither FORMAT nor EDGES")
            for part in found:
                if part is not None:
                    self.add(part, origin)
        elif isinstance(item, (list, tuple)):
            for part in item:
                self.add(part, origin)
        else:
            raise ValueError(f"{origin}: {type(item).__name__} is not a FormatSpec, an Edge or a module")

    # -- derived tables ------------------------------------------------------------------------
    def spec(self, name: str) -> FormatSpec:
        return self.formats[name]

    def spec_of_kind(self, kind: str) -> FormatSpec:
        for spec in self.formats.values():
            if kind in spec.all_kinds:
                return spec
        raise BadInput(f"No format module reads '{kind}' models.", "Run `modelport doctor` to list the formats.")

    def targets(self) -> list[str]:
        return [name for name, spec in self.formats.items() if spec.target is not None]

    def frameworks(self) -> list[str]:
        """What --framework accepts: the frameworks of every format readable as a source."""
        return list(dict.fromkeys(s.source.framework for s in self.formats.values() if s.source))

    def kinds_of_framework(self, framework: str) -> tuple[str, ...]:
        return tuple(k for s in self.formats.values() if s.source and s.source.framework == framework
                     for k in s.all_kinds)

    def nodes(self) -> set[str]:
        return {e.src for e in self.edges} | {e.dst for e in self.edges}

    def packages(self) -> list[str]:
        """Distributions whose versions a report records."""
        names = [p for s in self.formats.values() for p in s.packages]
        names += [p for e in self.edges for p in e.packages]
        return list(dict.fromkeys([*names, "numpy"]))

    def extra_for_module(self) -> dict[str, str]:
        """Python module -> the extra that installs it (for messages about users' own imports)."""
        found: dict[str, str] = {}
        for requirement in [s.requirement for s in self.formats.values()] + [e.requirement for e in self.edges]:
            for module in (*requirement.modules, *requirement.any_of):
                found.setdefault(module.split(".")[0], requirement.extra)
        return found

    def entry_frameworks(self) -> list[tuple[str, str]]:
        """(module prefix, format name) for recognising objects an entry point returns, longest first."""
        pairs = [(prefix, s.name) for s in self.formats.values() if s.source for prefix in s.source.entry_modules]
        return sorted(pairs, key=lambda pair: -len(pair[0]))

    def function_format(self) -> str | None:
        """The format plain functions from an entry point are read as (JAX)."""
        return next((s.name for s in self.formats.values() if s.source and s.source.entry_functions), None)

    # -- detection -----------------------------------------------------------------------------
    def detect(self, source: str | Path) -> Detected:
        """What kind of model `source` is, from its content (never its extension)."""
        text = str(source)
        path = Path(text)
        if not path.exists():
            if is_entry_point(text):
                return Detected(ENTRY_KIND, "", "Python entry point")
            raise BadInput(f"'{text}' does not exist.",
                           "Pass a model file, a SavedModel directory or an entry point such as model.py:build.")
        check_model_path(path)
        if path.is_dir():
            found = self._ask(Probe(path))
            if found:
                return found
            raise BadInput(f"Directory '{text}' is not a model: it has neither saved_model.pb nor model.json.",
                           "Pass a SavedModel or TF.js directory, or a model file.")
        try:
            size = path.stat().st_size
            with path.open("rb") as fh:
                head = fh.read(64)
        except OSError as exc:
            raise BadInput(f"Cannot read '{text}': {exc.strerror}.", "Check the path and its permissions.") from None
        if size == 0:
            raise BadInput(f"'{text}' is empty (0 bytes).", "Export the model again; the file was not written.")
        probe = Probe(path, head)
        if text.endswith(".py") and not probe.is_zip:
            raise BadInput(f"'{text}' is a Python file; name the function or object to load.",
                           f"Pass it as {text}:build (the name of a function returning the model).")
        found = self._ask(probe)
        if found:
            return found
        if probe.is_zip:
            raise BadInput(f"'{text}' is a zip archive of no known model kind.",
                           "Expected a TorchScript, torch.export (.pt2), torch.save or .keras archive.")
        printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head) / max(len(head), 1)
        looked = "text" if printable > 0.9 else f"binary starting with {head[:8].hex(' ')}"
        known = "; ".join(s.description for s in self.formats.values() if s.detect or s.source)
        raise BadInput(f"'{text}' is not a model format modelport knows (it looks like {looked}).",
                       f"Supported: {known}. If the format is right but the file damaged, export it again; "
                       "--framework forces a reader.")

    def _ask(self, probe: Probe) -> Detected | None:
        for spec in self.formats.values():
            if spec.detect:
                found = load_object(spec.detect)(probe)
                if found is not None:
                    return found
        return None


def build(modules: tuple[str, ...] = BUILTIN, plugins: bool = True) -> Registry:
    registry = Registry()
    for name in modules:
        registry.add(importlib.import_module(name), name)
    if plugins:
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            origin = f"plugin '{entry.name}' ({entry.value})"
            try:
                registry.add(entry.load(), origin)
            except Exception as exc:  # a broken plugin must not take the built-in formats down
                registry.problems.append(f"{origin}: {type(exc).__name__}: {exc}")
                print(f"modelport: ignoring {origin}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return registry


@functools.lru_cache(maxsize=1)
def default() -> Registry:
    """The registry of this process: built-ins plus installed plugins, built once."""
    return build()


def detect(source: str | Path) -> Detected:
    return default().detect(source)
