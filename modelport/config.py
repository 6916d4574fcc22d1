"""`modelport check` configuration: `modelport.toml`, or `[tool.modelport]` in `pyproject.toml`.

Strict on purpose: an unknown or misspelt key is an error naming the key and its line, never
silently ignored (a typo in a CI gate would otherwise turn it off).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadInput

# Options [defaults] and a [[models]] entry may set, with the type each takes.
OPTION_TYPES: dict[str, type | tuple[type, ...]] = {
    "atol": (int, float), "rtol": (int, float), "min_cosine": (int, float), "top_k": int, "samples": int,
    "seed": int, "opset": int, "threads": int, "quantize": str, "keep_layout": bool, "simplify": bool,
    "signature": str, "trust_remote_code": bool, "framework": str, "input_ranges": list, "sample_inputs": str,
    "latency_runs": int, "latency_warmup": int, "via": list, "calibration_data": str, "timeout": (int, float),
    "preprocess": str,
}
MODEL_KEYS = {"source", "name", "inputs", "targets", "tolerance", "budget", "package", *OPTION_TYPES}
TOLERANCE_KEYS: dict[str, type | tuple[type, ...]] = {"atol": (int, float), "rtol": (int, float),
                                                      "min_cosine": (int, float), "top_k": int}
BUDGET_KEYS = {"latency_p50_ms", "latency_ratio", "size_mb",
               "min_cosine", "top1_agreement", "size_reduction"}  # (these three are lower bounds)
PACKAGE_KEYS: dict[str, type | tuple[type, ...]] = {"target": str, "path": str}


@dataclass
class ModelCheck:
    source: str
    name: str
    inputs: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=lambda: ["onnx"])
    options: dict[str, Any] = field(default_factory=dict)
    tolerance: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    package: dict[str, str] | None = None  # {"target": ..., "path": ...}: bundle that target once it passes


@dataclass
class CheckConfig:
    path: Path
    models: list[ModelCheck]


def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if re.search(rf"(^|[{{,\s\[.]){re.escape(key)}\s*[=\]]", line):
            return number
    return None


class _Checker:
    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text

    def fail(self, message: str, key: str | None = None, hint: str = "") -> BadInput:
        line = _line_of(self.text, key) if key else None
        where = f"{self.path}:{line}" if line else str(self.path)
        return BadInput(f"{where}: {message}", hint or "See the README's `modelport check` section for the keys.")

    def known(self, table: dict, allowed: set[str] | dict, where: str) -> None:
        for key in table:
            if key.replace("-", "_") not in allowed:
                raise self.fail(f"unknown key '{key}' in {where}.", key,
                                f"Allowed there: {', '.join(sorted(allowed))}.")

    def typed(self, key: str, value: Any, expected: type | tuple[type, ...], where: str) -> Any:
        if isinstance(value, bool) and expected in ((int, float), int):
            raise self.fail(f"'{key}' in {where} must be a number, not {value!r}.", key)
        if not isinstance(value, expected):
            names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
            raise self.fail(f"'{key}' in {where} must be {names}, not {type(value).__name__} {value!r}.", key)
        return value

    def options(self, table: dict, where: str) -> dict[str, Any]:
        found = {}
        for key, value in table.items():
            name = key.replace("-", "_")
            if name in OPTION_TYPES:
                found[name] = self.typed(key, value, OPTION_TYPES[name], where)
        return found


def _resolve_source(source: str, base: Path) -> str:
    """Paths in the config are relative to the config file; `package.module:name` stays as is."""
    def relative(text: str) -> str:
        return text if Path(text).is_absolute() else str(base / text)

    target, sep, attr = source.rpartition(":")
    if sep and target.endswith(".py"):
        return f"{relative(target)}:{attr}"
    if sep and re.fullmatch(r"[A-Za-z_][\w.]*", target) and not (base / source).exists():
        return source
    return relative(source)


def find_config(start: Path | None = None) -> Path:
    folder = (start or Path.cwd()).resolve()
    for name in ("modelport.toml", "pyproject.toml"):
        candidate = folder / name
        if candidate.is_file() and (name == "modelport.toml" or "[tool.modelport" in candidate.read_text()):
            return candidate
    raise BadInput(f"No modelport.toml (or [tool.modelport] in pyproject.toml) in {folder}.",
                   "Write one (see the README's `modelport check` section) or pass its path.")


def load_config(path: Path) -> CheckConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise BadInput(f"Cannot read config '{path}': {exc.strerror}.", "Check the path.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{path}: not valid TOML: {exc}.", "Fix the syntax at that line.") from None
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("modelport")
        if data is None:
            raise BadInput(f"{path} has no [tool.modelport] table.", "Add one, or use a modelport.toml.")
    check = _Checker(path, text)
    check.known(data, {"defaults", "models"}, "the top level")
    defaults_table = data.get("defaults", {})
    check.known(defaults_table, OPTION_TYPES, "[defaults]")
    defaults = check.options(defaults_table, "[defaults]")
    entries = data.get("models")
    if not entries:
        raise check.fail("no [[models]] to check.", None, "Add at least one [[models]] table with a source.")
    models = []
    for index, entry in enumerate(entries, start=1):
        where = f"[[models]] #{index}"
        check.known(entry, MODEL_KEYS, where)
        if "source" not in entry:
            raise check.fail(f"{where} has no 'source'.", "models", 'Add source = "path/to/model".')
        source = check.typed("source", entry["source"], str, where)
        resolved = _resolve_source(source, path.parent)
        targets = entry.get("targets", ["onnx"])
        targets = [targets] if isinstance(targets, str) else check.typed("targets", targets, list, where)
        inputs = entry.get("inputs", [])
        inputs = [inputs] if isinstance(inputs, str) else check.typed("inputs", inputs, list, where)
        tolerance = entry.get("tolerance", {})
        for output, limits in check.typed("tolerance", tolerance, dict, where).items():
            check.typed(output, limits, dict, f"{where}.tolerance")
            check.known(limits, TOLERANCE_KEYS, f"{where}.tolerance.{output}")
            for key, value in limits.items():
                check.typed(key, value, TOLERANCE_KEYS[key.replace("-", "_")], f"{where}.tolerance.{output}")
        budget = check.typed("budget", entry.get("budget", {}), dict, where)
        check.known(budget, BUDGET_KEYS, f"{where}.budget")
        for key, value in budget.items():
            if key == "latency_ratio":
                check.typed(key, value, (int, float), f"{where}.budget")
            else:
                for target, limit in check.typed(key, value, dict, f"{where}.budget").items():
                    check.typed(target, limit, (int, float), f"{where}.budget.{key}")
        for key, per_target in budget.items():
            if isinstance(per_target, dict) and "all" not in targets:
                stray = [t for t in per_target if t not in targets]
                if stray:
                    raise check.fail(f"{where}.budget.{key} names target '{stray[0]}', which this model does not "
                                     f"convert to ({', '.join(targets)}).", stray[0])
        package = entry.get("package")
        if package is not None:
            check.typed("package", package, dict, where)
            check.known(package, PACKAGE_KEYS, f"{where}.package")
            for key in PACKAGE_KEYS:
                if key not in package:
                    raise check.fail(f"{where}.package has no '{key}'.", "package",
                                     'Write package = { target = "tflite", path = "dist/model.zip" }.')
                check.typed(key, package[key], str, f"{where}.package")
            if package["target"] not in targets and "all" not in targets:
                raise check.fail(f"{where}.package names target '{package['target']}', which this model does not "
                                 f"convert to ({', '.join(targets)}).", "package")
            package = {"target": package["target"], "path": str(path.parent / package["path"])}
        options = {**defaults, **check.options(entry, where)}
        for key in ("sample_inputs", "calibration_data"):  # relative to the config file
            if options.get(key) and options[key] != "random":
                options[key] = str(path.parent / options[key])
        if options.get("quantize", "none") not in ("none", "fp16", "dynamic", "int8"):
            raise check.fail(f"'quantize' in {where} must be none, fp16, dynamic or int8.", "quantize")
        models.append(ModelCheck(source=resolved, name=entry.get("name") or source, inputs=list(inputs),
                                 targets=[str(t) for t in targets], options=options,
                                 tolerance={k: {kk.replace("-", "_"): vv for kk, vv in v.items()}
                                            for k, v in tolerance.items()},
                                 budget=budget, package=package))
    return CheckConfig(path=path, models=models)
