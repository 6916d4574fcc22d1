"""How `modelport debug` pairs intermediate tensors: recorded, by name, by value; layouts read off shapes."""

from __future__ import annotations

import numpy as np

from modelport.debug import _by_value, _correspondence, _perm, _perms
from modelport.targets.base import Tapped


def _t(name: str, value: np.ndarray, op: str = "Op") -> Tapped:
    return Tapped(name, op, value)


def test_perm_reads_the_layout_off_the_shapes_and_the_values_where_shapes_fit_several():
    assert _perms((1, 8, 4, 5), (1, 8, 4, 5)) == [(0, 1, 2, 3)]
    assert _perms((1, 8, 4, 5), (1, 4, 5, 8)) == [(0, 2, 3, 1)]
    assert _perms((1, 4, 5, 8), (1, 8, 4, 5)) == [(0, 3, 1, 2)]
    assert _perms((1, 8), (1, 9)) == [] and _perms((2, 3, 4), (4, 3, 2)) == []
    # 1x16x16x16: every layout fits the shape; the values say which one the converter wrote.
    rng = np.random.default_rng(0)
    nchw = rng.normal(size=(1, 16, 16, 16)).astype(np.float32)
    assert len(_perms(nchw.shape, nchw.shape)) == 3
    assert _perm(nchw, nchw.transpose(0, 2, 3, 1)) == (0, 2, 3, 1)
    assert _perm(nchw, nchw) == (0, 1, 2, 3)
    assert _perm(nchw, np.zeros((1, 9), np.float32)) is None


def test_recorded_correspondence_wins_then_qdq_dequantized_names_then_plain_names():
    x = np.ones((1, 2), np.float32)
    reference = [_t("/a_output_0", x), _t("/b_output_0", x), _t("y", x)]
    candidate = [_t("fused", x), _t("/b_output_0", x), _t("/b_output_0_DequantizeLinear_Output", x), _t("y", x)]
    sidecar = {"tensors": [{"name": "fused", "source": ["/a_output_0"]}],
               "io": {"outputs": [{"name": "y", "source": "y"}]}}
    assert _correspondence(sidecar, reference, candidate) == {
        "fused": ["/a_output_0"], "y": ["y"], "/b_output_0_DequantizeLinear_Output": ["/b_output_0"]}
    # onnx2tf's renaming (':' -> '__', leading '/' -> 'wa/') is undone.
    assert _correspondence(None, [_t("/c:0", x)], [_t("wa/c__0", x)]) == {"wa/c__0": ["/c:0"]}


def test_value_matching_is_one_to_one_in_graph_order_and_leaves_a_broken_tensor_unmatched():
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=(1, 3, 4, 4)).astype(np.float32) for _ in range(3))
    reference = [_t("a", a), _t("b", b), _t("c", c)]
    candidate = [_t("t0", a.transpose(0, 2, 3, 1) + 1e-3), _t("t1", -b.transpose(0, 2, 3, 1)),
                 _t("t2", c.transpose(0, 2, 3, 1)), _t("t3", a.transpose(0, 2, 3, 1))]
    pairs = _by_value(reference, candidate, matched={})
    assert ("a", "t0") in pairs and ("c", "t2") in pairs
    assert all(ref != "b" for ref, _ in pairs)  # its counterpart was broken (negated): no partner
    assert len({cand for _, cand in pairs}) == len(pairs)
    # Anchored: a tensor matched by name bounds where the others may pair (never backwards).
    assert _by_value([_t("a", a), _t("c", c)], [_t("t0", c), _t("t1", a)], matched={"c": 0}) == []
