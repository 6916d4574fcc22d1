"""Sample inputs: seeded from specs, or the user's own `.npz`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BadInput, first_line
from ..spec import InputRange, TensorSpec

if TYPE_CHECKING:
    import numpy as np

_BATCH_NAMES = {"batch", "batch_size", "n", "b", "bs", "n_batch"}
_SYMBOLIC_DEFAULT = 8


def concrete_shape(spec: TensorSpec) -> tuple[int, ...]:
    """A symbolic batch dim becomes 1; another named dim becomes a small length."""
    if spec.shape is None:
        raise BadInput(f"Input '{spec.name}' has unknown rank.", f"Pass --input {spec.name}:1x3x224x224 (its shape).")
    return tuple(d if isinstance(d, int) and d >= 0 else
                 (1 if i == 0 or str(d).lower() in _BATCH_NAMES else _SYMBOLIC_DEFAULT)
                 for i, d in enumerate(spec.shape))


def make_feeds(specs: list[TensorSpec], seed: int = 0, sample: int = 0,
               ranges: dict[str, InputRange] | None = None) -> dict[str, np.ndarray]:
    """Seeded inputs; the same (seed, sample) always gives the same arrays."""
    import numpy as np

    ranges = ranges or {}
    rng = np.random.default_rng([seed, sample])
    feeds = {}
    for spec in specs:
        shape = concrete_shape(spec)
        dtype = np.dtype("float32" if spec.dtype == "bfloat16" else spec.dtype)
        limit = ranges.get(spec.name)
        if dtype == np.bool_:
            value = rng.integers(0, 2, shape).astype(bool)
        elif np.issubdtype(dtype, np.integer):
            # Integer inputs are usually ids or masks: stay in a small safe range unless told.
            low, high = (int(limit.low), int(limit.high)) if limit else (0, 2 if "mask" in spec.name.lower() else 10)
            value = rng.integers(low, high, shape).astype(dtype)
        else:
            low_f, high_f = (limit.low, limit.high) if limit else (-1.0, 1.0)
            value = rng.uniform(low_f, high_f, shape).astype(dtype)
        feeds[spec.name] = value
    return feeds


def load_npz(path: Path, specs: list[TensorSpec], option: str = "--inputs") -> list[dict[str, np.ndarray]]:
    """Samples from an .npz: arrays named like the inputs; a leading axis of length N over the
    spec's rank gives N samples."""
    import numpy as np

    import zipfile

    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise BadInput(f"Cannot read {option} '{path}': {first_line(exc)}.",
                       "Pass an .npz written by numpy.savez.") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise BadInput(f"{option} '{path}' is a single .npy array, not an .npz of named arrays.",
                       "Save the arrays under the input names: np.savez(f, **{name: array}).")
    names = [s.name for s in specs]
    keys = list(data.keys())
    for key in keys:  # object arrays need pickle (refused); strings and complex numbers are no inputs
        try:
            kind = data[key].dtype.kind
        except ValueError:
            raise BadInput(f"{option} array '{key}' in '{path}' holds Python objects, which would need unpickling.",
                           "Save plain numeric arrays (np.savez with float or int arrays).") from None
        if kind not in "biuf":
            what = {"c": "complex numbers", "U": "strings", "S": "bytes", "V": "raw records", "O": "objects",
                    "M": "dates", "m": "time deltas"}.get(kind, f"dtype {data[key].dtype}")
            raise BadInput(f"{option} array '{key}' in '{path}' holds {what}; model inputs are numbers.",
                           "Save real-valued numeric arrays (float, int or bool).")
    if set(names) <= set(keys):
        arrays = {n: data[n] for n in names}
    elif len(keys) == len(names) and all(k.startswith("arr_") for k in keys):
        arrays = dict(zip(names, (data[k] for k in keys)))
    else:
        raise BadInput(f"{option} '{path}' has arrays {', '.join(keys)}; the model's inputs are {', '.join(names)}.",
                       "Save the arrays under the input names: np.savez(f, **{name: array}).")
    samples: list[dict[str, np.ndarray]] = []
    for spec in specs:
        value = arrays[spec.name]
        rank = len(spec.shape) if spec.shape is not None else value.ndim
        stack = [value] if value.ndim == rank else list(value) if value.ndim == rank + 1 else None
        if stack is None:
            raise BadInput(f"{option} array '{spec.name}' has shape {value.shape}; the input has rank {rank}.",
                           f"Give shape {spec.cli_form().split(':')[1]} or N x that shape.")
        for i, item in enumerate(stack):
            if len(samples) <= i:
                samples.append({})
            samples[i][spec.name] = item.astype(spec.dtype if spec.dtype != "bfloat16" else "float32", copy=False)
    for index, sample in enumerate(samples):
        for spec in specs:
            shape = sample[spec.name].shape
            fixed = spec.shape or ()
            if len(shape) != len(fixed) or any(isinstance(d, int) and d != n for d, n in zip(fixed, shape)):
                raise BadInput(f"{option} array '{spec.name}' gives sample {index} the shape {shape}; the model's input "
                               f"'{spec.name}' is {spec.cli_form().split(':')[1]}.",
                               "Save arrays of the input's shape, or N samples stacked on a leading axis.")
    count = {len(s) for s in samples}
    if count != {len(specs)}:
        raise BadInput(f"{option} '{path}' gives different numbers of samples per input.",
                       "Give every input the same leading sample axis.")
    return samples


