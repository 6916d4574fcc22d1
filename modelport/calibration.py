"""Calibration data for int8: the user's own samples, split into the part that calibrates and a
held-out part that judges the quantized model. Random data only when asked for by name: seeded
noise calibrates activation ranges that real inputs never have, and judging an int8 model on the
same noise says nothing about how it does on real inputs.

Accepted: an `.npz` of named arrays (a leading sample axis gives several samples), a folder of
`.npy` files (one sample, or a stack, per file; single-input models), a `test_data_set_N` folder
(ONNX's `input_K.pb` tensors), a folder of images with `--preprocess`, or the word `random`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BackendMissing, BadInput, first_line
from .spec import InputRange, TensorSpec
from .validators.data import load_npz, load_test_data_sets, make_feeds

if TYPE_CHECKING:
    import numpy as np

RANDOM = "random"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".gif")
_MAX_SAMPLES = 10_000  # a calibration set past this is a mistake (and would not fit in memory)


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a model input: `resize=224x224,scale=1/255,mean=0.485/0.456/0.406,
    std=0.229/0.224/0.225,layout=nchw` (every key optional; the size defaults to the input's)."""

    size: tuple[int, int] | None = None        # (height, width)
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str | None = None                  # nchw | nhwc; None: read from the input's shape

    @staticmethod
    def parse(text: str) -> Preprocess:
        values: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            key = key.strip().lower()
            try:
                if not sep:
                    raise ValueError("expected key=value")
                if key == "resize":
                    height, _, width = value.lower().partition("x")
                    values["size"] = (int(height), int(width or height))
                elif key == "scale":
                    numerator, _, denominator = value.partition("/")
                    values["scale"] = float(numerator) / float(denominator or 1)
                elif key in ("mean", "std"):
                    values[key] = tuple(float(v) for v in value.split("/"))
                elif key == "layout":
                    if value.lower() not in ("nchw", "nhwc"):
                        raise ValueError("layout is nchw or nhwc")
                    values["layout"] = value.lower()
                else:
                    raise ValueError(f"unknown key '{key}'")
            except (ValueError, ZeroDivisionError) as exc:
                raise BadInput(f"--preprocess '{text}': {part!r}: {exc}.",
                               "Write e.g. --preprocess resize=224x224,scale=1/255,mean=0.485/0.456/0.406,"
                               "std=0.229/0.224/0.225,layout=nchw") from None
        if any(s == 0 for s in values.get("std", (1.0,))):
            raise BadInput(f"--preprocess '{text}': std must not be 0.",
                           "Give the per-channel std, e.g. --preprocess resize=224x224,std=0.229/0.224/0.225.")
        return Preprocess(**values)


@dataclass
class CalibrationSet:
    samples: list[dict[str, np.ndarray]]                               # calibrate on these
    held_out: list[dict[str, np.ndarray]] = field(default_factory=list)  # judge the quantized model on these
    origin: str = "data"                                               # "data" or "random"
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "calibration_samples": len(self.samples),
                "held_out_samples": len(self.held_out), "description": self.description}


