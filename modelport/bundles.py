"""Bundles as inputs: `validate`, `bench` and `inspect` accept a bundle made by `package`, a folder
or an archive. An archive is unpacked only after every entry is checked: regular files and folders
only, every path relative and landing inside the destination, bounded count and size."""

from __future__ import annotations

import contextlib
import gzip
import json
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import BadInput

MANIFEST = "modelport.json"
_MAX_ARCHIVE_ENTRIES = 10_000
_MAX_ARCHIVE_BYTES = 64 * 2**30


def archive_kind(path: Path) -> str | None:
    name = path.name.lower()
    return "zip" if name.endswith(".zip") else "tar.gz" if name.endswith((".tar.gz", ".tgz")) else None


def is_bundle(path: Path) -> bool:
    """A bundle folder (modelport.json and run.py), or a .zip / .tar.gz file (a .zip only when it
    holds modelport.json: .keras and .pt2 files are zips too)."""
    if path.is_dir():
        return (path / MANIFEST).is_file() and ((path / "run.py").is_file() or (path / "run.js").is_file())
    kind = archive_kind(path) if path.is_file() else None
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as opened:
                return MANIFEST in opened.namelist()
        except (zipfile.BadZipFile, OSError):
            return False
    return kind == "tar.gz"


def unpack(archive: Path, destination: Path) -> Path:
    """Extract a bundle archive into `destination` after checking every entry: regular files and
    folders only, every path relative and landing inside `destination`, bounded count and size."""
    kind = archive_kind(archive)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as opened:
                entries = [(i.filename, i.file_size, stat.S_ISLNK(i.external_attr >> 16)) for i in opened.infolist()]
                _check_entries(archive, entries, destination)
                opened.extractall(destination)
        else:
            with tarfile.open(archive, "r:gz") as opened:
                members = opened.getmembers()
                bad = next((m for m in members if not (m.isfile() or m.isdir())), None)
                if bad is not None:
                    raise BadInput(f"'{archive}' holds '{bad.name}', which is a link or a device, not a file.",
                                   "A bundle holds regular files only; package the model again.")
                _check_entries(archive, [(m.name, m.size, False) for m in members], destination)
                opened.extractall(destination, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise BadInput(f"'{archive}' is not a readable bundle archive: {exc}.", "Package the model again.") from None
    if not (destination / MANIFEST).is_file():
        raise BadInput(f"'{archive}' holds no {MANIFEST}; it is not a modelport bundle.", "Pass a bundle from `package`.")
    return destination


def _check_entries(archive: Path, entries: list[tuple[str, int, bool]], destination: Path) -> None:
    if len(entries) > _MAX_ARCHIVE_ENTRIES:
        raise BadInput(f"'{archive}' holds {len(entries)} entries; a bundle holds a handful.", "Package the model again.")
    root = destination.resolve()
    total = 0
    for name, size, link in entries:
        where = (root / name).resolve()
        if link or Path(name).is_absolute() or ".." in Path(name).parts or not (where == root or root in where.parents):
            raise BadInput(f"'{archive}' holds the entry '{name}', which would land outside the folder it is "
                           "unpacked to" + (" (a link)" if link else "") + ".",
                           "Do not use this archive; package the model again.")
        total += size
    if total > _MAX_ARCHIVE_BYTES:
        raise BadInput(f"'{archive}' would unpack to more than {_MAX_ARCHIVE_BYTES // 2**30} GB.", "Package again.")


def bundle_model(path: Path, scratch: Path) -> tuple[Path, dict[str, Any]]:
    """The model file inside a bundle (folder, or archive unpacked into `scratch`) and its manifest."""
    folder = unpack(path, scratch / "bundle") if path.is_file() else path
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        model = folder / manifest["model"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"'{path}' has no readable {MANIFEST}: {exc}.", "Pass a bundle from `package`.") from None
    if Path(manifest["model"]).name != manifest["model"] or not model.exists():
        raise BadInput(f"'{path}': its manifest names the model '{manifest['model']}', which is not a file in it.",
                       "Package the model again.")
    return model, manifest


@contextlib.contextmanager
def opened_bundle(model: str) -> Iterator[str]:
    """The model path a command should open: MODEL itself, or the model inside MODEL when it is a
    bundle (an archive is unpacked for the block, then removed)."""
    path = Path(model)
    if not is_bundle(path):
        yield model
        return
    with tempfile.TemporaryDirectory(prefix="modelport-bundle-") as scratch:
        inner, _ = bundle_model(path, Path(scratch))
        yield str(inner)


def bundle_manifest(path: Path) -> dict[str, Any]:
    """A bundle's manifest (its archive unpacked into a scratch folder just to read it)."""
    with tempfile.TemporaryDirectory(prefix="modelport-bundle-") as scratch:
        return bundle_model(path, Path(scratch))[1]
