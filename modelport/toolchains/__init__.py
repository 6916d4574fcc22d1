"""Toolchains: converters and runtimes that cannot share modelport's own environment (another
Python, numpy 2, another onnx), each in its own virtual environment built from a committed lock.

A toolchain is a folder here: `toolchain.toml` (name, description, Python version, whether
`make install` builds it) and `requirements.lock` (exact versions with sha256 hashes), plus the
scripts that run inside it. `modelport toolchain install NAME` builds it under
`$MODELPORT_HOME/toolchains/NAME` (default: the platform's cache folder), with uv where present,
else venv + pip, from the package registries; conversions never download anything.

An edge or runner in a toolchain runs one of its scripts as a subprocess through one protocol
(`run`): a request JSON in, a result JSON out, files in folders both sides name, the log captured
and shown only with --verbose. See docs/toolchains.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BackendMissing, BadInput, ConversionFailed

HERE = Path(__file__).resolve().parent
MARKER = "modelport-toolchain.json"  # written last: a folder without it is not installed


@dataclass(frozen=True)
class Toolchain:
    name: str
    description: str
    python: str                    # "3.12": the interpreter version the lock was made for
    folder: Path                   # the declaration: toolchain.toml, requirements.lock, scripts
    default: bool = True           # built by `make install` where its Python exists
    reports: tuple[str, ...] = ()  # distributions whose versions doctor and reports show

    @property
    def lock(self) -> Path:
        return self.folder / "requirements.lock"

    @property
    def env(self) -> Path:
        return home() / "toolchains" / self.name

    @property
    def interpreter(self) -> Path:
        return self.env / "bin" / "python"

    def script(self, name: str) -> Path:
        return self.folder / name

    def pinned(self) -> dict[str, str]:
        """name -> version, from the lock."""
        found = {}
        for line in self.lock.read_text().splitlines():
            requirement = line.split("#")[0].split(" --hash")[0].strip().rstrip("\\").strip()
            if "==" in requirement:
                name, _, version = requirement.partition("==")
                found[name.strip().lower()] = version.strip()
        return found


@dataclass
class State:
    name: str
    installed: bool
    python: str | None               # the interpreter that builds it (None: not found on this machine)
    env: str
    versions: dict[str, str] = field(default_factory=dict)
    size_bytes: int | None = None
    install_seconds: float | None = None
    problem: str | None = None       # why it is not usable, and what to do

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


def home() -> Path:
    """Where toolchains live: $MODELPORT_HOME, else the platform's cache folder."""
    if os.environ.get("MODELPORT_HOME"):
        return Path(os.environ["MODELPORT_HOME"]).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "modelport"
    if os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "modelport"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelport"


def declared() -> dict[str, Toolchain]:
    found = {}
    for path in sorted(HERE.glob("*/toolchain.toml")):
        data = tomllib.loads(path.read_text())
        found[data["name"]] = Toolchain(data["name"], data["description"], str(data["python"]), path.parent,
                                        bool(data.get("default", True)), tuple(data.get("reports", ())))
    return found


def get(name: str) -> Toolchain:
    toolchains = declared()
    if name not in toolchains:
        raise BadInput(f"No toolchain is called '{name}'.", f"Toolchains: {', '.join(toolchains) or 'none'}.")
    return toolchains[name]


@functools.lru_cache(maxsize=None)
def find_python(version: str) -> Path | None:
    """An interpreter of `version` ("3.12") that really runs: pythonX.Y on PATH (a pyenv shim for a
    version that is not selected fails, so each is tried), else pyenv's own install."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    installed = sorted((root / "versions").glob(f"{version}.*/bin/python{version}"),
                       key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parts[-3].split(".")])
    on_path = shutil.which(f"python{version}")
    for candidate in [*([Path(on_path)] if on_path else []), *reversed(installed)]:
        try:
            done = subprocess.run([str(candidate), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                  capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip() == version:
            return candidate
    return None


def _marker(toolchain: Toolchain) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((toolchain.env / MARKER).read_text())
        return data
    except (OSError, ValueError):
        return None


def _lock_digest(toolchain: Toolchain) -> str:
    return hashlib.sha256(toolchain.lock.read_bytes()).hexdigest()


def state(toolchain: Toolchain) -> State:
    marker = _marker(toolchain)
    built = (marker is not None and marker.get("lock_sha256") == _lock_digest(toolchain)
             and toolchain.interpreter.exists())
    # Built: the interpreter it was built with is recorded; looking for one (a subprocess per
    # candidate) is only needed to build it.
    python = Path(marker["python"]) if built and marker and marker.get("python") else find_python(toolchain.python)
    current = State(toolchain.name, False, str(python) if python else None, str(toolchain.env))
    install = f"modelport toolchain install {toolchain.name}"
    if marker is None:
        current.problem = (f"not installed: run `{install}`" if python else
                           f"needs Python {toolchain.python}, which is not on this machine (pyenv install "
                           f"{toolchain.python}), then `{install}`")
        return current
    if marker.get("lock_sha256") != _lock_digest(toolchain) or not toolchain.interpreter.exists():
        current.problem = f"built from another lock (modelport was updated): run `{install}` again"
        return current
    current.installed = True
    current.versions = {k: v for k, v in toolchain.pinned().items() if not toolchain.reports or k in toolchain.reports}
    current.size_bytes = marker.get("size_bytes")
    current.install_seconds = marker.get("install_seconds")
    return current


def problem(name: str, purpose: str) -> BackendMissing | None:
    """What keeps toolchain `name` from running (exit 4, naming the install command), or None."""
    try:
        toolchain = get(name)
    except BadInput as exc:
        return BackendMissing(exc.message, exc.hint)
    found = state(toolchain)
    if found.installed:
        return None
    return BackendMissing(f"The toolchain '{name}' is {found.problem.split(':')[0] if found.problem else 'missing'} "
                          f"(needed {purpose}).",
                          f"Install it with: modelport toolchain install {name}"
                          + ("" if found.python else f" (after installing Python {toolchain.python})"))


def install(toolchain: Toolchain, say: Callable[[str], None] = lambda _: None) -> State:
    """Build the toolchain's environment from its lock; on any failure nothing is left behind."""
    python = find_python(toolchain.python)
    if python is None:
        raise BackendMissing(f"The toolchain '{toolchain.name}' needs Python {toolchain.python}, which is not on "
                             "this machine.", f"Install it (e.g. `pyenv install {toolchain.python}`) and run again.")
    started = time.monotonic()
    shutil.rmtree(toolchain.env, ignore_errors=True)
    toolchain.env.parent.mkdir(parents=True, exist_ok=True)
    uv = shutil.which("uv")
    count = len(toolchain.pinned())
    try:
        say(f"Creating a Python {toolchain.python} environment in {toolchain.env} ({python})")
        if uv:
            _call([uv, "venv", "--quiet", "--python", str(python), str(toolchain.env)])
            say(f"Installing {count} locked packages with uv")
            _call([uv, "pip", "install", "--quiet", "--python", str(toolchain.interpreter), "--require-hashes",
                   "--no-deps", "-r", str(toolchain.lock)])
        else:
            _call([str(python), "-m", "venv", str(toolchain.env)])
            say(f"Installing {count} locked packages with pip")
            _call([str(toolchain.interpreter), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   "--no-input", "--no-compile", "--require-hashes", "--no-deps", "-r", str(toolchain.lock)])
        size = sum(p.stat().st_size for p in toolchain.env.rglob("*") if p.is_file() and not p.is_symlink())
        marker = {"name": toolchain.name, "python": str(python), "lock_sha256": _lock_digest(toolchain),
                  "install_seconds": round(time.monotonic() - started, 1), "size_bytes": size,
                  "installer": "uv" if uv else "pip"}
        (toolchain.env / MARKER).write_text(json.dumps(marker, indent=2))
    except BaseException:
        shutil.rmtree(toolchain.env, ignore_errors=True)
        raise
    return state(toolchain)