def load_calibration(source: str | Path, specs: list[TensorSpec], preprocess: Preprocess | None = None,
                     seed: int = 0, random_count: int = 32,
                     ranges: dict[str, InputRange] | None = None) -> CalibrationSet:
    """The calibration set SOURCE names, split into calibration and held-out samples."""
    if str(source) == RANDOM:
        samples = [make_feeds(specs, seed=seed + 1000, sample=i, ranges=ranges) for i in range(random_count)]
        noise = [make_feeds(specs, seed=seed + 2000, sample=i, ranges=ranges) for i in range(3)]
        return CalibrationSet(samples, noise, RANDOM, f"{random_count} seeded random samples (asked for by name)")
    path = Path(source)
    if not path.exists():
        raise BadInput(f"--calibration-data '{path}' does not exist.",
                       "Pass an .npz, a folder of .npy files or images, a test_data_set folder, or 'random'.")
    samples, what = _read(path, specs, preprocess)
    if not samples:
        raise BadInput(f"--calibration-data '{path}' holds no samples.", "Add samples (see the README's int8 section).")
    if len(samples) > _MAX_SAMPLES:
        raise BadInput(f"--calibration-data '{path}' holds {len(samples)} samples; at most {_MAX_SAMPLES} are used.",
                       "A few hundred representative samples calibrate well; pass a subset.")
    # Hold out a fifth (at least one when there are two or more) to judge the quantized model on
    # inputs that did not set its ranges.
    held = 0 if len(samples) < 2 else max(1, len(samples) // 5)
    calibrate, held_out = samples[: len(samples) - held], samples[len(samples) - held:]
    split = f"{len(calibrate)} calibrate, {len(held_out)} held out" if held_out else "none left to hold out"
    return CalibrationSet(calibrate, held_out, "data", f"{len(samples)} {what} from {path.name} ({split})")


def _read(path: Path, specs: list[TensorSpec], preprocess: Preprocess | None) -> tuple[list[dict], str]:
    if path.is_file():
        if path.suffix.lower() == ".npy":
            return _npy_files([path], specs), "samples"
        return load_npz(path, specs, option="--calibration-data"), "samples"
    if list(path.glob("test_data_set_*")) or list(path.glob("input_*.pb")):
        return load_test_data_sets(path, specs), "test_data_set samples"
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    npy = [p for p in files if p.suffix.lower() == ".npy"]
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if npy and not images:
        return _npy_files(npy, specs), "samples"
    if images and not npy:
        if preprocess is None:
            raise BadInput(f"--calibration-data '{path}' is a folder of images; how they become inputs is not given.",
                           "Add --preprocess, e.g. --preprocess resize=224x224,scale=1/255,mean=0.485/0.456/0.406,"
                           "std=0.229/0.224/0.225,layout=nchw")
        return [_image_sample(p, specs, preprocess) for p in images], "images"
    raise BadInput(f"--calibration-data '{path}' holds no .npy files, images or test_data_set folders"
                   + (" (it mixes .npy files and images)" if npy and images else "") + ".",
                   "Pass an .npz, a folder of .npy files or images, a test_data_set folder, or 'random'.")


def _npy_files(files: list[Path], specs: list[TensorSpec]) -> list[dict[str, np.ndarray]]:
    import numpy as np

    if len(specs) != 1:
        raise BadInput(f"A folder of .npy files feeds single-input models; this one has {len(specs)} inputs "
                       f"({', '.join(s.name for s in specs)}).", "Pass an .npz with one array per input name.")
    spec = specs[0]
    samples = []
    for file in files:
        try:
            value = np.load(file, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise BadInput(f"Cannot read '{file}': {first_line(exc)}.", "Save it with numpy.save.") from None
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            raise BadInput(f"'{file}' does not hold a real-valued numeric array.", "Save float or int arrays.")
        rank = len(spec.shape) if spec.shape is not None else value.ndim
        if value.ndim not in (rank, rank + 1):
            raise BadInput(f"'{file}' has shape {value.shape}; the input '{spec.name}' has rank {rank}.",
                           f"Save arrays of shape {spec.cli_form().split(':')[1]} or N x that shape.")
        stack = [value] if value.ndim == rank else list(value)
        samples += [{spec.name: item.astype(spec.dtype if spec.dtype != "bfloat16" else "float32")} for item in stack]
    return samples


def _image_sample(file: Path, specs: list[TensorSpec], preprocess: Preprocess) -> dict[str, np.ndarray]:
    import numpy as np

    try:
        from PIL import Image
    except ImportError:
        raise BackendMissing("Reading calibration images needs Pillow.",
                             "Install it with: pip install 'modelport[images]'") from None
    if len(specs) != 1 or specs[0].shape is None or len(specs[0].shape) != 4:
        raise BadInput("Images calibrate models with one 4-D image input; this model's inputs are "
                       f"{', '.join(s.cli_form() for s in specs)}.", "Pass an .npz of input arrays instead.")
    spec = specs[0]
    dims = spec.shape
    assert dims is not None
    layout = preprocess.layout or ("nhwc" if dims[-1] in (1, 3, 4) and dims[1] not in (1, 3, 4) else "nchw")
    channels = dims[1] if layout == "nchw" else dims[3]
    height, width = (dims[2], dims[3]) if layout == "nchw" else (dims[1], dims[2])
    if preprocess.size is not None:
        height, width = preprocess.size
    if not all(isinstance(d, int) and d > 0 for d in (height, width, channels)):
        raise BadInput(f"The input '{spec.name}' ({spec.cli_form()}) has no fixed image size or channel count.",
                       "Give the size: --preprocess resize=224x224 (and --input for the channels).")
    for key in ("mean", "std"):
        if len(getattr(preprocess, key)) not in (1, channels):
            raise BadInput(f"--preprocess {key} has {len(getattr(preprocess, key))} values; the input has {channels} "
                           "channels.", f"Give one value, or one per channel ({channels}).")
    try:
        with Image.open(file) as opened:
            resized = opened.convert("L" if channels == 1 else "RGB").resize((int(width), int(height)),
                                                                             Image.Resampling.BILINEAR)
            pixels = np.asarray(resized, dtype=np.float32)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadInput(f"Cannot read the image '{file}': {first_line(exc)}.", "Remove it or replace it.") from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    value = (pixels * preprocess.scale - np.asarray(preprocess.mean, np.float32)) / np.asarray(preprocess.std, np.float32)
    if layout == "nchw":
        value = value.transpose(2, 0, 1)
    return {spec.name: value[None].astype(spec.dtype if spec.dtype != "bfloat16" else "float32")}
