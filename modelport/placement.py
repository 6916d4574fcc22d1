"""Putting files in place: a destination never holds half a file or folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def default_output_dir(source: str) -> Path:
    """`modelport-out/<name>`: a file's name without its extension, a folder's name, an entry
    point's function name."""
    path = Path(source)
    if ":" in source and not path.exists():
        name = source.rpartition(":")[2]
    else:
        name = path.stem if path.is_file() or path.suffix in (".py",) else path.name
    return Path("modelport-out") / (name or "model")


def place(artifact_path: Path, final: Path) -> None:
    """Move a finished artifact into place: copy beside it under a hidden name, then rename."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.partial-{os.getpid()}"
    try:
        if artifact_path.is_dir():
            shutil.copytree(artifact_path, staging)
        else:
            shutil.copyfile(artifact_path, staging)
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging) if staging.is_dir() else staging.unlink()


def write_atomic(text: str, final: Path) -> None:
    """Write text to `final` through a temporary file in the same folder, then rename."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