def _call(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.strip() and "WARNING" not in ln]
        step = " ".join(Path(command[0]).name if i == 0 else part for i, part in enumerate(command[:3]))
        raise BackendMissing(f"Building the toolchain failed at `{step} ...`: "
                             f"{lines[-1][:300] if lines else f'exit {done.returncode}'}",
                             "If a package could not be fetched, check that the registry (PyPI) is reachable; "
                             "then run the install again.")


def remove(toolchain: Toolchain) -> bool:
    existed = toolchain.env.exists()
    shutil.rmtree(toolchain.env, ignore_errors=True)
    return existed


def clean_env(toolchain: Toolchain, work: Path) -> dict[str, str]:
    """What a toolchain's process sees: its own bin first on PATH (tools it runs by command name
    are its own), `work` as HOME and TMPDIR, no PYTHONPATH or user site, quiet progress bars."""
    env = {"PATH": os.pathsep.join([str(toolchain.env / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
           "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8", "PYTHONNOUSERSITE": "1",
           "PYTHONDONTWRITEBYTECODE": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "TQDM_DISABLE": "1",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", ""), "NO_COLOR": "1"}
    return {k: v for k, v in env.items() if v}


@dataclass
class Result:
    data: dict[str, Any]
    log: str


def run(name: str, script: str, request: dict[str, Any], *, verbose: bool = False,
        timeout: float | None = None) -> Result:
    """Run `script` of toolchain `name` with `request`; its result, or ConversionFailed (exit 3).

    The protocol: `<toolchain python> -I <script> request.json result.json`, in a clean environment
    (the toolchain's bin first on PATH, so tools it runs by command name are its own). The script
    reads the request, writes files only where the request says, and writes the result:
    {"ok": true, ...} or {"ok": false, "error": "...", "hint": "..."}. Its output is the log."""
    toolchain = get(name)
    missing = problem(name, f"to run {script}")
    if missing is not None:
        raise missing
    with tempfile.TemporaryDirectory(prefix=f"modelport-{name}-") as scratch:
        work = Path(scratch)
        (work / "request.json").write_text(json.dumps(request))
        env = clean_env(toolchain, work)
        with open(work / "log.txt", "w+b") as log:
            try:
                done = subprocess.run([str(toolchain.interpreter), "-I", str(toolchain.script(script)),
                                       str(work / "request.json"), str(work / "result.json")],
                                      stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                      cwd=work, timeout=timeout)
                code: int | None = done.returncode
            except subprocess.TimeoutExpired:
                code = None
            log.seek(0)
            text = log.read().decode(errors="replace")
        if verbose and text:
            sys.stderr.write(text if text.endswith("\n") else text + "\n")
        try:
            data: dict[str, Any] = json.loads((work / "result.json").read_text())
        except (OSError, ValueError):
            lines = [ln for ln in text.strip().splitlines() if ln.strip()]
            why = "it timed out" if code is None else (lines[-1][:300] if lines else f"exit code {code}")
            raise ConversionFailed(f"The {name} toolchain's {script} ended without a result: {why}",
                                   "Run with --verbose for its log.") from None
    if not data.get("ok"):
        raise ConversionFailed(str(data.get("error") or f"{script} failed"),
                               str(data.get("hint") or "Run with --verbose for its log."))
    return Result(data, text)
