"""Comparison metrics per output, and the pass/fail decision against a tolerance."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    min_cosine: float = 0.0
    top_k: int | None = None   # when set: the reference's top-1 class must be in the candidate's top-k


@dataclass
class OutputComparison:
    name: str
    max_abs_diff: float
    max_rel_diff: float
    mean_abs_diff: float
    cosine: float
    passed: bool
    worst_sample: int = 0
    shape_reference: tuple[int, ...] = ()
    shape_candidate: tuple[int, ...] = ()
    reason: str = ""
    within_tolerance: bool = True
    topk_agreement: float | None = None  # share of rows whose reference top-1 is in the candidate's top-k
    top_k: int | None = None
    top1_agreement: float | None = None  # class scores: share of rows whose top-1 class is the reference's
    snr_db: float | None = None          # 10 log10(sum ref^2 / sum (ref - cand)^2) over all samples; inf: exact
    # |reference - candidate| over all samples, for the HTML report's plots: {"edges": [...], "counts": [...]}
    abs_diff_histogram: dict | None = None

    def to_json(self) -> dict:
        def finite(x: float) -> float | None:  # JSON has no Infinity: a shape mismatch reads as null
            return x if math.isfinite(x) else None

        return {"name": self.name, "max_abs_diff": finite(self.max_abs_diff),
                "max_rel_diff": finite(self.max_rel_diff), "mean_abs_diff": finite(self.mean_abs_diff),
                "cosine": self.cosine, "passed": self.passed, "top_k": self.top_k,
                "topk_agreement": self.topk_agreement, "top1_agreement": self.top1_agreement,
                "snr_db": finite(round(self.snr_db, 3)) if self.snr_db is not None else None,
                "worst_sample": self.worst_sample, "reason": self.reason or None,
                "abs_diff_histogram": self.abs_diff_histogram}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    import numpy as np

    if np.array_equal(a, b):  # exact, where rounding would give 0.9999999999999998
        return 1.0
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return max(-1.0, min(1.0, float(np.dot(a, b) / (na * nb))))


HISTOGRAM_FLOOR = 1e-12
HISTOGRAM_BINS = 30


def abs_diff_histogram(diffs: list[np.ndarray], bins: int = HISTOGRAM_BINS) -> dict | None:
    """Log-spaced histogram of absolute differences from HISTOGRAM_FLOOR to their max. Differences
    below the floor (exact matches included) count in the first bin: a log axis has no zero."""
    import numpy as np

    if not diffs or not any(d.size for d in diffs):
        return None
    top = max(float(d.max()) for d in diffs if d.size)
    # An all-equal output still gets a valid range one decade wide rather than zero-width bins.
    edges = np.geomspace(HISTOGRAM_FLOOR, max(top, HISTOGRAM_FLOOR * 10), bins + 1)
    counts = np.zeros(bins, dtype=np.int64)
    for d in diffs:  # per sample, so no concatenated copy of every output
        if d.size:
            counts += np.histogram(np.clip(d, edges[0], edges[-1]), bins=edges)[0]
    return {"edges": [float(f"{e:.6g}") for e in edges], "counts": [int(c) for c in counts]}


def compare_output(name: str, references: list[np.ndarray], candidates: list[np.ndarray],
                   tolerance: Tolerance) -> OutputComparison:
    """Compare one output over all samples; the result holds the worst sample's numbers."""
    import numpy as np

    result = OutputComparison(name, 0.0, 0.0, 0.0, 1.0, True)
    abs_sum, count = 0.0, 0
    signal, noise = 0.0, 0.0
    diffs: list[np.ndarray] = []
    for index, (ref, cand) in enumerate(zip(references, candidates)):
        ref = np.asarray(ref)
        cand = np.asarray(cand)
        if ref.shape != cand.shape:
            return OutputComparison(name, float("inf"), float("inf"), float("inf"), 0.0, False, index,
                                    ref.shape, cand.shape,
                                    f"shape {tuple(cand.shape)} differs from the reference's {tuple(ref.shape)}")
        r = ref.astype(np.float64).ravel()
        c = cand.astype(np.float64).ravel()
        if r.size == 0:
            continue
        if not (np.isfinite(r).all() and np.isfinite(c).all()):
            same_nonfinite = np.array_equal(np.isnan(r), np.isnan(c)) and np.array_equal(r[np.isinf(r)], c[np.isinf(c)])
            if not same_nonfinite:
                return OutputComparison(name, float("inf"), float("inf"), float("inf"), 0.0, False, index,
                                        ref.shape, cand.shape, "NaN or Inf where the reference has none")
            finite = np.isfinite(r)
            r, c = r[finite], c[finite]
        diff = np.abs(r - c)
        diffs.append(diff)
        signal += float(np.dot(r, r))
        noise += float(np.dot(diff, diff))
        max_abs = float(diff.max()) if diff.size else 0.0
        max_rel = float((diff / np.maximum(np.abs(r), 1e-12)).max()) if diff.size else 0.0
        cos = _cosine(r, c)
        abs_sum += float(diff.sum())
        count += diff.size
        within = bool(np.all(diff <= tolerance.atol + tolerance.rtol * np.abs(r)))
        ok = within and cos >= tolerance.min_cosine
        result.within_tolerance = result.within_tolerance and within
        if max_abs > result.max_abs_diff or (not ok and result.passed):
            result.worst_sample = index
        result.max_abs_diff = max(result.max_abs_diff, max_abs)
        result.max_rel_diff = max(result.max_rel_diff, max_rel)
        result.cosine = min(result.cosine, cos)
        result.passed = result.passed and ok
        result.shape_reference, result.shape_candidate = tuple(ref.shape), tuple(cand.shape)
    result.mean_abs_diff = abs_sum / count if count else 0.0
    if count:
        result.snr_db = float("inf") if noise == 0.0 else 10 * math.log10(max(signal, 1e-300) / noise)
    result.abs_diff_histogram = abs_diff_histogram(diffs)
    if not result.passed and not result.reason:
        result.reason = (f"cosine {result.cosine:.6f} < {tolerance.min_cosine}" if result.within_tolerance else
                         f"max abs diff {result.max_abs_diff:.3g} > atol {tolerance.atol:g} + rtol {tolerance.rtol:g}")
    if looks_like_scores(references):
        result.top1_agreement = topk_agreement(references, candidates, 1)
    k = tolerance.top_k or (5 if looks_like_scores(references) else None)
    if k:
        result.top_k = k
        result.topk_agreement = topk_agreement(references, candidates, k)
        if tolerance.top_k and result.topk_agreement < 1.0:
            if result.passed:
                result.reason = (f"top-{k} agreement {result.topk_agreement:.3f}: the reference's top class is not "
                                 f"in the candidate's top {k} for every row")
            result.passed = False
    return result


def looks_like_scores(references: list[np.ndarray]) -> bool:
    """Class scores: a float [N, C] (or [C]) output with at least 2 classes."""
    first = references[0]
    return first.dtype.kind == "f" and first.ndim in (1, 2) and first.shape[-1] >= 2


def topk_agreement(references: list[np.ndarray], candidates: list[np.ndarray], k: int) -> float:
    import numpy as np

    hits, rows = 0, 0
    for ref, cand in zip(references, candidates):
        ref2 = np.asarray(ref).reshape(-1, np.asarray(ref).shape[-1])
        cand2 = np.asarray(cand).reshape(-1, np.asarray(cand).shape[-1])
        if ref2.shape != cand2.shape:
            return 0.0
        k_eff = min(k, ref2.shape[-1])
        top1 = ref2.argmax(-1)
        topk = np.argsort(-cand2, axis=-1)[:, :k_eff]
        hits += int((topk == top1[:, None]).any(-1).sum())
        rows += ref2.shape[0]
    return hits / rows if rows else 1.0
