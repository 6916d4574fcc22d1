"""ONNX conformance per target: every ONNX backend node test of the installed onnx wheel whose
inputs are float32 and which onnxruntime itself reproduces, through `modelport convert --to
tflite,savedmodel,torchscript,tfjs,ort --inputs TEST/test_data_set_0`, each target validated on its
own runtime against the source on onnxruntime (which, by eligibility, matches the test's expected
outputs within atol 1e-4, rtol 1e-3).

Each shard is one process with one warm model worker, so TensorFlow and torch are imported once per
shard, not once per test. Writes a CSV (test, ops, then per target: passed / wrong numbers /
conversion error / not applicable, and the reason) and prints the per-target summary, which
`--readme` writes between the conformance markers of README.md.

Run:  make conformance                       (every eligible test, 2 shards, writes the CSV and README table)
      .venv/bin/python benchmarks/conformance.py --sample 40 --seed 0 --targets tflite --converter onnx2tf2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("tflite", "savedmodel", "torchscript", "tfjs", "ort")
OUTCOMES = ("passed", "wrong numbers", "conversion error", "not applicable")
README_START, README_END = "<!-- conformance:start -->", "<!-- conformance:end -->"


def node_test_root() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"


def is_eligible(folder: Path) -> bool:
    """float32 inputs only, and onnxruntime reproduces the test's expected outputs."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    try:
        model = onnx.load(str(folder / "model.onnx"))
        data = folder / "test_data_set_0"
        inputs = [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in sorted(data.glob("input_*.pb"))]
        expected = [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in sorted(data.glob("output_*.pb"))]
        initializers = {t.name for t in model.graph.initializer}
        graph_inputs = [i for i in model.graph.input if i.name not in initializers]
        if not inputs or len(inputs) != len(graph_inputs) or any(a.dtype != np.float32 for a in inputs):
            return False
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        got = session.run(None, {i.name: a for i, a in zip(session.get_inputs(), inputs)})
        return len(got) == len(expected) and all(
            g.shape == e.shape and g.dtype == e.dtype and np.allclose(g, e, atol=1e-4, rtol=1e-3)
            for g, e in zip(got, expected))
    except Exception:  # noqa: BLE001 - a test onnxruntime cannot run is not eligible
        return False


def eligible_tests(sample: int | None = None, seed: int = 0, names: list[str] | None = None) -> list[Path]:
    root = node_test_root()
    tests = sorted(p for p in root.iterdir() if (p / "model.onnx").exists())
    if names:
        wanted = set(names)
        tests = [p for p in tests if p.name in wanted]
    if sample is not None:
        random.Random(seed).shuffle(tests)
    chosen = []
    for folder in tests:
        if is_eligible(folder):
            chosen.append(folder)
            if sample is not None and len(chosen) == sample:
                break
    return sorted(chosen)


@dataclass
class Outcome:
    outcome: str         # one of OUTCOMES
    reason: str = ""
    converter: str = ""  # the converter that wrote the artifact (where one was written)


def classify(status: str, message: str | None, converter: str = "") -> Outcome:
    """A target's verdict as a conformance outcome."""
    reason = " ".join((message or "").split())[:300]
    kind = {"passed": "passed", "failed": "wrong numbers", "skipped": "not applicable"}.get(status, "conversion error")
    return Outcome(kind, "" if kind == "passed" else reason, converter)


def ops_of(folder: Path) -> str:
    import onnx

    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    return "+".join(dict.fromkeys(n.op_type for n in model.graph.node))


def run_test(folder: Path, targets: tuple[str, ...], converters: tuple[str, ...],
             timeout: float) -> dict[str, Outcome]:
    """One node test through `convert` to every target in one call (targets share intermediates)."""
    from modelport import api
    from modelport.errors import BadInput, ModelportError

    with tempfile.TemporaryDirectory(prefix="conformance-") as out:
        options = api.ConvertOptions(targets=targets, converters=converters, output_dir=Path(out) / "out",
                                     sample_inputs=folder / "test_data_set_0", timeout=timeout)
        try:
            result = api.convert(str(folder / "model.onnx"), options)
        except BadInput as exc:  # refused before converting: the model is outside what modelport takes
            return {t: Outcome("not applicable", exc.one_line()) for t in targets}
        except ModelportError as exc:
            return {t: Outcome("conversion error", exc.one_line()) for t in targets}
    return {item.target: classify(item.status, item.error,
                                  str(item.artifact.extra.get("converter", "")) if item.artifact else "")
            for item in result.targets}


