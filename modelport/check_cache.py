"""`check`'s result cache and run journal: a model already checked with the same source, targets,
options and stack is not converted again.

A key is the sha256 of (the source's content, the data files its options name, its targets and
options, and the stack: modelport's own code, Python, every converter's and runtime's version,
the toolchains, the CPU's features int8 depends on). An entry is the model's result as a record
(`records.py`, never a pickle) plus its artifacts, each with its sha256; an entry whose files do
not hash to what it recorded, or that holds a link or a path leaving it, is a miss. Entries are
written to a staging folder and renamed into place, so two runs sharing a cache never see half
of one.

The run journal is the same store inside the output folder, without copies: its files are the
artifacts in place, checked the same way before `--resume` trusts them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import stat
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from .artifact import sha256_of, sidecar_path
from .options import ConvertOptions
from .placement import place
from .records import NotRecordable, from_record, to_record
from .results import ConvertResult, Status

SCHEMA = "modelport.cache/1"
# Options that change neither a conversion nor its verdict, only how the run is watched.
_NOT_IN_KEY = {"output_dir", "verbose", "max_memory", "timeout"}
_PLACEHOLDER = "@out"
# A folder entry point is keyed by the files around it; past these bounds it is not cached.
_MAX_FILES, _MAX_BYTES = 5000, 4 << 30


def default_cache_dir() -> Path:
    """$MODELPORT_CHECK_CACHE, else check-cache/ beside the toolchains ($MODELPORT_HOME)."""
    if os.environ.get("MODELPORT_CHECK_CACHE"):
        return Path(os.environ["MODELPORT_CHECK_CACHE"]).expanduser()
    from .toolchains import home

    return home() / "check-cache"


class Uncacheable(Exception):
    """Why a model's result cannot be keyed (it is then always converted)."""


def _regular_digest(path: Path, digest: Any, base: Path, skip: frozenset[Path] = frozenset()) -> int:
    """Feed `path` (a file, or a folder's files in order) into `digest` without following links or
    opening anything but regular files (a FIFO would block); returns the bytes read."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        digest.update(f"link {path.relative_to(base)} -> {os.readlink(path)}\n".encode())
        return 0
    if stat.S_ISREG(info.st_mode):
        digest.update(f"file {path.relative_to(base)} {info.st_size}\n".encode())
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return info.st_size
    if not stat.S_ISDIR(info.st_mode):
        raise Uncacheable(f"{path} is not a regular file")
    total = 0
    children = sorted(path.iterdir())
    if len(children) > _MAX_FILES:
        raise Uncacheable(f"{path} holds more than {_MAX_FILES} files")
    for child in children:
        if child in skip or child.name.startswith(".") or child.name in ("__pycache__", "node_modules"):
            continue
        total += _regular_digest(child, digest, base, skip)
        if total > _MAX_BYTES:
            raise Uncacheable(f"{path} holds more than {_MAX_BYTES >> 30} GiB")
    return total


def source_digest(source: str, skip: frozenset[Path] = frozenset()) -> str:
    """What a result depends on in the source: its bytes (a file or a folder), or for a `file.py:fn`
    entry point every file in the entry's folder (the code it imports and the weights it reads
    usually live there; `skip` leaves out the run's own output and cache folders)."""
    digest = hashlib.sha256()
    path = Path(source)
    if not os.path.lexists(path):
        file, sep, _ = source.rpartition(":")
        if not (sep and file.endswith(".py") and Path(file).is_file()):
            raise Uncacheable("an importable module's code cannot be hashed without importing it")
        digest.update(f"entry {Path(file).name} {source.rpartition(':')[2]}\n".encode())
        folder = Path(file).resolve().parent
        _regular_digest(folder, digest, folder, frozenset(p.resolve() for p in skip))
    else:
        _regular_digest(path, digest, path.parent)
    return digest.hexdigest()


_stack: str | None = None


def stack_fingerprint() -> str:
    """modelport's code, Python, the recorded packages' versions, the toolchains and the CPU."""
    global _stack
    if _stack is None:
        from .toolchains import declared, state
        from .validators.report import _version, cpu_features, environment

        digest = hashlib.sha256()
        package = Path(__file__).resolve().parent
        for file in sorted(package.rglob("*")):
            if file.suffix in (".py", ".js", ".json", ".toml", ".lock") and "node_modules" not in file.parts:
                digest.update(str(file.relative_to(package)).encode())
                digest.update(file.read_bytes())
        toolchains = {name: {**state(t).to_json(), "lock": sha256_of(t.folder / "requirements.lock")
                             if (t.folder / "requirements.lock").exists() else None}
                      for name, t in declared().items()}
        document = {"modelport": _version(), "code": digest.hexdigest(), "python": platform.python_version(),
                    "packages": environment(1)["packages"], "toolchains": toolchains, "cpu": cpu_features(),
                    "node": shutil.which("node")}
        _stack = hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()
    return _stack


