"""Python entry points `path/file.py:name` or `package.module:name`.

Resolving one runs the user's own code, which is what they asked for by naming it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from ..errors import BackendMissing, BadInput
from .base import EntryPoint

ENTRY_MODULE_PREFIX = "modelport_entry_"

# (module prefix, format name), longest prefix first: which format an object's class belongs to.
Frameworks = list[tuple[str, str]]


def _framework_of(obj: Any, frameworks: Frameworks) -> str | None:
    for klass in type(obj).__mro__:
        module = klass.__module__ or ""
        for prefix, name in frameworks:
            if module == prefix or module.startswith(prefix + "."):
                return name
    return None


def _required_positional(fn: Any) -> list[str] | None:
    """Names of required positional parameters; None when the callable has no readable signature."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    return [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _is_plain_function(obj: Any, frameworks: Frameworks) -> bool:
    """A callable that is not a class nor a known framework's model object: read as a JAX function."""
    return callable(obj) and not inspect.isclass(obj) and _framework_of(obj, frameworks) is None


def _function(function_format: str | None, source: str) -> str:
    if function_format is None:
        raise BadInput(f"'{source}' gave a plain function, and no installed format reads functions.",
                       "Return a torch.nn.Module or a keras.Model.")
    return function_format


def _function_entry(items: tuple, source: str) -> EntryPoint:
    """`(fn, params)` or `(fn, params, example_inputs)`, where fn(params, *inputs).

    A 2-tuple whose function takes a single input cannot be (fn, params): fn(params) would have no
    inputs; it is read as (fn, example_inputs) with fn's parameters already bound.
    """
    fn, second, *rest = items
    required = _required_positional(fn)
    if len(items) == 2 and required is not None and len(required) == 1:
        return EntryPoint(obj=fn, example_inputs=second, display=source)
    return EntryPoint(obj=fn, example_inputs=rest[0] if rest else None, display=source, extra={"params": second})


def resolve(source: str, frameworks: Frameworks, function_format: str | None,
            extra_for_module: dict[str, str]) -> tuple[EntryPoint, str]:
    """Import the entry point, call it if it is a factory, and say which format (by name) it is.

    `frameworks` recognises model objects by their classes' modules; plain functions are
    `function_format` (JAX). The module is registered in sys.modules only while it executes
    (and while the model lives: see `EntryPoint.module_name`)."""
    target, _, attr = source.rpartition(":")
    try:
        if target.endswith(".py"):
            file = Path(target)
            if not file.is_file():
                raise BadInput(f"Entry point file '{target}' does not exist.", "Check the path before ':'.")
            module_name = f"{ENTRY_MODULE_PREFIX}{abs(hash(file.resolve()))}"
            spec = importlib.util.spec_from_file_location(module_name, file)
            assert spec is not None and spec.loader is not None  # a .py path always gets a source loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            sys.path.insert(0, str(file.parent.resolve()))
            try:
                spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(file.parent.resolve()))
        else:
            module = importlib.import_module(target)
    except BadInput:
        raise
    except ModuleNotFoundError as exc:
        backend = (exc.name or "").split(".")[0]
        if backend in extra_for_module:  # the user's code needs a framework this machine lacks
            raise BackendMissing(f"'{target}' imports {backend}, which is not installed.",
                                 f"Install it with: pip install 'modelport[{extra_for_module[backend]}]'") from None
        raise BadInput(f"Cannot import '{target}': {exc}.",
                       "Check the module path, or pass a file as path/to/file.py:name.") from None
    except SyntaxError as exc:
        raise BadInput(f"'{target}' has a syntax error at line {exc.lineno}: {exc.msg}.", "Fix the file.") from None
    except Exception as exc:  # the user's module raised while importing
        raise BadInput(f"Importing '{target}' raised {type(exc).__name__}: {exc}.",
                       "Fix the module so it imports on its own.") from None
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise BadInput(f"'{target}' has no attribute '{attr}'.",
                       f"Names it defines: {', '.join(public[:12]) or 'none'}.")
    obj = getattr(module, attr)
    example = None
    if _framework_of(obj, frameworks) is None and callable(obj):
        if _required_positional(obj) and not inspect.isclass(obj):
            # A plain function with inputs: a JAX-style function, handled by its own source.
            return EntryPoint(obj=obj, display=source), _function(function_format, source)
        try:
            obj = obj()
        except Exception as exc:
            raise BadInput(f"Calling '{source}' raised {type(exc).__name__}: {exc}.",
                           "The entry point must build the model with no arguments.") from None
    if isinstance(obj, tuple) and len(obj) == 2 and _framework_of(obj[0], frameworks):
        obj, example = obj
    elif isinstance(obj, tuple) and len(obj) in (2, 3) and _is_plain_function(obj[0], frameworks):
        return _function_entry(obj, source), _function(function_format, source)
    if isinstance(obj, dict) and "model" in obj:
        if "params" in obj and _is_plain_function(obj["model"], frameworks):
            return (_function_entry((obj["model"], obj["params"], obj.get("example_inputs")), source),
                    _function(function_format, source))
        obj, example = obj["model"], obj.get("example_inputs")
    framework = _framework_of(obj, frameworks)
    if framework is None and _is_plain_function(obj, frameworks):
        # A factory returned a function with its parameters closed over or bound (JAX style).
        return EntryPoint(obj=obj, example_inputs=example, display=source), _function(function_format, source)
    if framework is None:
        raise BadInput(f"'{source}' gave a {type(obj).__name__}, not a model modelport knows.",
                       "Return a torch.nn.Module (optionally with example inputs), a keras.Model, a tf.Module, "
                       "or a JAX function as (fn, params[, example_inputs]).")
    if example is None:
        example = getattr(obj, "example_inputs", None)
    return EntryPoint(obj=obj, example_inputs=example, display=source), framework