def load_test_data_sets(folder: Path, specs: list[TensorSpec]) -> list[dict[str, np.ndarray]]:
    """ONNX conformance-style inputs: `test_data_set_N/input_K.pb` (TensorProto) folders, given as
    one such folder or a folder holding several."""
    from .._lazy import require

    onnx = require("onnx", purpose="to read test_data_set .pb tensors")
    from onnx import numpy_helper

    sets = sorted(folder.glob("test_data_set_*")) or [folder]
    samples = []
    for data_set in sets:
        files = sorted(data_set.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[-1]))
        if not files:
            raise BadInput(f"'{data_set}' has no input_N.pb files.",
                           "Pass an .npz, or a folder of test_data_set_N/input_K.pb tensors.")
        tensors = []
        for file in files:
            proto = onnx.TensorProto()
            try:
                proto.ParseFromString(file.read_bytes())
                tensors.append((proto.name, numpy_helper.to_array(proto)))
            except Exception as exc:  # DecodeError, bad dims
                raise BadInput(f"'{file}' is not a TensorProto: {exc}.", "Write it with onnx.numpy_helper.from_array.") from None
        names = [s.name for s in specs]
        if all(name in names for name, _ in tensors):
            sample = {name: value for name, value in tensors}
        elif len(tensors) == len(specs):
            sample = {spec.name: value for spec, (_, value) in zip(specs, tensors)}
        else:
            raise BadInput(f"'{data_set}' has {len(tensors)} inputs; the model takes {len(specs)} ({', '.join(names)}).",
                           "Name the tensors after the inputs, or give one file per input in order.")
        samples.append(sample)
    return samples


def load_samples(path: Path, specs: list[TensorSpec]) -> list[dict[str, np.ndarray]]:
    """User samples: an .npz file, or test_data_set folders."""
    if path.is_dir():
        return load_test_data_sets(path, specs)
    return load_npz(path, specs)


def check_sample_budget(specs: list[TensorSpec], samples: int, limit_bytes: int = 2 << 30) -> None:
    """Refuse a --samples that would need more memory than is sensible, before doing anything."""
    import numpy as np

    per_sample = 0
    for spec in specs:
        if spec.shape is None:
            continue
        per_sample += math.prod(concrete_shape(spec)) * np.dtype(
            "float32" if spec.dtype == "bfloat16" else spec.dtype).itemsize
    if samples * per_sample * 2 > limit_bytes:  # inputs, plus outputs of about the same size
        raise BadInput(f"--samples {samples} would hold about {samples * per_sample * 2 / 2**30:.1f} GiB of tensors.",
                       f"Use at most {max(1, limit_bytes // max(per_sample * 2, 1))} samples.")
