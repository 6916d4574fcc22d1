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

from ..errors import BadInput
from .base import EntryPoint


def _framework_of(obj: Any) -> str | None:
    for klass in type(obj).__mro__:
        module = klass.__module__ or ""
        if module.startswith("torch"):
            return "torch"
        if module.startswith(("keras", "tf_keras", "tensorflow.python.keras")):
            return "keras"
        if module.startswith("tensorflow"):
            return "tensorflow"
    return None


def resolve(source: str) -> tuple[EntryPoint, str]:
    """Import the entry point, call it if it is a factory, and say which framework it belongs to."""
    target, _, attr = source.rpartition(":")
    try:
        if target.endswith(".py"):
            file = Path(target)
            if not file.is_file():
                raise BadInput(f"Entry point file '{target}' does not exist.", "Check the path before ':'.")
            module_name = f"modelport_entry_{abs(hash(file.resolve()))}"
            spec = importlib.util.spec_from_file_location(module_name, file)
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
    if _framework_of(obj) is None and callable(obj):
        required = [p for p in inspect.signature(obj).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if required and not inspect.isclass(obj):
            # A plain function with inputs: a JAX-style function, handled by its own source.
            return EntryPoint(obj=obj, display=source), "function"
        try:
            obj = obj()
        except Exception as exc:
            raise BadInput(f"Calling '{source}' raised {type(exc).__name__}: {exc}.",
                           "The entry point must build the model with no arguments.") from None
    if isinstance(obj, tuple) and len(obj) == 2 and _framework_of(obj[0]):
        obj, example = obj
    if isinstance(obj, dict) and "model" in obj:
        obj, example = obj["model"], obj.get("example_inputs")
    framework = _framework_of(obj)
    if framework is None:
        raise BadInput(f"'{source}' gave a {type(obj).__name__}, not a model modelport knows.",
                       "Return a torch.nn.Module (optionally with example inputs), a keras.Model or a tf.Module.")
    if example is None:
        example = getattr(obj, "example_inputs", None)
    return EntryPoint(obj=obj, example_inputs=example, display=source), framework
