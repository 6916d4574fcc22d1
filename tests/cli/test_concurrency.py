"""Two modelport processes on one machine never share scratch files or output paths.

Conversions run at once (the same model twice into the same default output folder, and a second
model) give the verdicts and numbers of serial runs; what is left at each shared path is a
whole artifact from one of the runs, which validates on its own. And folders placed over each
other by several processes at once land whole, from one writer, with nothing left behind.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from modelport.artifact import sha256_of
from tests.conftest import ROOT

TARGETS = "tflite,onnx,torchscript"
FILES = {"tflite": "model.tflite", "onnx": "model.onnx", "torchscript": "model.pt"}


def _convert(model: Path, cwd: Path, report: Path, output: Path | None = None) -> subprocess.Popen:
    argv = [sys.executable, "-m", "modelport", "convert", str(model), "--to", TARGETS, "--report", str(report)]
    if output is not None:
        argv += ["-o", str(output)]
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)


def _finish(process: subprocess.Popen) -> None:
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out


def _summary(report: Path) -> dict[str, tuple]:
    """target -> (status, each output's max abs diff and cosine): what must not depend on company."""
    targets = json.loads(report.read_text())["targets"]
    return {t["target"]: (t["status"], tuple((o["name"], o["max_abs_diff"], o["cosine"])
                                             for o in t["numeric"]["outputs"])) for t in targets}


def _hashes(report: Path) -> dict[str, str]:
    return {t["target"]: t["sha256"] for t in json.loads(report.read_text())["targets"]}


@pytest.mark.slow
def test_concurrent_conversions_match_serial_ones(models, tmp_path):
    first, second = models["cnn_pt2"], models["classifier_pt2"]
    serial = {}
    for name, model in (("first", first), ("second", second)):  # one after the other
        report = tmp_path / f"serial-{name}.json"
        _finish(_convert(model, tmp_path / f"serial-{name}", report, tmp_path / f"serial-{name}" / "out"))
        serial[name] = _summary(report)
        assert {status for status, _ in serial[name].values()} == {"passed"}, serial[name]

    # At once: the same model twice in one folder, into the same default output folder
    # (modelport-out/tiny_cnn), and another model beside them.
    shared = tmp_path / "shared"
    reports = [tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"]
    running = [_convert(first, shared, reports[0]), _convert(first, shared, reports[1]),
               _convert(second, shared, reports[2])]
    for process in running:
        _finish(process)
    assert _summary(reports[0]) == serial["first"]
    assert _summary(reports[1]) == serial["first"]
    assert _summary(reports[2]) == serial["second"]

    # Each shared path holds a whole artifact of one run (the last to place it), with its sidecar.
    out = shared / "modelport-out" / "tiny_cnn"
    written = [_hashes(reports[0]), _hashes(reports[1])]
    for target, name in FILES.items():
        assert sha256_of(out / name) in {w[target] for w in written}, target
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    check = subprocess.run([sys.executable, "-m", "modelport", "validate", str(first), str(out / "model.tflite")],
                           cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert check.returncode == 0, check.stdout + check.stderr
    assert (shared / "modelport-out" / "tiny_classifier" / "model.tflite").is_file()


def _place_many(tag: int, source_root: str, final: str, rounds: int, errors: "multiprocessing.Queue[str]") -> None:
    from modelport.placement import place

    source = Path(source_root) / f"folder-{tag}"
    source.mkdir()
    for index in range(8):  # a folder of several files, each naming its writer
        (source / f"part-{index}.txt").write_text(f"{tag}\n" * 200)
    (source / "variables").mkdir()
    (source / "variables" / "data").write_text(str(tag))
    try:
        for _ in range(rounds):
            place(source, Path(final))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        errors.put(f"writer {tag}: {type(exc).__name__}: {exc}")


def test_folders_placed_at_once_land_whole(tmp_path):
    """Four processes put their own SavedModel-like folder at one path, again and again: none
    fails (a folder being replaced is neither removed twice nor renamed onto), and what stays is
    one writer's complete folder, with no staging left beside it."""
    final = tmp_path / "out" / "savedmodel"
    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    writers = [context.Process(target=_place_many, args=(tag, str(tmp_path), str(final), 40, errors))
               for tag in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    assert all(writer.exitcode == 0 for writer in writers)
    tags = {p.read_text() for p in final.rglob("*") if p.is_file()}
    assert len(tags) == 1 or len({t.split()[0] for t in tags}) == 1, tags
    assert sorted(p.name for p in final.iterdir()) == [*(f"part-{i}.txt" for i in range(8)), "variables"]
    assert [p.name for p in final.parent.iterdir()] == ["savedmodel"]


def _hold_lock(folder: str, held: str, seconds: float) -> None:
    import time

    from modelport.placement import output_lock

    with output_lock(Path(folder)):
        Path(held).touch()
        time.sleep(seconds)


def test_a_target_is_placed_by_one_process_at_a_time(tmp_path):
    """While one process places a target's files (companions, model, sidecar), another waits:
    the set never mixes two runs. The lock leaves no file behind."""
    import time

    from modelport.placement import output_lock

    folder, held = tmp_path / "out", tmp_path / "held"
    holder = multiprocessing.get_context("spawn").Process(target=_hold_lock, args=(str(folder), str(held), 1.5))
    holder.start()
    deadline = time.monotonic() + 60
    while not held.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    with output_lock(folder):
        waited = time.monotonic() - started
    holder.join(timeout=60)
    assert holder.exitcode == 0
    assert waited > 0.5, waited
    assert list(folder.iterdir()) == []
