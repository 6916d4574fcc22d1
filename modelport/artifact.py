"""A produced (or loaded) model: where it is, what it is, and how its I/O relates to the source's."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .spec import TensorSpec


@dataclass(frozen=True)
class TensorLink:
    """One tensor of an artifact and the source tensor it is.

    `perm` is the transpose applied to the source layout: artifact = source.transpose(perm).
    `scale`/`zero_point` are set where the artifact holds quantized integers for the source's float
    tensor (an int8 TFLite file as ONNX): artifact = round(source / scale) + zero_point.
    `scalar`: the source's rank-0 tensor is a one-element rank-1 tensor in the artifact
    (onnx2tf writes every scalar input and output so): artifact = source.reshape(1).
    """

    name: str          # name in the artifact's runtime
    source_name: str   # name in the source model
    perm: tuple[int, ...] | None = None
    scale: float | None = None
    zero_point: int = 0
    scalar: bool = False

    def to_json(self) -> dict:
        data: dict[str, Any] = {"name": self.name, "source": self.source_name,
                                "perm": list(self.perm) if self.perm else None}
        if self.scale is not None:
            data.update(scale=self.scale, zero_point=self.zero_point)
        if self.scalar:
            data["scalar"] = True
        return data


@dataclass(frozen=True)
class IOMapping:
    inputs: tuple[TensorLink, ...] = ()
    outputs: tuple[TensorLink, ...] = ()

    @staticmethod
    def identity(inputs: list[TensorSpec], outputs: list[TensorSpec]) -> IOMapping:
        return IOMapping(tuple(TensorLink(s.name, s.name) for s in inputs),
                         tuple(TensorLink(s.name, s.name) for s in outputs))

    def then(self, nxt: IOMapping) -> IOMapping:
        """Compose: self maps source->A, nxt maps A->B; the result maps source->B."""
        def chain(first: tuple[TensorLink, ...], second: tuple[TensorLink, ...]) -> tuple[TensorLink, ...]:
            by_name = {link.name: link for link in first}
            out = []
            for link in second:
                prev = by_name.get(link.source_name, TensorLink(link.source_name, link.source_name))
                if prev.perm and link.perm:
                    perm: tuple[int, ...] | None = tuple(prev.perm[i] for i in link.perm)
                else:
                    perm = link.perm or prev.perm
                quantized = link if link.scale is not None else prev  # elementwise: commutes with perm
                out.append(TensorLink(link.name, prev.source_name, perm, quantized.scale, quantized.zero_point,
                                      link.scalar or prev.scalar))
            return tuple(out)
        return IOMapping(chain(self.inputs, nxt.inputs), chain(self.outputs, nxt.outputs))

    def to_json(self) -> dict:
        return {"inputs": [t.to_json() for t in self.inputs], "outputs": [t.to_json() for t in self.outputs]}


@dataclass(frozen=True)
class Artifact:
    path: Path
    format: str                           # the content kind: "onnx", "tflite", "pt2", ...
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    io: IOMapping = field(default_factory=IOMapping)
    path_taken: tuple[str, ...] = ()      # formats along the conversion path, source first
    layout: str = "nchw"                  # "nchw" (as the source) or "nhwc"
    quantization: str = "none"
    extra: dict[str, Any] = field(default_factory=dict)  # edge-specific facts (exporter, opset, ...)
    companions: tuple[Path, ...] = ()     # files that belong beside `path` (e.g. ORT's operator config)

    def companion_names(self) -> list[tuple[Path, Path]]:
        """(file, its path relative to the artifact's folder) for each companion file."""
        pairs = []
        for companion in self.companions:
            try:
                pairs.append((companion, companion.relative_to(self.path.parent)))
            except ValueError:
                pairs.append((companion, Path(companion.name)))
        return pairs

    def copy_beside(self, target: Path) -> None:
        """Copy the companions beside `target` (a copy of this artifact's main file), as they were."""
        import shutil

        for companion, relative in self.companion_names():
            (target.parent / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(companion, target.parent / relative)

    def with_(self, **changes: Any) -> Artifact:
        return replace(self, **changes)


def sha256_of(path: Path) -> str:
    """Content hash of a file, or of a directory's files in a stable order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def human_size(size: float | None) -> str:
    """1536 -> '1.5 KB'; None -> '-'."""
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"


def sidecar_path(artifact_path: Path) -> Path:
    """Where an artifact's sidecar (`write_sidecar`) lives: beside it, `<name>.modelport.json`."""
    return artifact_path.with_name(artifact_path.name + ".modelport.json")


def write_sidecar(artifact: Artifact, source_name: str) -> dict:
    """What `validate` needs later to compare this artifact with its source without guessing."""
    return {
        "schema": "modelport.artifact/1",
        "source": source_name,
        "format": artifact.format,
        "path": list(artifact.path_taken),
        "layout": artifact.layout,
        "quantization": artifact.quantization,
        "io": artifact.io.to_json(),
        "inputs": [s.to_json() for s in artifact.inputs],
        "outputs": [s.to_json() for s in artifact.outputs],
        # intermediate tensors: which of this artifact's holds which of the converter's input's (debug)
        "tensors": artifact.extra.get("tensors") or None,
    }


def dump_json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"