def cache_key(source: str, options: ConvertOptions, skip: frozenset[Path] = frozenset()) -> str:
    """The key of one model's check; Uncacheable when its source cannot be hashed."""
    material: dict[str, Any] = {"source": source_digest(source, skip), "stack": stack_fingerprint()}
    for field in fields(options):
        if field.name in _NOT_IN_KEY:
            continue
        value = getattr(options, field.name)
        if isinstance(value, Path):  # data files: by content, wherever they are
            value = {"digest": source_digest(str(value))}
        try:
            material[field.name] = to_record(value)
        except NotRecordable as exc:
            raise Uncacheable(str(exc)) from None
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def cacheable(result: ConvertResult) -> bool:
    """Results that depend only on what the key covers: not a run cut short (a timeout, a dead
    process, the memory budget: exit 2), not an unexpected error of ours."""
    for item in result.targets:
        if item.verdict.status is Status.ERROR and item.verdict.exit_code != 3:
            return False
        if item.verdict.status is Status.ERROR and (item.error or "").startswith(("Unexpected", "The process running")):
            return False
    return True


def _files_of(result: ConvertResult, out_dir: Path) -> list[Path]:
    """The files (relative to the model's output folder) each target left there."""
    found: list[Path] = []
    for item in result.targets:
        if item.path is None:
            continue
        paths = [item.path, sidecar_path(item.path)]
        if item.artifact is not None:
            paths += list(item.artifact.companions)
        for path in paths:
            try:
                relative = Path(path).resolve().relative_to(out_dir.resolve())
            except ValueError:
                continue
            if relative not in found and os.path.lexists(out_dir / relative):
                found.append(relative)
    return found


def _rebase(data: Any, old: str, new: str) -> Any:
    """Every recorded path under `old` as the same path under `new`."""
    if isinstance(data, list):
        return [_rebase(v, old, new) for v in data]
    if isinstance(data, dict):
        if set(data) == {"$path"}:
            text = data["$path"]
            if text == old or text.startswith(old + os.sep):
                return {"$path": new + text[len(old):]}
            return data
        return {k: _rebase(v, old, new) for k, v in data.items()}
    return data


def _safe_relative(text: str) -> Path:
    path = Path(text)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"unsafe path {text!r} in a cache entry")
    return path


def _has_link(path: Path) -> bool:
    if path.is_symlink():
        return True
    return path.is_dir() and any(p.is_symlink() for p in path.rglob("*"))


class ResultStore:
    """Results by key under `root`; with `copies`, the artifacts too (the cache); without, the
    artifacts are expected in place in the output folder (the run journal)."""

    def __init__(self, root: Path, copies: bool = True) -> None:
        self.root = root
        self.copies = copies

    def _entry(self, key: str) -> Path:
        if not (len(key) == 64 and all(c in "0123456789abcdef" for c in key)):
            raise ValueError("not a cache key")
        return self.root / key[:2] / key

    def get(self, key: str, out_dir: Path) -> ConvertResult | None:
        """The stored result with its artifacts placed in `out_dir`, or None (absent, altered, or
        not readable as an entry: each is a miss, never an error)."""
        entry = self._entry(key)
        try:
            document = json.loads((entry / "result.json").read_text())
            if document.get("schema") != SCHEMA or document.get("key") != key:
                return None
            files = {_safe_relative(rel): digest for rel, digest in document["files"].items()}
            home = entry / "files" if self.copies else out_dir
            for relative, digest in files.items():
                path = home / relative
                if _has_link(path) or sha256_of(path) != digest:
                    return None
            if self.copies:
                for relative in files:
                    place(home / relative, out_dir / relative)
            record = _rebase(document["result"], _PLACEHOLDER, str(out_dir))
            result = from_record(record)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if not isinstance(result, ConvertResult):
            return None
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(document.get("created", 0)))
        for item in result.targets:
            item.notes.append(f"{'cached' if self.copies else 'resumed'}: the result of {when} (key {key[:12]})")
        return result

    def put(self, key: str, result: ConvertResult, out_dir: Path) -> bool:
        """Store `result` and (for the cache) copies of its files; False when it has no record form."""
        try:
            record = _rebase(to_record(result), str(out_dir), _PLACEHOLDER)
        except NotRecordable:
            return False
        files = _files_of(result, out_dir)
        entry = self._entry(key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.", dir=entry.parent))
        try:
            digests = {}
            for relative in files:
                digests[str(relative)] = sha256_of(out_dir / relative)
                if self.copies:
                    destination = staging / "files" / relative
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    if (out_dir / relative).is_dir():
                        shutil.copytree(out_dir / relative, destination, symlinks=True)
                    else:
                        shutil.copyfile(out_dir / relative, destination)
            document = {"schema": SCHEMA, "key": key, "created": time.time(), "files": digests, "result": record}
            (staging / "result.json").write_text(json.dumps(document, sort_keys=True))
            if entry.exists():  # (another run stored the same key: the newer one wins)
                shutil.rmtree(entry, ignore_errors=True)
            try:
                os.replace(staging, entry)
            except OSError:
                return False  # a concurrent run placed it between the two calls: theirs is as good
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return True

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def exists(self) -> bool:
        return self.root.is_dir()

