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


# -- memory budget ---------------------------------------------------------------------------------
# Every run of a model happens in the model worker (worker.py) under an address-space limit
# (RLIMIT_AS), which the runtimes' own child processes inherit: a model that asks for more fails to
# allocate, which is reported as exit 2; the command's own process holds no model and has no limit,
# so even a runtime that aborts on a failed allocation ends only the worker, never the whole job.

DEFAULT_FRACTION = 0.8
_ALLOCATION_FAILURES = ("bad_alloc", "Failed to allocate", "Cannot allocate memory", "out of memory",
                        "MemoryError", "ResourceExhausted", "OOM when allocating", "failed to allocate",
                        "pthread_create() failed")  # (thread stacks count against the budget too)


def machine_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def default_memory_budget() -> int | None:
    total = machine_memory()
    return int(total * DEFAULT_FRACTION) if total else None


def gib(size: int) -> str:
    return f"{size / 2**30:.1f} GB"


class memory_budget:  # noqa: N801 - used as a context manager, like open()
    """Limit this process's address space to `limit` bytes for the block (soft limit only; the
    previous one is put back after, so a library call leaves the process as it was)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit if limit is not None else default_memory_budget()
        self._saved: tuple[int, int] | None = None

    def __enter__(self) -> memory_budget:
        import resource

        if self.limit is None:
            return self
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        wanted = self.limit if hard == resource.RLIM_INFINITY else min(self.limit, hard)
        if soft == resource.RLIM_INFINITY or wanted < soft:
            self._saved = (soft, hard)
            resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
        return self

    def __exit__(self, *exc: object) -> None:
        import resource

        if self._saved is not None:
            resource.setrlimit(resource.RLIMIT_AS, self._saved)
            self._saved = None


def current_budget() -> int | None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def is_allocation_failure(text: str) -> bool:
    return any(marker in text for marker in _ALLOCATION_FAILURES)


def over_budget(budget: int | None = None) -> BadInput:
    """The refusal for a model that went past the budget (this process's, unless given)."""
    budget = budget if budget is not None else current_budget()
    size = f"more than {gib(budget)}" if budget else "more memory than this machine has"
    return BadInput(f"The model needs {size} to run (the memory budget).",
                    "If the model is trusted and the machine has the memory, raise it with --max-memory, e.g. "
                    "--max-memory 32G.")
