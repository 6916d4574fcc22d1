import numpy as np

from modelport.validators.compare import Tolerance
from modelport.validators.compare import compare_output
from modelport.validators.data import concrete_shape, make_feeds
from modelport.spec import TensorSpec, InputRange

TOL = Tolerance(1e-4, 1e-3)


def test_identical_outputs_pass_with_zero_diff():
    a = np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 12)
    result = compare_output("y", [a], [a.copy()], TOL)
    assert result.passed and result.max_abs_diff == 0.0 and result.cosine == 1.0


def test_out_of_tolerance_names_the_worst_sample():
    a = np.ones((4,), np.float32)
    samples_ref = [a, a, a]
    samples_out = [a, a + 0.5, a + 1e-6]
    result = compare_output("probs", samples_ref, samples_out, TOL)
    assert not result.passed
    assert result.worst_sample == 1
    assert abs(result.max_abs_diff - 0.5) < 1e-6
    assert "max abs diff 0.5" in result.reason


def test_shape_mismatch_fails_with_both_shapes():
    result = compare_output("y", [np.zeros((1, 3))], [np.zeros((3, 1))], TOL)
    assert not result.passed and "(3, 1)" in result.reason and "(1, 3)" in result.reason
    assert result.to_json()["max_abs_diff"] is None  # JSON has no Infinity


def test_nan_in_candidate_fails():
    result = compare_output("y", [np.zeros(3)], [np.array([0.0, np.nan, 0.0])], TOL)
    assert not result.passed and "NaN" in result.reason


def test_min_cosine_is_enforced():
    ref = np.array([1.0, 0.0])
    out = np.array([0.0, 1.0])
    assert not compare_output("y", [ref], [out], Tolerance(10.0, 0.0, min_cosine=0.9)).passed


def test_seeded_feeds_are_reproducible_and_respect_ranges():
    specs = [TensorSpec("x", ("batch", 3, 8), "float32"), TensorSpec("ids", (1, 5), "int64"),
             TensorSpec("attention_mask", (1, 5), "int64")]
    first = make_feeds(specs, seed=3, sample=1, ranges={"ids": InputRange("ids", 100, 200)})
    again = make_feeds(specs, seed=3, sample=1, ranges={"ids": InputRange("ids", 100, 200)})
    other = make_feeds(specs, seed=3, sample=2)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["x"], other["x"])
    assert first["x"].shape == (1, 3, 8) and first["x"].dtype == np.float32
    assert first["ids"].min() >= 100 and first["ids"].max() < 200 and first["ids"].dtype == np.int64
    assert set(np.unique(first["attention_mask"])) <= {0, 1}
    assert concrete_shape(TensorSpec("t", ("batch", "seq"))) == (1, 8)