def run_shard(tests: list[Path], targets: tuple[str, ...], converters: tuple[str, ...], timeout: float,
              rows_file: Path) -> None:
    """Append one JSON line per test to rows_file (so an interrupted run keeps what it did)."""
    with rows_file.open("a") as sink:
        for folder in tests:
            started = time.perf_counter()
            try:
                outcomes = run_test(folder, targets, converters, timeout)
            except Exception as exc:  # noqa: BLE001 - the harness keeps going; the row says what broke
                outcomes = {t: Outcome("conversion error", f"{type(exc).__name__}: {exc}"[:300]) for t in targets}
            row = {"test": folder.name, "ops": ops_of(folder), "seconds": round(time.perf_counter() - started, 1),
                   **{t: [o.outcome, o.reason, o.converter] for t, o in outcomes.items()}}
            sink.write(json.dumps(row) + "\n")
            sink.flush()


def summarize(rows: list[dict], targets: tuple[str, ...]) -> str:
    lines = ["| target | passed | wrong numbers | conversion error | not applicable |",
             "|---|---|---|---|---|"]
    for target in targets:
        counts = Counter(row[target][0] for row in rows if target in row)
        total = sum(counts.values())
        cells = [f"{counts[o]} ({100 * counts[o] / total:.1f}%)" if total else "0" for o in OUTCOMES]
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows: list[dict], targets: tuple[str, ...], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as sink:
        writer = csv.writer(sink)
        writer.writerow(["test", "ops", *(c for t in targets for c in (t, f"{t}_reason", f"{t}_converter"))])
        for row in sorted(rows, key=lambda r: r["test"]):
            writer.writerow([row["test"], row["ops"],
                             *(c for t in targets for c in (row.get(t, []) + ["", "", ""])[:3])])


def read_csv(path: Path) -> list[dict]:
    """Rows as run_shard writes them, from a CSV write_csv wrote."""
    with path.open(newline="") as source:
        table = list(csv.DictReader(source))
    targets = [c for c in (table[0] if table else {}) if c not in ("test", "ops") and "_" not in c]
    return [{"test": r["test"], "ops": r["ops"],
             **{t: [r[t], r[f"{t}_reason"], r.get(f"{t}_converter", "")] for t in targets if r[t]}} for r in table]


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """OLD with the targets NEW ran replaced, test by test (a partial re-run after a fix)."""
    by_test = {row["test"]: dict(row) for row in old}
    for row in new:
        by_test.setdefault(row["test"], {}).update(row)
    return list(by_test.values())


ONNX2TF2_COLUMN = "tflite@onnx2tf2"  # a TFLite pass counted only where onnx2tf 2.x wrote the file


def column_outcome(row: dict, column: str) -> tuple[str, str]:
    """A CSV row's outcome and reason in one column of the CI table (TARGETS plus ONNX2TF2_COLUMN)."""
    if column != ONNX2TF2_COLUMN:
        outcome, reason = row.get(column, ["", ""])[:2]
        return outcome, reason
    outcome, reason, converter = (row.get("tflite", []) + ["", "", ""])[:3]
    if outcome == "passed" and not converter.startswith("onnx2tf 2."):
        return "fallback", f"onnx2tf 2.x cannot; written by {converter or 'another converter'}"
    return outcome, reason


def write_expected(path: Path, rows: list[dict]) -> list[str]:
    """Rewrite the expected failures of the CI table in PATH (tests/e2e/conformance_expected.toml)
    from the CSV's rows, for the subset PATH lists; its header and subset stay. Returns the subset
    tests the CSV has no row for."""
    import tomllib

    text = path.read_text()
    subset = tomllib.loads(text)["subset"]
    by_test = {row["test"]: row for row in rows}
    head = text[:text.index("[expected_failures")] if "[expected_failures" in text else text.rstrip() + "\n\n"
    sections = []
    for column in (*TARGETS, ONNX2TF2_COLUMN):
        lines = [f'[expected_failures."{column}"]' if "@" in column else f"[expected_failures.{column}]"]
        for name in subset:
            outcome, reason = column_outcome(by_test[name], column) if name in by_test else ("passed", "")
            if outcome != "passed":
                lines.append(f"{name} = {json.dumps(f'{outcome}: {reason}'[:260])}")
        sections.append("\n".join(lines))
    path.write_text(head + "\n\n".join(sections) + "\n")
    return [name for name in subset if name not in by_test]


