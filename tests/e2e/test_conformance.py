"""ONNX backend node tests through every target, in CI, against an explicit list of expected
failures (`conformance_expected.toml`): a listed failure that starts passing fails the run until
the list is updated, and an unlisted failure fails it with its reason.

Each node test converts once to all targets (they share intermediates) on the warm model worker,
with the test's own inputs, and each target is validated on its own runtime. `tflite@onnx2tf2`
is the TFLite result counted only where onnx2tf 2.x (its toolchain) wrote the file: the planner
prefers that edge, so this column shows what the 2.x edge converts on its own."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from benchmarks.conformance import ONNX2TF2_COLUMN, TARGETS, Outcome, node_test_root, run_test

EXPECTED = tomllib.loads((Path(__file__).with_name("conformance_expected.toml")).read_text())
SUBSET: list[str] = EXPECTED["subset"]
FAILURES: dict[str, dict[str, str]] = EXPECTED["expected_failures"]
ONNX2TF2 = ONNX2TF2_COLUMN
COLUMNS = (*TARGETS, ONNX2TF2)


def test_the_expected_failure_list_names_only_subset_tests_and_known_targets():
    assert set(FAILURES) <= set(COLUMNS), set(FAILURES) - set(COLUMNS)
    for column, listed in FAILURES.items():
        assert set(listed) <= set(SUBSET), f"{column}: {set(listed) - set(SUBSET)} are not in the subset"
        assert all(reason.strip() for reason in listed.values()), f"{column}: every expected failure needs a reason"
    assert len(SUBSET) == len(set(SUBSET))
    assert all((node_test_root() / name / "model.onnx").exists() for name in SUBSET)


def _columns(outcomes: dict[str, Outcome]) -> dict[str, Outcome]:
    tflite = outcomes["tflite"]
    by_2x = tflite.outcome == "passed" and tflite.converter.startswith("onnx2tf 2.")
    return {**outcomes, ONNX2TF2: tflite if by_2x or tflite.outcome != "passed"
            else Outcome("conversion error", f"written by {tflite.converter or 'another converter'}, not onnx2tf 2.x",
                         tflite.converter)}


@pytest.mark.slow
@pytest.mark.parametrize("name", SUBSET)
def test_node_test_through_every_target(name: str):
    outcomes = _columns(run_test(node_test_root() / name, TARGETS, (), timeout=300.0))
    surprises = []
    for column in COLUMNS:
        got, expected_failure = outcomes[column], FAILURES.get(column, {}).get(name)
        if got.outcome == "passed" and expected_failure:
            surprises.append(f"{column}: now passes; remove it from expected_failures.{column} "
                             f"(listed: {expected_failure})")
        elif got.outcome != "passed" and not expected_failure:
            surprises.append(f"{column}: {got.outcome}: {got.reason}")
    assert not surprises, f"{name}:\n" + "\n".join(surprises)
