"""Results as plain JSON and back, for `check`'s cache and run journal.

Why not pickle: a cache folder is kept between CI runs and may be restored from a shared store, so
whoever can write it must not be able to run code in the next run. A record names its types; only
the result types listed here can be made from one, through their own constructors.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from pathlib import Path
from typing import Any

from .artifact import Artifact, IOMapping, TensorLink
from .results import ConvertResult, NumericResult, Status, TargetResult, Verdict
from .spec import TensorSpec
from .validators.compare import OutputComparison
from .validators.latency import Latency

_TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    Artifact, IOMapping, TensorLink, ConvertResult, NumericResult, TargetResult, Verdict, Status, TensorSpec,
    OutputComparison, Latency)}


class NotRecordable(TypeError):
    """A value with no record form (the result is then not cached)."""


def to_record(value: Any) -> Any:
    """A JSON-ready form of `value` (results, their parts, paths, tuples, numbers)."""
    if isinstance(value, enum.Enum):  # (first: a str enum is a str too)
        if _TYPES.get(type(value).__name__) is not type(value):
            raise NotRecordable(f"{type(value).__qualname__} has no record form")
        return {"$enum": type(value).__name__, "value": value.value}
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if _TYPES.get(name) is not type(value):
            raise NotRecordable(f"{type(value).__qualname__} has no record form")
        return {"$type": name, **{f.name: to_record(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, Path):
        return {"$path": str(value)}
    if isinstance(value, tuple):
        return {"$tuple": [to_record(v) for v in value]}
    if isinstance(value, list):
        return [to_record(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise NotRecordable("a dict with non-string keys")
        return {("$" + k if k.startswith("$") else k): to_record(v) for k, v in value.items()}
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return to_record(item())
    raise NotRecordable(f"{type(value).__qualname__} has no record form")


def from_record(data: Any) -> Any:
    """The value `to_record` made `data` from; an unknown type or field is a ValueError."""
    if isinstance(data, list):
        return [from_record(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "$type" in data:
        cls = _TYPES.get(data["$type"])
        if cls is None or not dataclasses.is_dataclass(cls):
            raise ValueError(f"unknown record type {data['$type']!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {k: from_record(v) for k, v in data.items() if k != "$type"}
        if set(values) - set(fields):
            raise ValueError(f"unknown fields of {cls.__name__}: {sorted(set(values) - set(fields))}")
        return cls(**values)
    if "$enum" in data:
        cls = _TYPES.get(data["$enum"])
        if cls is None or not issubclass(cls, enum.Enum):
            raise ValueError(f"unknown record enum {data['$enum']!r}")
        return cls(data["value"])
    if "$path" in data:
        return Path(data["$path"])
    if "$tuple" in data:
        return tuple(from_record(v) for v in data["$tuple"])
    if "$float" in data:
        return float(data["$float"])
    return {(k[1:] if k.startswith("$$") else k): from_record(v) for k, v in data.items()}


def dumps(value: Any) -> str:
    return json.dumps(to_record(value), sort_keys=True, allow_nan=False)


def loads(text: str) -> Any:
    return from_record(json.loads(text))
