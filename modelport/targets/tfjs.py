"""TF.js target: a graph model (model.json + shards) run by `@tensorflow/tfjs` in Node.

One Node process serves all samples; tensors cross as raw bytes behind a JSON header, never as
JSON lists of floats. The backend is `@tensorflow/tfjs-backend-wasm` (its .wasm files read from the
npm package, never fetched), on one thread: in Node the package disables its threaded build, so
`threads` does not apply. A model using an op wasm has no kernel for (or whose wasm kernel refuses
the case, e.g. int32 BatchMatMul) runs on the pure-JS CPU backend instead; the runtime string names
the backend that ran ("tfjs 4.22.0 (wasm)", "tfjs 4.22.0 (cpu: wasm lacks kernel Einsum)").
Nothing native is needed (tfjs-node would download a library at install).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BackendMissing, BadInput, ModelportError
from ..spec import TensorSpec
from .base import Runner, Tapped

if TYPE_CHECKING:
    import numpy as np


RUNNER_DIR = Path(__file__).resolve().parent / "tfjs_runner"
# TF.js has no 64-bit integers or doubles: they travel as int32 / float32.
_WIRE = {"float32": "float32", "float64": "float32", "float16": "float32", "int64": "int32", "int32": "int32",
         "int8": "int32", "uint8": "int32", "int16": "int32", "bool": "bool"}


def node_modules_dir() -> Path:
    return Path(os.environ.get("MODELPORT_TFJS_RUNNER_DIR", RUNNER_DIR))


def install_command() -> str:
    return f"npm ci --prefix {node_modules_dir()}"


def check_node() -> tuple[str, Path]:
    """The node executable and the runner folder, or BackendMissing saying the one command to run."""
    node = shutil.which("node")
    if node is None:
        raise BackendMissing("Node.js is not installed; the TF.js runner needs it.",
                             f"Install Node.js 18+ (e.g. apt-get install nodejs npm), then run: {install_command()}")
    folder = node_modules_dir()
    if not (folder / "node_modules" / "@tensorflow" / "tfjs" / "package.json").is_file():
        raise BackendMissing("The TF.js runner's npm packages are not installed.", f"Run: {install_command()}")
    return node, folder


def runtime_problem() -> tuple[str, str] | None:
    """What the TF.js runner lacks here (message, what to do), or None."""
    try:
        check_node()
    except BackendMissing as exc:
        return exc.message, exc.hint or ""
    return None


def runtime_versions() -> dict[str, dict[str, object]]:
    """Node.js and @tensorflow/tfjs, for doctor (no Python package says these)."""
    node = shutil.which("node")
    version = None
    if node:
        try:
            version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            node = None
    tfjs, wasm = tfjs_version(), tfjs_version("tfjs-backend-wasm")
    return {"node": {"installed": bool(node), "version": version},
            "tfjs": {"installed": tfjs is not None, "version": tfjs, "install": None if tfjs else install_command()},
            "tfjs-backend-wasm": {"installed": wasm is not None, "version": wasm,
                                  "install": None if wasm else install_command()}}


def tfjs_version(package: str = "tfjs") -> str | None:
    """The installed version of @tensorflow/PACKAGE in the runner's node_modules."""
    try:
        manifest = node_modules_dir() / "node_modules" / "@tensorflow" / package / "package.json"
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


_MAX_MANIFEST_BYTES = 256 * 2**20  # a model.json is topology and a weight list, never this big


def check_weight_files(model_dir: Path) -> None:
    """Every weight shard model.json names is a file inside the model folder, checked before Node
    opens any (its loader reads whatever path the manifest gives, '../' and absolute ones too)."""
    manifest = model_dir / "model.json"
    if manifest.stat().st_size > _MAX_MANIFEST_BYTES:
        raise BadInput(f"'{manifest}' is larger than {_MAX_MANIFEST_BYTES // 2**20} MB; it is not a TF.js model.json.",
                       "Convert the model again.")
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
        groups = document.get("weightsManifest") or []
        shards = [shard for group in groups for shard in (group.get("paths") or [])]
    except (ValueError, AttributeError, TypeError) as exc:
        raise BadInput(f"'{manifest}' is not a TF.js model.json: {str(exc)[:100]}.",
                       "Convert the model again.") from None
    root = model_dir.resolve()
    for shard in shards:
        where = (root / shard).resolve() if isinstance(shard, str) and shard else None
        if where is None or Path(shard).is_absolute() or ".." in Path(shard).parts or root not in where.parents:
            raise BadInput(f"'{manifest}' names the weight file {shard!r}, which is outside the model's folder.",
                           "Weight shards must be files inside the model folder, named relative to it.")
        if not where.is_file():
            raise BadInput(f"'{manifest}' names the weight file '{shard}', which is missing from the model's folder.",
                           "Copy the whole TF.js model folder.")


