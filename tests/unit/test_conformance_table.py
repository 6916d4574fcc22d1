"""The conformance harness's bookkeeping (benchmarks/conformance.py): verdicts become outcomes, the
CSV reads back as written, and a partial re-run replaces only the targets it ran."""

from __future__ import annotations

from benchmarks.conformance import classify, merge, read_csv, summarize, write_csv


def test_verdicts_become_outcomes_with_their_reasons():
    assert classify("passed", None, "onnx2tf 2.6.9").outcome == "passed"
    wrong = classify("failed", "Output 'y' differs\nfrom the reference")
    assert (wrong.outcome, wrong.reason) == ("wrong numbers", "Output 'y' differs from the reference")
    assert classify("error", "onnx2tf failed").outcome == "conversion error"
    assert classify("skipped", "not installed").outcome == "not applicable"


def test_the_csv_reads_back_and_a_re_run_replaces_only_its_targets(tmp_path):
    rows = [{"test": "test_b", "ops": "Relu", "tflite": ["passed", "", "onnx2tf 2.6.9"],
             "torchscript": ["conversion error", "opset 23, says \"no\"", ""]},
            {"test": "test_a", "ops": "Conv", "tflite": ["wrong numbers", "max abs 3", "onnx2tf"],
             "torchscript": ["passed", "", "onnx2torch"]}]
    path = tmp_path / "c.csv"
    write_csv(rows, ("tflite", "torchscript"), path)
    assert sorted(read_csv(path), key=lambda r: r["test"]) == sorted(rows, key=lambda r: r["test"])

    fixed = merge(read_csv(path), [{"test": "test_b", "ops": "Relu", "torchscript": ["passed", "", "onnx2torch"]}])
    by_test = {r["test"]: r for r in fixed}
    assert by_test["test_b"]["torchscript"][0] == "passed" and by_test["test_b"]["tflite"][0] == "passed"
    assert by_test["test_a"] == rows[1]
    table = summarize(fixed, ("tflite", "torchscript"))
    assert "| tflite | 1 (50.0%) | 1 (50.0%) | 0 (0.0%) | 0 (0.0%) |" in table
    assert "| torchscript | 2 (100.0%) |" in table
