"""Putting files in place: a destination never holds half a file or folder, nor a mix of two.

Two modelport processes may write the same output folder at once (the default `modelport-out/<name>`
of the same model, run twice). Each stages its copy under a name of its own, then renames it over
the destination: the last writer wins with a complete artifact. A folder (a SavedModel, a TF.js
model) is swapped in with one atomic exchange where the OS has one (Linux renameat2), so a reader
never finds it missing; elsewhere the old one is renamed aside first. `output_lock` serializes the
placing of one target's files (companions, model, sidecar) between processes, so they always
come from the same run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


OUTPUT_ROOT = Path("modelport-out")  # where outputs go when no -o is given


def default_output_dir(source: str) -> Path:
    """`modelport-out/<name>`: a file's name without its extension, a folder's name, an entry
    point's function name."""
    path = Path(source)
    if ":" in source and not path.exists():
        name = source.rpartition(":")[2]
    else:
        name = path.stem if path.is_file() or path.suffix in (".py",) else path.name
    return OUTPUT_ROOT / (name or "model")


@contextlib.contextmanager
def output_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (created if missing) against other processes placing
    files there: an flock on the folder itself, so no lock file is left behind."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # (Windows: no flock; placement is still atomic per file)
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # (a file system without locks, e.g. some NFS mounts: each file is still atomic)
            pass
        yield
    finally:
        os.close(fd)  # (closing releases the lock)


def place(artifact_path: Path, final: Path) -> None:
    """Move a finished artifact into place: copy beside it under a hidden name of this call's
    own (never a fixed or pid-based one: pids repeat across containers sharing a folder), then
    rename over `final`."""
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{final.name}.partial-"
    if artifact_path.is_dir():
        staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=prefix))
    else:
        fd, name = tempfile.mkstemp(dir=final.parent, prefix=prefix)
        os.close(fd)
        staging = Path(name)
    try:
        if artifact_path.is_dir():
            shutil.copytree(artifact_path, staging, dirs_exist_ok=True)
            os.chmod(staging, 0o755)  # (mkdtemp makes it 0700)
        else:
            shutil.copyfile(artifact_path, staging)
            os.chmod(staging, 0o644)  # (mkstemp makes it 0600)
        _swap_in(staging, final)
    finally:
        _remove(staging)


def _swap_in(staging: Path, final: Path) -> None:
    """Rename `staging` to `final`. A file replaces a file atomically (rename(2)); a folder is
    exchanged with the folder there (then `staging` holds the old one, removed by the caller)."""
    for _ in range(100):
        try:
            os.replace(staging, final)  # atomic over a file, an empty folder or nothing
            return
        except OSError:  # a folder with files (or a file where a folder goes, or the reverse)
            pass
        if _exchange(staging, final):
            return
        aside = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old-"))
        try:
            os.replace(final, aside / "old")  # no exchange here: move the old one out of the way
        except FileNotFoundError:  # another process moved it already
            pass
        finally:
            _remove(aside)
    raise OSError(f"could not put {final} in place: it keeps being replaced")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import errno

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # (glibc < 2.28)
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT):
        return False  # (a file system without it, or `b` vanished: the caller renames instead)
    raise OSError(code, os.strerror(code), str(b))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


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
