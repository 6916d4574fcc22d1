"""`package`: a converted, validated model as a bundle a device can take: the model, its manifest
(`modelport.json`), golden vectors (inputs and the source model's outputs for them), a standalone
runner whose `--selftest` replays them, and a README. A folder, or a `.zip` / `.tar.gz` by the
bundle's suffix; the same inputs give a byte-identical archive (fixed entry order, times, modes,
and no absolute path, timing or latency in the manifest).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifact import Artifact, sha256_of, sidecar_path
from .bundles import MANIFEST, archive_kind
from .errors import BackendMissing, BadInput, ConversionFailed, ValidationFailed
from .formats.base import load_object
from .loading import load_source
from .options import PackageOptions, Progress
from .placement import OUTPUT_ROOT, place
from .registry import Registry, default
from .results import ConvertResult, Status, TargetResult
from .safety import check_output_dir

if TYPE_CHECKING:
    import numpy as np

SCHEMA = "modelport.bundle/1"
# What each standalone runner needs (a format declares its runner: TargetSpec.bundle_runtime).
RUNTIME_PACKAGES = {"litert": "ai-edge-litert (or tflite-runtime)", "onnxruntime": "onnxruntime",
                    "tfjs": "@tensorflow/tfjs (Node.js)"}


def packageable(registry: Registry) -> list[str]:
    """The targets a bundle can carry: those whose format declares a standalone runner."""
    return [t for t in registry.targets() if (spec := registry.spec(t).target) is not None and spec.bundle_runtime]
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
_EPOCH_ZIP = (1980, 1, 1, 0, 0, 0)           # the earliest time a zip entry can hold
_RUNNER = Path(__file__).resolve().parent / "bundle" / "run.py"
_NODE_RUNNER = Path(__file__).resolve().parent / "bundle" / "run.js"
_TFJS_MODEL = Path(__file__).resolve().parent / "targets" / "tfjs_runner" / "tfjs_model.js"


@dataclass
class PackageResult:
    bundle: Path
    convert: ConvertResult
    files: list[str]


def package(model: str, options: PackageOptions, progress: Progress | None = None,
            registry: Registry | None = None) -> PackageResult:
    """Convert MODEL to `options.targets[0]`, validate it, and write the bundle."""
    from .pipeline import calibration_for, check_precision, comparison_feeds, convert_loaded

    registry = registry or default()
    target = options.targets[0] if len(options.targets) == 1 else None
    if target not in packageable(registry):
        raise BadInput(f"package takes one --target of: {', '.join(packageable(registry))} (got "
                       f"{', '.join(options.targets)}).", "Pass one of those.")
    bundle = options.bundle or OUTPUT_ROOT / f"{Path(model).name.split('.')[0]}-{target}"
    _check_bundle_path(bundle, Path(model))
    if options.labels is not None and not options.labels.is_file():
        raise BadInput(f"--labels '{options.labels}' is not a file.", "Pass a text file with one label per line.")
    check_precision(options, registry)
    if progress:
        progress("start", f"Loading {model}")
    source = load_source(model, options.load_options(), framework=options.framework, registry=registry)
    try:
        with tempfile.TemporaryDirectory(prefix="modelport-package-") as scratch_root:
            scratch = Path(scratch_root)
            converted = replace(options, targets=(target,), output_dir=scratch / "converted", validate=True)
            calibration = calibration_for(source, converted) if options.quantize == "int8" else None
            result = convert_loaded(model, source, converted, progress, registry, calibration)
            item = result.targets[0]
            _require_good(item)
            assert item.artifact is not None and item.path is not None
            # The golden vectors are the samples the model was validated on.
            feeds = comparison_feeds(source, converted, calibration)
            if progress:
                progress("start", "Writing golden vectors")
            expected = [source.run(f) for f in feeds]
            stage = scratch / "bundle"
            stage.mkdir()
            files = _write_bundle(stage, model, source, result, item, feeds, expected, options, registry)
            if progress:
                progress("done", "Bundle assembled")
            _publish(stage, bundle)
    finally:
        source.close()
    return PackageResult(bundle=bundle, convert=result, files=files)


def _check_bundle_path(bundle: Path, source: Path) -> None:
    """Before any work: the bundle never lands on or inside the source, nor on a non-empty folder."""
    if archive_kind(bundle):
        if bundle.is_dir():
            raise BadInput(f"The bundle '{bundle}' is an existing folder, not an archive name.",
                           "Pass a new .zip / .tar.gz name, or a folder name without that suffix.")
        if source.exists():
            src, out = source.resolve(), bundle.resolve()
            if out == src or (src.is_dir() and src in out.parents):
                raise BadInput(f"The bundle '{bundle}' would be written into the source '{source}'.",
                               "Pass a bundle path outside the model with -o.")
        return
    check_output_dir(bundle, source if source.exists() else None)
    if bundle.is_dir() and any(bundle.iterdir()):
        raise BadInput(f"The bundle folder '{bundle}' exists and is not empty.",
                       "Pass a new folder with -o, or remove the old bundle first.")


def _require_good(item: TargetResult) -> None:
    """Only a validated model is bundled: the bundle's self-test would otherwise prove nothing."""
    if item.verdict.status in (Status.PASSED, Status.UNVERIFIED):
        return
    problem = item.error or item.status
    kind = {1: ValidationFailed, 2: BadInput, 4: BackendMissing}.get(item.exit_code, ConversionFailed)
    raise kind(f"{item.target}: {problem}", "Nothing was packaged: fix the conversion first (see `convert`).")


