"""Tensor specs and the `--input NAME:SHAPE[:DTYPE]` / `--input-range NAME:LOW:HIGH` syntax."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

from .errors import BadInput

if TYPE_CHECKING:
    import numpy as np

Dim = int | str  # a str dimension is symbolic (dynamic), e.g. "batch"

DTYPES = (
    "float32", "float16", "float64", "bfloat16",
    "int8", "uint8", "int16", "int32", "int64", "bool",
)
_DTYPE_ALIASES = {"float": "float32", "fp32": "float32", "fp16": "float16", "half": "float16",
                  "double": "float64", "int": "int64", "long": "int64"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[Dim, ...] | None  # None: rank unknown
    dtype: str = "float32"

    @property
    def is_static(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) and d >= 0 for d in self.shape)

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape) if self.shape is not None else None,
                "dtype": self.dtype}

    def cli_form(self) -> str:
        shape = "x".join(str(d) for d in self.shape) if self.shape is not None else "?"
        return f"{self.name}:{shape}" + ("" if self.dtype == "float32" else f":{self.dtype}")


@dataclass(frozen=True)
class InputRange:
    name: str
    low: float
    high: float


def normalize_dtype(text: str) -> str:
    dtype = _DTYPE_ALIASES.get(text.lower(), text.lower())
    if dtype not in DTYPES:
        raise BadInput(f"Unknown dtype '{text}'.", f"Use one of: {', '.join(DTYPES)}.")
    return dtype


_NAME = r"[A-Za-z_][\w./\-]*"


def quantize(value: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """Float to the integers a quantized tensor stores: round(value / scale) + zero_point, clipped."""
    import numpy as np

    info = np.iinfo(np.dtype(dtype))
    return np.clip(np.round(value / np.float32(scale)) + zero_point, info.min, info.max).astype(dtype)


def dequantize(value: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    import numpy as np

    return (value.astype(np.float32) - zero_point) * np.float32(scale)


def parse_size(text: str, option: str = "--max-memory") -> int:
    """`4G`, `512M`, `1.5GB`, `1024` (bytes) -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, flags=re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise BadInput(f"Malformed {option} '{text}': expected a size such as 4G or 512M.", f"Example: {option} 8G")
    scale = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[match.group(2).upper()]
    return int(float(match.group(1)) * scale)


def parse_input(text: str) -> TensorSpec:
    """Parse `x:1x3x224x224`, `ids:batchx128:int64`; a named dim stays dynamic."""
    example = "--input x:1x3x224x224 (or ids:batchx128:int64)"
    parts = text.rsplit(":", 2) if text.count(":") >= 2 else text.split(":")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise BadInput(f"Malformed --input '{text}': expected NAME:SHAPE[:DTYPE].", f"Example: {example}")
    name, shape_text = parts[0], parts[1]
    dtype = normalize_dtype(parts[2]) if len(parts) == 3 else "float32"
    if not re.fullmatch(_NAME, name):
        raise BadInput(f"Malformed --input '{text}': '{name}' is not a valid tensor name.", f"Example: {example}")
    dims: list[Dim] = []
    for token in shape_text.lower().split("x") if shape_text not in ("scalar", "()") else []:
        if re.fullmatch(r"\d+", token):
            if int(token) == 0:
                raise BadInput(f"Malformed --input '{text}': a dimension of 0 makes an empty tensor.",
                               f"Example: {example}")
            dims.append(int(token))
        elif re.fullmatch(r"[a-z_]\w*", token):
            dims.append(token)
        else:
            raise BadInput(f"Malformed --input '{text}': bad dimension '{token}' in shape '{shape_text}'.",
                           f"Dimensions are positive integers or names, separated by 'x'. Example: {example}")
    return TensorSpec(name=name, shape=tuple(dims), dtype=dtype)


def parse_input_range(text: str) -> InputRange:
    parts = text.split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        low, high = float(parts[1]), float(parts[2])
    except ValueError:
        raise BadInput(f"Malformed --input-range '{text}': expected NAME:LOW:HIGH.",
                       "Example: --input-range input_ids:0:30522") from None
    if not high > low:
        raise BadInput(f"Malformed --input-range '{text}': HIGH must be greater than LOW.",
                       "Example: --input-range input_ids:0:30522")
    return InputRange(parts[0], low, high)


@overload
def merge_specs(model_specs: list[TensorSpec], user_specs: list[TensorSpec]) -> list[TensorSpec]: ...
@overload
def merge_specs(model_specs: list[TensorSpec] | None, user_specs: list[TensorSpec]) -> list[TensorSpec] | None: ...
def merge_specs(model_specs: list[TensorSpec] | None, user_specs: list[TensorSpec]) -> list[TensorSpec] | None:
    """User `--input` specs win over what the model says; they may name a subset."""
    if not user_specs:
        return model_specs
    if not model_specs:
        return list(user_specs)
    by_name = {s.name: s for s in user_specs}
    known = {s.name for s in model_specs}
    unknown = [n for n in by_name if n not in known]
    if unknown:
        raise BadInput(f"--input names '{unknown[0]}', but the model's inputs are: "
                       f"{', '.join(s.name for s in model_specs)}.", "Use one of those names.")
    for spec in model_specs:
        given = by_name.get(spec.name)
        if given is not None:
            _check_against_model(given, spec)
    return [by_name.get(s.name, s) for s in model_specs]


def _check_against_model(given: TensorSpec, recorded: TensorSpec) -> None:
    """An --input must not contradict what the model records: same rank, same fixed sizes."""
    if recorded.shape is None or given.shape is None:
        return
    shape = "x".join(str(d) for d in recorded.shape) or "scalar"
    if len(given.shape) != len(recorded.shape):
        raise BadInput(f"--input {given.cli_form()} has rank {len(given.shape)}, but the model records input "
                       f"'{recorded.name}' as {shape} (rank {len(recorded.shape)}).",
                       f"Pass a shape of rank {len(recorded.shape)}, e.g. --input {recorded.cli_form()}.")
    clash = [(i, d, g) for i, (d, g) in enumerate(zip(recorded.shape, given.shape))
             if isinstance(d, int) and d >= 0 and isinstance(g, int) and d != g]
    if clash:
        index, fixed, wanted = clash[0]
        raise BadInput(f"--input {given.cli_form()} sets dimension {index} to {wanted}, but the model fixes it at "
                       f"{fixed} (input '{recorded.name}' is {shape}).",
                       f"Keep the model's fixed sizes, e.g. --input {recorded.cli_form()}.")
