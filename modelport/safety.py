"""Checks made before anything opens a model or writes an output: what a hostile or mistaken
path could otherwise do (hang on a FIFO, read outside the model through a symlink, overwrite the
source)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import BadInput

_MAX_ENTRIES = 100_000  # a model folder with more files than this is not a model


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def check_model_path(path: Path) -> None:
    """A model is a regular file, or a folder of regular files and folders whose symlinks stay
    inside it. Anything else is refused before it is opened (opening a FIFO blocks forever)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise BadInput(f"Cannot read '{path}': {exc.strerror}.", "Check the path and its permissions.") from None
    if stat.S_ISREG(mode):
        return
    if not stat.S_ISDIR(mode):
        raise BadInput(f"'{path}' is {_kind(mode)}, not a model file.", "Pass a regular model file or folder.")
    root = path.resolve()
    count = 0
    for folder, dirs, files in os.walk(path, followlinks=False):
        for name in [*dirs, *files]:
            count += 1
            if count > _MAX_ENTRIES:
                raise BadInput(f"'{path}' holds more than {_MAX_ENTRIES} files; it is not a model folder.",
                               "Pass the model's own folder.")
            entry = Path(folder) / name
            if entry.is_symlink() and not _inside(entry.resolve(), root):
                raise BadInput(f"'{entry}' is a symlink leading outside the model folder (to "
                               f"'{entry.resolve()}').", "Copy the file into the model folder instead of linking it.")
            try:
                entry_mode = entry.stat().st_mode
            except OSError:
                raise BadInput(f"'{entry}' cannot be read (a broken link?).", "Repair or remove it.") from None
            if not (stat.S_ISREG(entry_mode) or stat.S_ISDIR(entry_mode)):
                raise BadInput(f"'{entry}' in the model folder is {_kind(entry_mode)}.",
                               "A model folder holds regular files only.")


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_output_dir(output: Path, source: Path | None) -> None:
    """Refuse, before any work, an output folder that is an existing file, is the source, holds
    the source, or lies inside the source (the source is never written to)."""
    if source is not None and source.exists():
        out, src = output.resolve(), source.resolve()
        if out == src:
            raise BadInput(f"The output folder '{output}' is the source itself.", "Pass another folder with -o.")
        if _inside(src, out):
            raise BadInput(f"The output folder '{output}' holds the source '{source}'; converted files could "
                           "overwrite it.", "Pass a folder that does not contain the source, with -o.")
        if src.is_dir() and _inside(out, src):
            raise BadInput(f"The output folder '{output}' lies inside the source model folder '{source}'.",
                           "Pass a folder outside the model, with -o.")
    if output.exists() and not output.is_dir():
        raise BadInput(f"The output '{output}' is an existing file; modelport writes a folder there.",
                       "Pass a folder with -o (new or existing).")