def _io_entries(artifact: Artifact, source_specs: list, links: tuple, model_specs: tuple,
                quantization: dict[str, dict]) -> list[dict[str, Any]]:
    by_source = {s.name: s for s in source_specs}
    dtypes = {s.name: s.dtype for s in model_specs}
    entries = []
    for link in links:
        spec = by_source.get(link.source_name)
        # The pair travels together: from the link where it quantizes, else from the file's own tensor.
        params = ({"scale": link.scale, "zero_point": link.zero_point} if link.scale is not None
                  else quantization.get(link.name, {}))
        scale, zero = params.get("scale"), params.get("zero_point")
        entries.append({"name": link.source_name, "shape": list(spec.shape) if spec and spec.shape else None,
                        "dtype": spec.dtype if spec else None, "model_name": link.name,
                        "model_dtype": dtypes.get(link.name, spec.dtype if spec else "float32"),
                        "perm": list(link.perm) if link.perm else None, "scalar": link.scalar,
                        "scale": scale or None, "zero_point": zero if scale else None})
    return entries


def _write_bundle(stage: Path, model: str, source: Any, result: ConvertResult, item: TargetResult,
                  feeds: list[dict[str, np.ndarray]], expected: list[dict[str, np.ndarray]], options: PackageOptions,
                  registry: Registry) -> list[str]:
    from .validators.report import environment

    artifact = item.artifact
    assert artifact is not None and item.path is not None
    spec = registry.spec(item.target).target
    assert spec is not None and spec.bundle_runtime is not None
    runtime = spec.bundle_runtime
    model_file = item.path.name
    if item.path.is_dir():  # a TF.js model is a folder (model.json and its weight shards)
        shutil.copytree(item.path, stage / model_file)
    else:
        shutil.copyfile(item.path, stage / model_file)
    sidecar = sidecar_path(item.path)
    if sidecar.is_file():  # the I/O mapping `validate` reads: a bundle compares with its source as is
        shutil.copyfile(sidecar, stage / sidecar.name)
    for companion in artifact.companions:
        if companion.exists():
            shutil.copyfile(companion, stage / companion.name)
    quantization: dict[str, dict] = {}
    if runtime == "litert":  # LiteRT I/O may be integers: the runner quantizes with the file's own params
        from .sources.tflite import read_flatbuffer

        facts = read_flatbuffer(item.path)
        quantization = {t.name: {"scale": t.scale, "zero_point": t.zero_point}
                        for t in (*facts.inputs, *facts.outputs) if t.scale}
    tolerance = spec.tolerance(artifact.quantization)
    arrays: dict[str, Any] = {}
    for index, (inputs, outputs) in enumerate(zip(feeds, expected)):
        arrays.update({f"input/{index}/{name}": value for name, value in inputs.items()})
        arrays.update({f"output/{index}/{name}": value for name, value in outputs.items()})
    write_npz(stage / "golden.npz", arrays)
    if runtime == "tfjs":  # Node reads JSON, not .npz
        (stage / "golden.json").write_text(json.dumps(_golden_json(feeds, expected), sort_keys=True) + "\n")
    labels = None
    if options.labels is not None:
        labels = options.labels.name
        shutil.copyfile(options.labels, stage / labels)
    packages = environment(1)["packages"]
    manifest = {
        "schema": SCHEMA, "model": model_file, "format": item.target,
        "runtime": RUNTIME_PACKAGES[runtime], "runtime_kind": runtime,
        # Session settings the format's own runner uses (e.g. how onnxruntime must read the file).
        "session_config": dict(getattr(load_object(spec.runner), "session_config", {}) or {}),
        "source": {"name": Path(model).name, "format": result.source.get("format"),
                   "framework": result.source.get("framework"), "sha256": result.source.get("sha256")},
        "layout": artifact.layout,
        "inputs": _io_entries(artifact, list(source.inputs), artifact.io.inputs, artifact.inputs, quantization),
        "outputs": _io_entries(artifact, list(source.outputs), artifact.io.outputs, artifact.outputs, quantization),
        "preprocessing": options.preprocess, "labels": labels, "metadata": dict(options.metadata),
        "conversion": {"path": list(artifact.path_taken), "quantization": artifact.quantization,
                       "calibration": result.calibration, "model_sha256": sha256_of(item.path),
                       # which tool wrote it, version included (a toolchain's is not in `versions`)
                       "converter": artifact.extra.get("converter")},
        "versions": {name: packages[name] for name in sorted(packages)},
        "validation": {"status": item.status, "message": item.error,
                       "samples": item.numeric.samples if item.numeric else 0,
                       "outputs": [{"name": o.name, "max_abs_diff": o.max_abs_diff, "cosine": o.cosine,
                                    "snr_db": None if o.snr_db in (None, float("inf")) else round(o.snr_db, 3),
                                    "top1_agreement": o.top1_agreement}
                                   for o in (item.numeric.outputs if item.numeric else [])]},
        "golden": {"file": "golden.npz", "samples": len(feeds), "from": "the source model",
                   **({"json": "golden.json"} if runtime == "tfjs" else {}),
                   "tolerance": {"atol": tolerance.atol, "rtol": tolerance.rtol, "min_cosine": tolerance.min_cosine}},
    }
    (stage / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=_plain) + "\n")
    if runtime == "tfjs":
        from .targets.tfjs import tfjs_version

        shutil.copyfile(_NODE_RUNNER, stage / "run.js")
        shutil.copyfile(_TFJS_MODEL, stage / "tfjs_model.js")
        package_json = {"name": "modelport-bundle", "private": True, "description": "run.js --selftest",
                        "dependencies": {"@tensorflow/tfjs": tfjs_version() or "^4"}}
        (stage / "package.json").write_text(json.dumps(package_json, indent=2) + "\n")
    else:
        shutil.copyfile(_RUNNER, stage / "run.py")
    (stage / "README.md").write_text(_readme(manifest))
    return sorted(p.name for p in stage.iterdir())


