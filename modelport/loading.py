"""The one way every command loads a model: detect it by content, check it, read it with the
reader its format declares. Running a user's entry point executes their code, as they asked."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .errors import BadInput
from .formats.base import load_object
from .registry import ENTRY_KIND, Registry, default
from .sources.base import LoadOptions, SourceModel
from .sources.entry import ENTRY_MODULE_PREFIX, resolve


def load_source(source: str, options: LoadOptions, framework: str | None = None,
                registry: Registry | None = None) -> SourceModel:
    """Load SOURCE (a path or an entry point) as a reference model."""
    registry = registry or default()
    detected = registry.detect(source)
    if detected.format == ENTRY_KIND:
        before = {name for name in sys.modules if name.startswith(ENTRY_MODULE_PREFIX)}
        try:
            entry, name = resolve(source, registry.entry_frameworks(), registry.function_format(),
                                  registry.extra_for_module())
            spec = registry.spec(name)
            if spec.source is None or spec.source.entry_loader is None:
                raise BadInput(f"'{source}' gave a {spec.source.framework if spec.source else name} model; this "
                               f"modelport reads such entry points not yet.",
                               "Export it to ONNX or TorchScript and pass that file.")
            spec.requirement.ensure(f"to read {spec.name} models")
            model: SourceModel = load_object(spec.source.entry_loader)(entry, options)
        except BaseException:
            for added in {n for n in sys.modules if n.startswith(ENTRY_MODULE_PREFIX)} - before:
                sys.modules.pop(added, None)
            raise
        model.entry_modules = tuple({n for n in sys.modules if n.startswith(ENTRY_MODULE_PREFIX)} - before)
        return model
    spec = registry.spec(detected.spec)
    if framework:
        allowed = registry.kinds_of_framework(framework)
        if detected.format not in allowed:
            if not allowed:
                raise BadInput(f"--framework {framework} is not readable by this modelport yet.",
                               f"Readable: {', '.join(registry.frameworks())}.")
            raise BadInput(f"--framework {framework} was given, but '{source}' looks like this by its content: "
                           f"{detected.evidence}.", "Drop --framework to use what the content says.")
    if spec.source is None or spec.source.loader is None:
        raise BadInput(f"'{source}' ({detected.evidence}) is a {detected.format} model, which modelport cannot read "
                       "as a source.", "Convert it to ONNX with its own tools and pass the .onnx file.")
    spec.requirement.ensure(f"to read {spec.name} models")
    model = load_object(spec.source.loader)(Path(source), detected.format, options)
    model.details.setdefault("evidence", detected.evidence)
    return model


def source_node(model: SourceModel, registry: Registry | None = None) -> str:
    """The graph node a loaded source converts from."""
    return (registry or default()).spec_of_kind(model.format).node


def describe_source(source: str, options: LoadOptions, framework: str | None = None,
                    registry: Registry | None = None) -> dict[str, Any]:
    """What `inspect` shows: from the format's own describer where it has one, else the loaded model.
    A bundle from `package` is its model, described, with the bundle's manifest beside."""
    from .bundles import bundle_manifest, opened_bundle

    with opened_bundle(source) as model:
        described = _describe(model, options, framework, registry)
    if model != source:
        described.update({"path": source, "bundle": bundle_manifest(Path(source))})
    return described


def _describe(source: str, options: LoadOptions, framework: str | None = None,
              registry: Registry | None = None) -> dict[str, Any]:
    from .describe import describe_loaded

    registry = registry or default()
    detected = registry.detect(source)
    if detected.format != ENTRY_KIND:
        spec = registry.spec(detected.spec)
        if spec.describe and not framework:
            described: dict[str, Any] | None = load_object(spec.describe)(source)
            if described is not None:  # (None: the format's reader cannot say; load it instead)
                return described
        if (spec.source is None or spec.source.loader is None) and spec.target is not None and not framework:
            from .describe import describe_runner
            from .runners import open_runner

            runner = open_runner(spec, Path(source))
            runner.describe_only = True
            with runner:
                return describe_runner(runner, source, detected.format)
    model = load_source(source, options, framework, registry)
    try:
        return describe_loaded(model, source)
    finally:
        model.close()