class TfjsRunner(Runner):
    runtime = "tfjs (node)"  # until loaded: then the version and the backend that ran (_read)

    def _load(self) -> None:
        node, folder = check_node()
        model_dir = (self.path if self.path.is_dir() else self.path.parent).resolve()  # node runs elsewhere
        if not (model_dir / "model.json").is_file():
            raise BadInput(f"'{self.path}' has no model.json.", "Pass a TF.js graph model folder.")
        check_weight_files(model_dir)
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen([node, str(folder / "runner.js"), str(model_dir)], cwd=folder,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        self._version: str | None = None
        hello = self._read()
        self.inputs = [TensorSpec(t["name"], tuple(d if d >= 0 else "?" for d in t["shape"]), t["dtype"])
                       for t in hello["inputs"]]
        self.outputs = [TensorSpec(t["name"], tuple(d if d >= 0 else "?" for d in t["shape"]), t["dtype"])
                        for t in hello["outputs"]]

    def _read(self) -> dict:
        import numpy as np

        assert self._proc.stdout is not None  # opened with stdout=PIPE
        size = self._proc.stdout.read(4)
        if len(size) < 4:
            self._proc.wait()
            self._log.seek(0)
            tail = self._log.read().decode("utf-8", "replace").strip().splitlines()[-3:]
            raise ModelportError(f"The TF.js runner stopped (exit {self._proc.returncode}): {' '.join(tail) or 'no message'}",
                                 "Run with --verbose; check the model loads in TF.js.")
        header = json.loads(self._proc.stdout.read(struct.unpack("<I", size)[0]))
        if not header.get("ok"):
            raise ModelportError(f"TF.js could not run the model: {header.get('error')}",
                                 "An op may lack a kernel in TF.js (its wasm backend, then its CPU backend, "
                                 "were tried).")
        self._version = header.get("version", self._version)
        if header.get("backend"):  # which backend ran: wasm, or cpu and why
            self.runtime = f"tfjs {self._version} ({header['backend']})"
        if "outputs" in header and header["outputs"] and "nbytes" in header["outputs"][0]:
            header["arrays"] = {
                t["name"]: np.frombuffer(self._proc.stdout.read(t["nbytes"]), dtype=t["dtype"] if t["dtype"] != "bool" else np.uint8)
                .reshape(t["shape"]).astype(bool if t["dtype"] == "bool" else t["dtype"])
                for t in header["outputs"]}
        return header

    def _send(self, header: dict, feeds: dict) -> None:
        import numpy as np

        specs = {s.name: s for s in self.inputs}
        parts, meta = [], []
        for name, value in feeds.items():
            wire = _WIRE.get(str(value.dtype), "float32")
            array = np.ascontiguousarray(value.astype(np.uint8 if wire == "bool" else wire))
            if name not in specs:
                raise BadInput(f"The TF.js model has no input '{name}'.",
                               f"Its inputs: {', '.join(specs)}.")
            meta.append({"name": name, "dtype": wire, "shape": list(array.shape), "nbytes": array.nbytes})
            parts.append(array.tobytes())
        head = json.dumps({**header, "inputs": meta}).encode()
        body = b"".join(parts)
        assert self._proc.stdin is not None  # opened with stdin=PIPE
        self._proc.stdin.write(struct.pack("<II", len(head), len(body)) + head + body)
        self._proc.stdin.flush()

    def _run(self, feeds):
        self._send({"cmd": "run"}, feeds)
        return self._read()["arrays"]

    def tap(self, feeds: dict[str, np.ndarray]) -> list[Tapped]:
        """Every op's output, in graph order: TF.js executes the graph model with each node
        named as an output (on the backend that runs the model)."""
        self.load()
        self._send({"cmd": "tap"}, feeds)
        header = self._read()
        arrays = header.get("arrays", {})
        return [Tapped(t["name"], t["op"], arrays[t["name"]], t["name"]) for t in header["outputs"]]

    def time_runs(self, feeds: dict[str, np.ndarray], runs: int, warmup: int) -> list[float]:
        self.load()
        self._send({"cmd": "time", "runs": runs, "warmup": warmup}, feeds)
        return list(self._read()["times"])

    def peak_rss_bytes(self) -> int | None:
        from .base import read_vmhwm

        return read_vmhwm(self._proc.pid) if self._loaded else None

    def _close(self) -> None:
        assert self._proc.stdin is not None  # opened with stdin=PIPE
        try:
            self._proc.stdin.close()
            self._proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
        self._log.close()