def _golden_json(feeds: list[dict[str, np.ndarray]], expected: list[dict[str, np.ndarray]]) -> list[dict]:
    """Golden vectors for Node: little-endian float32 / int32 bytes, base64, with dtype and shape."""
    import base64

    import numpy as np

    def entry(value: Any) -> dict[str, Any]:
        array = np.asarray(value)
        wire = "float32" if array.dtype.kind == "f" else "int32"
        data = np.ascontiguousarray(array.astype(f"<{'f4' if wire == 'float32' else 'i4'}")).tobytes()
        return {"dtype": wire, "shape": list(array.shape), "data": base64.b64encode(data).decode("ascii")}

    return [{"inputs": {k: entry(v) for k, v in f.items()}, "outputs": {k: entry(v) for k, v in e.items()}}
            for f, e in zip(feeds, expected)]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def _zip_entry(name: str) -> zipfile.ZipInfo:
    """A zip entry that depends on nothing but its name: fixed time and mode, deflated."""
    info = zipfile.ZipInfo(name, date_time=_EPOCH_ZIP)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def write_npz(path: Path, arrays: dict[str, Any]) -> None:
    """numpy.savez, but byte-identical for the same arrays (numpy stamps each entry with the time)."""
    import numpy as np

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            archive.writestr(_zip_entry(f"{name}.npy"), buffer.getvalue())


