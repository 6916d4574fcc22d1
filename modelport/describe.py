"""What a model is: format, framework, I/O, size, parameters, ops. Feeds `inspect` and the
`source` block of every report, so both say the same thing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .artifact import sha256_of, size_of
from .errors import BadInput


def describe_loaded(model: Any, source: str) -> dict[str, Any]:
    """Describe a loaded SourceModel."""
    path = Path(model.path)  # for an entry point, the .py file it came from
    described: dict[str, Any] = {
        "path": source, "format": model.format, "framework": model.framework,
        "evidence": model.details.get("evidence"),
        "size_bytes": size_of(path) if path.exists() else None,
        "sha256": sha256_of(path) if path.exists() else None,
        "inputs": [s.to_json() for s in model.inputs], "outputs": [s.to_json() for s in model.outputs],
    }
    described.update(model.summary())
    if "quantization" in model.details:
        described["quantization"] = model.details["quantization"]
    return described


def describe_tfjs(source: str) -> dict[str, Any]:
    """A TF.js graph or layers model, read from model.json (nothing runs)."""
    path = Path(source)
    manifest = path / "model.json" if path.is_dir() else path
    try:
        return _describe_tfjs(source, path, json.loads(manifest.read_text(encoding="utf-8")))
    except OSError as exc:
        raise BadInput(f"Cannot read '{manifest}': {exc.strerror}.", "Check the path and its permissions.") from None
    except (ValueError, TypeError, AttributeError, KeyError) as exc:  # bad UTF-8 or JSON, or the wrong shape
        raise BadInput(f"'{manifest}' is not a TF.js model.json: {type(exc).__name__}: {str(exc)[:100]}.",
                       "Convert the model again.") from None


def _describe_tfjs(source: str, path: Path, document: dict[str, Any]) -> dict[str, Any]:
    topology = document.get("modelTopology") or {}
    counts: dict[str, int] = {}
    for node in topology.get("node", []):
        if node.get("op") not in ("Placeholder", "Const", "Identity", "NoOp"):
            counts[node["op"]] = counts.get(node["op"], 0) + 1
    parameters = 0
    for group in document.get("weightsManifest", []):
        for weight in group.get("weights", []):
            size = 1
            for dim in weight.get("shape", []):
                size *= int(dim)
            parameters += size

    def specs(entries: dict | None) -> list[dict]:
        out = []
        for name, entry in (entries or {}).items():
            dims = entry.get("tensorShape", {}).get("dim", [])
            shape = [int(d.get("size", -1)) if int(d.get("size", -1)) >= 0 else "?" for d in dims]
            out.append({"name": name.split(":")[0], "shape": shape,
                        "dtype": entry.get("dtype", "DT_FLOAT").replace("DT_", "").lower().replace("float", "float32")
                        .replace("float3232", "float32")})
        return out

    signature = document.get("signature") or topology.get("signature") or {}
    folder = path if path.is_dir() else path.parent
    return {"path": source, "format": "tfjs", "framework": "tfjs",
            "evidence": "model.json", "size_bytes": size_of(folder), "sha256": sha256_of(folder),
            "inputs": specs(signature.get("inputs")), "outputs": specs(signature.get("outputs")),
            "parameters": parameters, "ops": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
            "tfjs_format": document.get("format"), "generated_by": document.get("generatedBy"),
            "converted_by": document.get("convertedBy")}


def describe_runner(runner: Any, source: str, kind: str) -> dict[str, Any]:
    """A model its format can only run, not read as a source: I/O from its runtime (loaded, not run)."""
    path = Path(source)
    return {"path": source, "format": kind, "framework": kind, "evidence": None,
            "size_bytes": size_of(path), "sha256": sha256_of(path), "runtime": runner.runtime,
            "inputs": [s.to_json() for s in runner.inputs], "outputs": [s.to_json() for s in runner.outputs],
            "parameters": None, "ops": {}}