def update_readme(summary: str, header: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    readme.write_text(text[:start] + "\n" + header + "\n\n" + summary + "\n" + text[end:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--converter", default="", help="comma-separated --converter names (e.g. onnx2tf2)")
    parser.add_argument("--sample", type=int, help="a seeded sample of this many eligible tests")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tests", default="", help="comma-separated node test names")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per test")
    parser.add_argument("--csv", type=Path, default=ROOT / "benchmarks" / "results" / "conformance.csv")
    parser.add_argument("--readme", action="store_true", help="write the summary into README.md")
    parser.add_argument("--update", action="store_true",
                        help="re-run only these tests and targets and merge them into the existing --csv")
    parser.add_argument("--failing", default="",
                        help="with --update: only the tests the existing --csv records as not passing on this target")
    parser.add_argument("--expected", type=Path,
                        help="only rewrite this CI table's expected failures (conformance_expected.toml) from --csv")
    parser.add_argument("--shard", help=argparse.SUPPRESS)      # internal: K/N,rows.jsonl,tests.json
    args = parser.parse_args()
    targets = tuple(t for t in args.targets.split(",") if t)
    converters = tuple(c for c in args.converter.split(",") if c)
    if args.shard:
        rows_file, tests_file = args.shard.split(",")
        run_shard([Path(p) for p in json.loads(Path(tests_file).read_text())], targets, converters,
                  args.timeout, Path(rows_file))
        return 0

    if args.expected:
        missing = write_expected(args.expected, read_csv(args.csv))
        if missing:
            print(f"{len(missing)} subset tests have no row in {args.csv}: {', '.join(missing[:5])}", file=sys.stderr)
        return 1 if missing else 0

    started = time.perf_counter()
    names = [t for t in args.tests.split(",") if t]
    old_rows = read_csv(args.csv) if args.update else []
    if args.failing:
        names = [r["test"] for r in old_rows if r.get(args.failing, ["passed"])[0] != "passed"]
    tests = eligible_tests(args.sample, args.seed, names or None)
    total = len(list(node_test_root().glob("*/model.onnx")))
    print(f"{len(tests)} eligible node tests of {total} (onnx {_onnx_version()}); targets {', '.join(targets)}"
          + (f"; --converter {args.converter}" if converters else ""), flush=True)
    with tempfile.TemporaryDirectory(prefix="conformance-") as work:
        shards = []
        for k in range(args.jobs):  # round-robin: slow ops (RNNs, big convs) spread over the shards
            tests_file, rows_file = Path(work) / f"tests{k}.json", Path(work) / f"rows{k}.jsonl"
            tests_file.write_text(json.dumps([str(p) for p in tests[k::args.jobs]]))
            rows_file.touch()
            shards.append((rows_file, subprocess.Popen(
                [sys.executable, __file__, "--targets", ",".join(targets), "--converter", args.converter,
                 "--timeout", str(args.timeout), "--shard", f"{rows_file},{tests_file}"],
                env={**os.environ, "PYTHONPATH": str(ROOT)})))
        shown = 0.0
        while any(p.poll() is None for _, p in shards):
            time.sleep(2)
            if time.perf_counter() - shown >= 30:  # a line per half minute: runs take tens of minutes
                shown = time.perf_counter()
                done = sum(len(r.read_text().splitlines()) for r, _ in shards)
                print(f"  {done}/{len(tests)} tests, {shown - started:.0f} s", flush=True)
        rows = [json.loads(line) for r, _ in shards for line in r.read_text().splitlines()]
    ran, ran_on = len(rows), targets
    if args.update:
        rows = merge(old_rows, rows)
        targets = tuple(t for t in TARGETS if any(t in row for row in rows))
    write_csv(rows, targets, args.csv)
    summary = summarize(rows, targets)
    took = f"{time.perf_counter() - started:.0f} s on {args.jobs} shards"
    header = (f"{len(rows)} eligible ONNX node tests (onnx {_onnx_version()}), "
              + (f"merged with a re-run of {ran} tests on {', '.join(ran_on)} ({took})" if args.update else took)
              + (f", --converter {args.converter}" if converters else "") + f"; per test: `{args.csv.name}`.")
    print(header + "\n\n" + summary)
    if args.readme:
        update_readme(summary, header)
    return 0 if ran == len(tests) else 1


def _onnx_version() -> str:
    import onnx

    return onnx.__version__


if __name__ == "__main__":
    sys.exit(main())