def _readme(manifest: dict[str, Any]) -> str:
    def io_lines(entries: list[dict]) -> str:
        return "\n".join(f"- `{e['name']}`: {e['dtype']} {e['shape']}"
                         + (f" (model tensor `{e['model_name']}`, {e['model_dtype']}"
                            + (f", transposed by {e['perm']}" if e["perm"] else "")
                            + (f", scale {e['scale']:.6g} zero point {e['zero_point']}" if e["scale"] else "") + ")"
                            if e["model_name"] != e["name"] or e["perm"] or e["scale"] else "")
                         for e in entries)

    validation = manifest["validation"]
    return f"""# {manifest['source']['name']} as {manifest['format']} ({manifest['conversion']['quantization']})

Made by modelport from `{manifest['source']['name']}` (sha256 `{manifest['source']['sha256']}`) along
{' -> '.join(manifest['conversion']['path'])}, and validated against it on its own runtime:
**{validation['status']}** on {validation['samples']} samples.

Files: `{manifest['model']}` (the model), `modelport.json` (what everything here is), `golden.npz`
(inputs and the source model's outputs for them), `run.{'js' if manifest['runtime_kind'] == 'tfjs' else 'py'}` (a runner
needing only {'Node.js and ' if manifest['runtime_kind'] == 'tfjs' else 'numpy and '}{manifest['runtime']}){', `' + manifest['labels'] + '` (labels)' if manifest['labels'] else ''}.

{_usage(manifest)}

Inputs (named and laid out as the source model's; `run.py` applies the rest):
{io_lines(manifest['inputs'])}

Outputs:
{io_lines(manifest['outputs'])}

Preprocessing: {manifest['preprocessing'] or 'none recorded'}.
"""


def _usage(manifest: dict[str, Any]) -> str:
    if manifest["runtime_kind"] == "tfjs":
        return ("```\nnpm install          # @tensorflow/tfjs, the version it was validated with\n"
                "node run.js --selftest   # replays the golden vectors; exit 1 if the outputs drifted\n"
                "node run.js --inputs in.json -o out.json\n"
                "    # in.json: {\"<input>\": {\"shape\": [...], \"dtype\": \"float32\", \"values\": [...]}}\n```")
    return (f"```\npip install numpy {manifest['runtime'].split(' ')[0]}\n"
            "python run.py --selftest               # replays the golden vectors; exit 1 if the outputs drifted\n"
            "python run.py --inputs x.npz -o y.npz  # named inputs in, named outputs out\n```")


def _publish(stage: Path, bundle: Path) -> None:
    kind = archive_kind(bundle)
    if kind is None:
        place(stage, bundle)
        return
    bundle.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=bundle.parent, prefix=f".{bundle.name}.")
    os.close(fd)
    try:
        write_archive(stage, Path(tmp), kind)
        os.chmod(tmp, 0o644)
        os.replace(tmp, bundle)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_archive(folder: Path, path: Path, kind: str) -> None:
    """A deterministic archive of `folder`'s files: sorted, fixed times, modes and owners."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if kind == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in files:
                archive.writestr(_zip_entry(file.relative_to(folder).as_posix()), file.read_bytes())
        return
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for file in files:
            entry = tarfile.TarInfo(file.relative_to(folder).as_posix())
            entry.size, entry.mtime, entry.mode, entry.uid, entry.gid = file.stat().st_size, 0, 0o644, 0, 0
            entry.uname = entry.gname = ""
            with open(file, "rb") as handle:
                archive.addfile(entry, handle)


__all__ = ["PackageResult", "package", "write_archive"]
