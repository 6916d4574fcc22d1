"""What a format module declares: one `FormatSpec`, and converter modules their `Edge`s.

Everything here is data plus import strings, so reading the specs imports no framework: the CLI's
choices, `doctor`, `--to all` and the versions in reports are all computed from them.
"""

from __future__ import annotations

import importlib
import importlib.util
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BackendMissing, BadInput
from ..validators.compare import Tolerance


def load_object(import_string: str) -> Any:
    """`package.module:attr` -> the attribute (the module is imported only now)."""
    module, _, attr = import_string.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Detected:
    format: str      # what the content is: "pt2", "torchscript", "onnx", "h5"... (the report's `format`)
    spec: str        # the name of the FormatSpec it belongs to
    evidence: str    # what the content showed, for messages and `inspect`


class Probe:
    """A path's content, read once and only as far as a detector asks (head bytes, zip names)."""

    def __init__(self, path: Path, head: bytes = b"") -> None:
        self.path = path
        self.head = head
        self._zip_names: list[str] | None = None

    @property
    def is_dir(self) -> bool:
        return self.path.is_dir()

    @property
    def is_zip(self) -> bool:
        return self.head.startswith(b"PK\x03\x04")

    def zip_names(self) -> list[str]:
        if self._zip_names is None:
            try:
                with zipfile.ZipFile(self.path) as archive:
                    self._zip_names = archive.namelist()
            except (zipfile.BadZipFile, OSError, ValueError) as exc:
                raise BadInput(f"'{self.path}' looks like a zip archive but cannot be read ({exc}).",
                               "The file is probably truncated or corrupt; export it again.") from None
        return self._zip_names

    def zip_tails(self) -> set[str]:
        """Member names without their top folder (torch archives nest everything in one)."""
        return {n.split("/", 1)[1] if "/" in n else n for n in self.zip_names()}


Detector = Callable[[Probe], "Detected | None"]


@dataclass(frozen=True)
class Requirement:
    """What a spec or an edge needs installed: Python modules (checked with find_spec, never
    imported), plus an optional check for anything else (Node.js, npm packages)."""

    extra: str                                   # pip install 'modelport[<extra>]'
    modules: tuple[str, ...] = ()                # every one of these
    any_of: tuple[str, ...] = ()                 # at least one of these
    check: str | None = None                     # "module:function" () -> (problem, what to do) | None
    versions: str | None = None                  # "module:function" () -> {name: {"installed", "version"}}
    toolchain: str | None = None                 # runs in this toolchain (modelport/toolchains/<name>)

    def problem(self, purpose: str) -> BackendMissing | None:
        """What is missing, as the error to raise (saying what to install), or None."""
        absent = [m for m in self.modules if importlib.util.find_spec(m) is None]
        if self.any_of and all(importlib.util.find_spec(m) is None for m in self.any_of):
            absent.append(self.any_of[0])
        if absent:
            return BackendMissing(f"The Python package '{absent[0]}' is not installed (needed {purpose}).",
                                  f"Install it with: pip install 'modelport[{self.extra}]'")
        if self.toolchain:
            from ..toolchains import problem

            missing = problem(self.toolchain, purpose)
            if missing is not None:
                return missing
        found = load_object(self.check)() if self.check else None
        return BackendMissing(found[0], found[1]) if found is not None else None

    def ensure(self, purpose: str) -> None:
        problem = self.problem(purpose)
        if problem is not None:
            raise problem


@dataclass(frozen=True)
class SourceSpec:
    """How a format is read as a source model."""

    loader: str | None              # "module:function" (path, kind, LoadOptions) -> SourceModel; None: entry points only
    framework: str                  # what --framework calls it, and the report's `framework`
    node: str | None = None         # the graph node it enters at (default: the format's name)
    entry_loader: str | None = None  # "module:function" (EntryPoint, LoadOptions) for file.py:name objects
    entry_modules: tuple[str, ...] = ()  # module prefixes of the classes of such objects
    entry_functions: bool = False   # plain functions from an entry point are read as this format


@dataclass(frozen=True)
class TargetSpec:
    """How a format runs as a conversion target."""

    runner: str                     # "module:Class" of its Runner
    file_name: str                  # what the artifact is called in the output folder
    tolerances: dict[str, Tolerance] = field(default_factory=dict)  # per precision; "none" = float
    isolate: bool = False           # run in a clean child process (see targets/isolated.py)
    precisions: tuple[str, ...] = ("none",)  # --quantize choices modelport can make for this target
    quantizer: str | None = None    # "module:function" (artifact, workdir, ctx) applying --quantize to the artifact
    bundle_runtime: str | None = None  # the standalone runner a `package` bundle ships: litert | onnxruntime | tfjs
    layer_debugger: str | None = None  # "module:function" opening its int8 LayerDebugger (quantize-doctor)
    layer_debug_from: str | None = None  # the float format that debugger starts from
    companions: bool = False        # files written beside the artifact belong to it (sidecar configs)

    def tolerance(self, precision: str) -> Tolerance:
        return self.tolerances.get(precision, self.tolerances["none"])


@dataclass(frozen=True)
class FormatSpec:
    name: str                                   # the format graph's node, and the --to name
    description: str
    requirement: Requirement                    # what reading or running it needs
    kinds: tuple[str, ...] = ()                 # content kinds it recognises (default: its name)
    detect: str | None = None                   # "module:function" Probe -> Detected | None
    source: SourceSpec | None = None
    target: TargetSpec | None = None
    describe: str | None = None                 # "module:function" (path) -> dict, for inspect without a loader
    packages: tuple[str, ...] = ()              # distributions whose versions reports record

    @property
    def all_kinds(self) -> tuple[str, ...]:
        return self.kinds or (self.name,)

    @property
    def node(self) -> str:
        """The graph node a source of this format starts from."""
        return (self.source.node if self.source and self.source.node else None) or self.name


@dataclass(frozen=True)
class Edge:
    """A converter: from one format to another, declared beside its code."""

    name: str
    src: str
    dst: str
    impl: str                       # "module:function" (Artifact, workdir, EdgeContext) -> Artifact
    requirement: Requirement
    cost: float = 1.0
    packages: tuple[str, ...] = ()
    precisions: tuple[str, ...] | None = None  # the --quantize levels it can write (None: any)
    # "module:function" (the loaded SourceModel) -> why this edge cannot take that source, or None;
    # `--to all` skips a target every path of which is refused (TorchScript has no torch.export).
    refuses: str | None = None

    def load(self) -> Callable[..., Any]:
        return load_object(self.impl)

    def refusal(self, model: Any) -> str | None:
        return load_object(self.refuses)(model) if self.refuses else None
