"""`modelport debug`: where a converted model starts to drift from the model it was made from.

Both models run on the same samples on their own runtimes with every intermediate tensor exposed
(`Runner.tap`: ONNX with each node output made a graph output, LiteRT in its preserve-all-tensors
mode). Tensors are matched through the correspondence the converter recorded in the candidate's
sidecar (onnx2tf 2.x's tensor report; a fused Conv+Relu is one TFLite tensor standing for both
ONNX tensors, compared with the last), else by name (onnx2tf's renaming undone), with the layout
permutation read off the shapes. Each matched layer gets max abs, cosine and SNR; the first one
outside the candidate's tolerance is the first divergent layer. Quantized tensors are compared
dequantized, against the quantized target's tolerance.

`debug SOURCE --to T` converts first: SOURCE to ONNX (the reference), then that ONNX to T, so
every layer is compared with the exact graph the T converter was given.
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifact import Artifact, IOMapping
from .bundles import opened_bundle
from .converters.onnx2tf2 import onnx2tf_name
from .errors import BadInput
from .loading import load_source
from .options import ConvertOptions, Progress
from .registry import Registry, default
from .runners import open_runner
from .validators.compare import Tolerance, compare_output
from .validators.matching import link_tensors, read_sidecar
from .validators.validate import sample_feeds, to_artifact_feeds

if TYPE_CHECKING:
    import numpy as np

    from .targets.base import Runner, Tapped


@dataclass(frozen=True)
class DebugOptions(ConvertOptions):
    samples: int = 1


@dataclass
class Layer:
    """One candidate tensor matched to the reference tensor(s) it stands for."""

    position: int                 # the reference's execution order (of the tensor compared with)
    name: str                     # the candidate's tensor
    op: str                       # the candidate's op that wrote it
    source_name: str              # the reference node that starts it (the Conv of a fused Conv+Relu)
    source_op: str
    source_tensors: list[str]     # every reference tensor it stands for; compared with the last
    shape: tuple[int, ...]
    perm: tuple[int, ...] | None  # candidate = reference.transpose(perm)
    max_abs_diff: float
    cosine: float
    snr_db: float | None
    passed: bool
    reason: str = ""
    matched_by: str = "recorded"  # recorded (the converter's correspondence) | name | value | position

    def to_json(self) -> dict[str, Any]:
        def finite(x: float | None) -> float | None:
            return x if x is not None and math.isfinite(x) else None

        return {"name": self.name, "op_type": self.op, "source_name": self.source_name, "source_op_type": self.source_op,
                "source_tensors": self.source_tensors, "shape": list(self.shape),
                "perm": list(self.perm) if self.perm else None, "max_abs_diff": finite(self.max_abs_diff),
                "cosine": self.cosine, "snr_db": finite(self.snr_db), "passed": self.passed,
                "reason": self.reason or None, "matched_by": self.matched_by}


@dataclass
class DebugResult:
    reference: str
    candidate: str
    reference_runtime: str
    candidate_runtime: str
    samples: int
    tolerance: Tolerance
    matched_by: str                         # "recorded correspondence" | "name and value"
    layers: list[Layer] = field(default_factory=list)
    unmatched: int = 0                      # reference tensors with no counterpart in the candidate
    first_divergent: int | None = None      # index into layers

    def to_json(self) -> dict[str, Any]:
        first = self.layers[self.first_divergent] if self.first_divergent is not None else None
        return {"schema": "modelport.debug/1", "reference": self.reference, "candidate": self.candidate,
                "reference_runtime": self.reference_runtime, "candidate_runtime": self.candidate_runtime,
                "samples": self.samples, "matched_by": self.matched_by,
                "tolerance": {"atol": self.tolerance.atol, "rtol": self.tolerance.rtol,
                              "min_cosine": self.tolerance.min_cosine},
                "matched": len(self.layers), "unmatched": self.unmatched,
                "first_divergent": first.to_json() if first else None,
                "layers": [layer.to_json() for layer in self.layers]}


def debug(reference: str, candidate: str, options: DebugOptions, progress: Progress | None = None,
          registry: Registry | None = None) -> DebugResult:
    """Compare CANDIDATE with REFERENCE layer by layer."""
    registry = registry or default()
    for path in (reference, candidate):
        if not Path(path).exists():
            raise BadInput(f"'{path}' does not exist.", "Pass two model files, or one source with --to.")
    if progress:
        progress("start", "Running both models with every intermediate tensor exposed")
    with opened_bundle(reference) as ref_path, opened_bundle(candidate) as cand_path:
        result = _compare(ref_path, cand_path, options, registry)
    result.reference, result.candidate = reference, candidate
    if progress:
        progress("done", f"Compared {len(result.layers)} layers")
    return result


def debug_conversion(source: str, options: DebugOptions, progress: Progress | None = None,
                     registry: Registry | None = None) -> DebugResult:
    """Convert SOURCE to ONNX (the reference) and that ONNX to `options.targets[0]`, then compare."""
    from .pipeline import check_precision

    registry = registry or default()
    if len(options.targets) != 1 or options.targets[0] == "all":
        raise BadInput("debug converts to one target: --to T.", "Example: modelport debug model.pt2 --to tflite")
    target = options.targets[0]
    if target == "onnx" and options.quantize == "none":
        raise BadInput("--to onnx without --quantize gives the reference itself: there is nothing to compare.",
                       "Debug another target (--to tflite), or a quantized ONNX model (--quantize int8 ...).")
    check_precision(options, registry)
    with tempfile.TemporaryDirectory(prefix="modelport-debug-") as scratch_root:
        scratch = Path(scratch_root)
        model = load_source(source, options.load_options(), framework=options.framework, registry=registry)
        try:
            if model.format == "onnx" and not options.opset:
                onnx_path = Path(model.artifact().path)
            else:
                onnx_path = _converted(source, model, replace(options, targets=("onnx",), quantize="none"),
                                       scratch / "reference", registry, progress)
        finally:
            model.close()
        onnx_model = load_source(str(onnx_path), options.load_options(), registry=registry)
        try:
            converted = _converted(str(onnx_path), onnx_model, replace(options, opset=None), scratch / "candidate",
                                   registry, progress)
        finally:
            onnx_model.close()
        if progress:
            progress("start", "Running both models with every intermediate tensor exposed")
        result = _compare(str(onnx_path), str(converted), options, registry)
        if progress:
            progress("done", f"Compared {len(result.layers)} layers")
    result.reference = f"{source} (as ONNX)" if onnx_path.parent == scratch / "reference" else source
    result.candidate = f"{source} converted to {target}" + (f" ({options.quantize})" if options.quantize != "none" else "")
    return result


def _converted(source: str, model: Any, options: DebugOptions, out: Path, registry: Registry,
               progress: Progress | None) -> Path:
    from .pipeline import convert_loaded

    item = convert_loaded(source, model, replace(options, validate=False, simplify=False, output_dir=out),
                          progress, registry).targets[0]
    if item.path is None:
        raise BadInput(f"The model could not be converted to {item.target}: {item.error}",
                       f"See `modelport convert {source} --to {item.target}`.")
    return item.path


def _compare(reference: str, candidate: str, options: DebugOptions, registry: Registry) -> DebugResult:
    ref_spec, cand_spec = _tappable(reference, registry), _tappable(candidate, registry)
    sidecar = read_sidecar(Path(candidate))
    quantization = (sidecar or {}).get("quantization", "none")
    assert cand_spec.target is not None
    tolerance = cand_spec.target.tolerance(quantization)
    tolerance = Tolerance(options.atol if options.atol is not None else tolerance.atol,
                          options.rtol if options.rtol is not None else tolerance.rtol,
                          options.min_cosine if options.min_cosine is not None else tolerance.min_cosine)
    with open_runner(ref_spec, Path(reference), options.threads) as ref_runner, \
            open_runner(cand_spec, Path(candidate), options.threads) as cand_runner:
        feeds = sample_feeds(ref_runner, options)
        links = link_tensors(list(ref_runner.inputs), list(cand_runner.inputs), [], sidecar, "inputs")
        probe = Artifact(path=Path(candidate), format=cand_spec.name, io=IOMapping(links, ()),
                         inputs=tuple(cand_runner.inputs))
        ref_taps = [ref_runner.tap(feed) for feed in feeds]
        cand_taps = [cand_runner.tap(to_artifact_feeds(probe, feed)) for feed in feeds]
        result = DebugResult(reference, candidate, ref_runner.runtime, cand_runner.runtime, len(feeds), tolerance,
                             "recorded correspondence" if sidecar and sidecar.get("tensors") else "name and value")
    order = {t.name: i for i, t in enumerate(ref_taps[0])}
    ref_ops = {t.name: t.op for t in ref_taps[0]}
    ref_nodes = {t.name: t.node or _node_name(t.name) for t in ref_taps[0]}
    recorded = bool(sidecar and sidecar.get("tensors"))
    groups = _correspondence(sidecar, ref_taps[0], cand_taps[0])
    cand_index = {t.name: i for i, t in enumerate(cand_taps[0])}
    ref_values = {t.name: [taps[i].value for taps in ref_taps] for i, t in enumerate(ref_taps[0])}
    matched: dict[str, int] = {}  # reference tensor -> candidate position

    def add(cand_name: str, sources: list[str], how: str) -> None:
        compared = sources[-1]
        refs = ref_values[compared]
        cands = [taps[cand_index[cand_name]].value for taps in cand_taps]
        perm = _perm(refs[0], cands[0])
        if refs[0].dtype.kind != "f" or perm is None:
            return  # not a float tensor, or the same name on another tensor (no transpose explains the shapes)
        perm = None if perm == tuple(range(len(perm))) else perm
        aligned = [r.transpose(perm) if perm else r for r in refs]
        comparison = compare_output(cand_name, aligned, [c.astype(aligned[0].dtype, copy=False) for c in cands],
                                    tolerance)
        matched.update({source: cand_index[cand_name] for source in sources})
        result.layers.append(Layer(order[compared], cand_name, cand_taps[0][cand_index[cand_name]].op,
                                   ref_nodes[sources[0]], "+".join(dict.fromkeys(ref_ops[s] for s in sources)),
                                   sources, tuple(refs[0].shape), perm, comparison.max_abs_diff, comparison.cosine,
                                   comparison.snr_db, comparison.passed, comparison.reason, how))

    for cand_name, named in groups.items():
        sources = sorted((s for s in named if s in order), key=order.__getitem__)
        if sources and cand_name in cand_index:
            add(cand_name, sources, "recorded" if recorded else "name")
    if not recorded:
        for ref_name, cand_name in _by_value(ref_taps[0], cand_taps[0], matched):
            add(cand_name, [ref_name], "value")
        result.layers.sort(key=lambda layer: layer.position)
        for ref_name, cand_name in _by_position(ref_taps[0], cand_taps[0], matched, result.layers):
            add(cand_name, [ref_name], "position")
    result.layers.sort(key=lambda layer: layer.position)
    result.unmatched = sum(1 for t in ref_taps[0] if t.name not in matched and t.value.dtype.kind == "f")
    result.first_divergent = next((i for i, layer in enumerate(result.layers) if not layer.passed), None)
    return result


VALUE_MATCH_COSINE = 0.9   # the least agreement that pairs two unnamed tensors by their values
_VALUE_MATCH_PAIRS = 200_000  # past this many comparisons, unnamed tensors stay unmatched


def _by_value(reference: list[Tapped], candidate: list[Tapped], matched: dict[str, int]) -> list[tuple[str, str]]:
    """Pairs for reference tensors that no record or name matched (TFLite files from converters
    that keep no names): candidate tensors of a compatible shape whose values agree (cosine >=
    VALUE_MATCH_COSINE), one to one and in the same order in both graphs (the alignment with the
    largest total agreement), never crossing a tensor already matched by name. A tensor the
    conversion broke finds no partner and stays unmatched: its neighbours say where it is."""
    import numpy as np

    used = set(matched.values())
    pending = [(i, t) for i, t in enumerate(reference) if t.name not in matched and t.value.dtype.kind == "f"]
    free = [(j, t) for j, t in enumerate(candidate) if j not in used and t.value.dtype.kind == "f"]
    if not pending or not free or len(pending) * len(free) > _VALUE_MATCH_PAIRS:
        return []
    position = {t.name: i for i, t in enumerate(reference)}
    anchors = sorted((position[name], j) for name, j in matched.items() if name in position)
    score = np.full((len(pending), len(free)), -np.inf)
    for row, (i, ref) in enumerate(pending):
        floor = max((j for a, j in anchors if a < i), default=-1)
        ceiling = min((j for a, j in anchors if a > i), default=len(candidate))
        for col, (j, cand) in enumerate(free):
            perm = _perm(ref.value, cand.value) if floor < j < ceiling else None
            if perm is None:
                continue
            cos = _cosine(ref.value.transpose(perm), cand.value)
            if cos >= VALUE_MATCH_COSINE:
                score[row, col] = cos
    # An order-keeping alignment (as in a longest common subsequence) with the largest total score.
    rows, cols = score.shape
    best = np.zeros((rows + 1, cols + 1))
    for row in range(rows):
        for col in range(cols):
            take = best[row, col] + score[row, col] if np.isfinite(score[row, col]) else -np.inf
            best[row + 1, col + 1] = max(best[row, col + 1], best[row + 1, col], take)
    pairs: list[tuple[str, str]] = []
    row, col = rows, cols
    while row and col:
        if best[row, col] == best[row - 1, col]:
            row -= 1
        elif best[row, col] == best[row, col - 1]:
            col -= 1
        else:
            pairs.append((pending[row - 1][1].name, free[col - 1][1].name))
            row, col = row - 1, col - 1
    return pairs[::-1]


def _by_position(reference: list[Tapped], candidate: list[Tapped], matched: dict[str, int],
                 layers: list[Layer]) -> list[tuple[str, str]]:
    """Where value pairing leaves a gap right before the first failing layer (the tensors a broken
    weight corrupted find no partner by value), pair the gap's tensors in order with candidate
    tensors between the same two anchors whose shape fits. Only that gap: a model with no failing
    layer gets no positional pairs, so a tensor fused away never turns a good model red."""
    failing = next((layer for layer in layers if not layer.passed), None)
    if failing is None:
        return []
    end_ref = failing.position
    end_cand = matched[failing.source_tensors[-1]]
    before = [layer for layer in layers if layer.position < end_ref]
    start_ref = before[-1].position if before else -1
    start_cand = matched[before[-1].source_tensors[-1]] if before else -1
    used = set(matched.values())
    free = [j for j in range(start_cand + 1, end_cand) if j not in used and candidate[j].value.dtype.kind == "f"]
    pairs = []
    for ref in reference[start_ref + 1:end_ref]:
        if ref.name in matched or ref.value.dtype.kind != "f":
            continue
        fit = next((j for j in free if _perm(ref.value, candidate[j].value) is not None), None)
        if fit is None:
            continue
        pairs.append((ref.name, candidate[fit].name))
        free = [j for j in free if j > fit]
    return pairs


def _tappable(path: str, registry: Registry) -> Any:
    detected = registry.detect(path)
    spec = registry.spec(detected.spec) if detected.spec else None
    if spec is None or spec.target is None:
        raise BadInput(f"'{path}' is a {detected.format} model, which `modelport debug` cannot run layer by layer.",
                       "Compare ONNX and TFLite models, or convert first: modelport debug SOURCE --to tflite")
    return spec


def _correspondence(sidecar: dict | None, reference: list[Tapped], candidate: list[Tapped]) -> dict[str, list[str]]:
    """candidate tensor -> the reference tensors it holds: recorded by the converter, else by name."""
    recorded: dict[str, list[str]] = {}
    for entry in (sidecar or {}).get("tensors") or []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("source"), list):
            recorded[entry["name"]] = [s for s in entry["source"] if isinstance(s, str)]
    for link in (sidecar or {}).get("io", {}).get("outputs", []):  # the outputs, as validation pairs them
        if isinstance(link, dict) and isinstance(link.get("name"), str) and isinstance(link.get("source"), str):
            recorded.setdefault(link["name"], [link["source"]])
    claimed = {s for sources in recorded.values() for s in sources}
    by_name: dict[str, str] = {}
    for tapped in reference:
        by_name.setdefault(tapped.name, tapped.name)
        by_name.setdefault(onnx2tf_name(tapped.name), tapped.name)
    for tapped in reference:  # onnx2torch names a module after its node: `/conv1/Conv` -> `conv1/Conv`
        if tapped.node:
            by_name.setdefault(tapped.node.replace(".", "/").lstrip("/"), tapped.name)
    # The rest by name (graph outputs keep theirs on every path). In a QDQ model a quantized tensor
    # X is what its DequantizeLinear gives back (X_DequantizeLinear_Output): X itself may be the
    # float output of an op before a Relu the quantizer folded into the quantization range.
    dequantized = "_DequantizeLinear_Output"
    ordered = sorted(candidate, key=lambda t: not t.name.endswith(dequantized))
    for tapped in ordered:
        name = tapped.name.removesuffix(dequantized)
        source = by_name.get(name) or by_name.get(name.removesuffix(":0"))
        if tapped.name not in recorded and source is not None and source not in claimed:
            recorded[tapped.name] = [source]
            claimed.add(source)
    return recorded


def _perms(reference: tuple[int, ...], candidate: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The transposes that take the reference's shape to the candidate's: the identity, the
    channel-last one (NCHW -> NHWC) or its inverse. A 1x16x16x16 tensor fits several."""
    rank = len(reference)
    if rank != len(candidate):
        return []
    found = [tuple(range(rank))]
    if rank >= 3:
        found += [(0, *range(2, rank), 1), (0, rank - 1, *range(1, rank - 1))]
    fitting = [p for p in found if tuple(reference[i] for i in p) == tuple(candidate)]
    return list(dict.fromkeys(fitting))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    import numpy as np

    r, c = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    norms = float(np.linalg.norm(r) * np.linalg.norm(c))
    return float(np.dot(r, c)) / norms if norms else (1.0 if not r.any() and not c.any() else 0.0)


def _perm(reference: np.ndarray, candidate: np.ndarray) -> tuple[int, ...] | None:
    """The layout taking the reference tensor to the candidate's; where the shape fits several
    (equal channel and spatial sizes), the one under which the values agree most: a converter's
    own layout record has been seen to be wrong there, and a broken tensor disagrees under all."""
    fitting = _perms(reference.shape, candidate.shape)
    if len(fitting) <= 1:
        return fitting[0] if fitting else None
    return max(fitting, key=lambda p: _cosine(reference.transpose(p), candidate))


def _node_name(tensor: str) -> str:
    """The node that wrote a tensor, as exporters name them (`/conv2/Conv_output_0` -> `/conv2/Conv`)."""
    return re.sub(r"_output_\d+$", "", tensor)
