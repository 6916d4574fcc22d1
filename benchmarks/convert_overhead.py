"""Overhead of `modelport convert --to tflite` over calling the converters by hand.

Measures the wall time of `python -m modelport convert MODEL --to tflite --no-validate -o DIR`
against a "raw" script, run the same way in a fresh subprocess, that makes the calls modelport
makes for a .pt2: torch.export.load -> torch.onnx.export(dynamo=True, opset 18).save ->
onnx2tf.convert on a copy of the ONNX file. Both pay interpreter start-up and imports, so the
ratio is modelport's own cost (loading, checks, bookkeeping). Runs alternate raw / modelport,
each into a fresh temp dir; both must produce a .tflite or the benchmark exits 1.

Run:  .venv/bin/python benchmarks/convert_overhead.py [--model PATH] [--runs N]   (default N=3)
      make bench                                         (runs this and startup.py)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _timing import print_medians  # (beside this script)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "examples/tiny_classifier.pt2"

# The raw conversion. argv: model.pt2, work dir. Same calls and arguments as modelport's
# torch2onnx + onnx2tf converters, minus everything modelport adds around them.
RAW_SCRIPT = '''
import shutil, sys
from pathlib import Path
import numpy, torch, onnx2tf
import onnx2tf.onnx2tf as impl

model, work = Path(sys.argv[1]), Path(sys.argv[2])
program = torch.export.load(str(model))
args = program.example_inputs[0] if program.example_inputs else tuple(
    torch.zeros(n.meta["val"].shape, dtype=n.meta["val"].dtype)
    for n in program.graph.nodes if n.op == "placeholder" and n.name in program.graph_signature.user_inputs)
onnx_path = work / "model.onnx"
torch.onnx.export(program, tuple(args), dynamo=True, opset_version=18).save(str(onnx_path))
copy = work / "onnx2tf-input.onnx"  # onnx2tf rewrites the file it is given
shutil.copyfile(onnx_path, copy)
# No network here: stand in for onnx2tf's download of sample images (as modelport does).
impl.download_test_image_data = lambda: numpy.random.default_rng(0).uniform(0, 1, (20, 128, 128, 3)).astype(numpy.float32)
onnx2tf.convert(input_onnx_file_path=str(copy), output_folder_path=str(work / "out"), non_verbose=True,
                copy_onnx_input_output_names_to_tflite=True, output_signaturedefs=True)
'''


def resolve_model(given: str) -> Path:
    """A relative --model is taken from the current directory, else from the repo root."""
    path = Path(given)
    if not path.is_absolute() and not path.exists():
        path = ROOT / path
    if not path.is_file():
        sys.exit(f"error: model not found: {given}")
    return path.resolve()


def run(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    """Wall seconds and result of one subprocess; output is captured to keep the table readable."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return time.perf_counter() - start, proc


def check(label: str, proc: subprocess.CompletedProcess[bytes], tflites: list[Path]) -> None:
    """Fail loudly when a run errored or wrote no .tflite: its time would be meaningless."""
    if proc.returncode == 0 and tflites:
        return
    tail = proc.stdout.decode(errors="replace")[-3000:]
    print(f"FAILED: {label} (exit {proc.returncode}, .tflite files: {len(tflites)})\n{tail}", file=sys.stderr)
    sys.exit(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model to convert (default {DEFAULT_MODEL})")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side (default 3)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    model = resolve_model(args.model)

    # Same environment for both: quiet TF, and the venv's bin on PATH because onnx2tf
    # shells out to `onnxsim` (modelport adds it itself; the raw side must not be handicapped).
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")

    # Untimed warm-up: the first import of torch/tensorflow reads ~GBs from disk; without this
    # the first timed run (raw) would pay the cold page cache alone.
    subprocess.run([sys.executable, "-c", "import torch, onnx2tf, tensorflow"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    times: dict[str, list[float]] = {"raw": [], "modelport": []}
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        script = Path(tmp) / "raw_convert.py"
        script.write_text(RAW_SCRIPT)
        for i in range(args.runs):  # alternate raw / modelport, fresh dirs every run
            raw_dir = Path(tempfile.mkdtemp(prefix=f"raw{i}-", dir=tmp))
            elapsed, proc = run([sys.executable, str(script), str(model), str(raw_dir)], env)
            check("raw", proc, sorted((raw_dir / "out").glob("*_float32.tflite")))
            times["raw"].append(elapsed)

            mp_dir = Path(tempfile.mkdtemp(prefix=f"modelport{i}-", dir=tmp)) / "out"
            elapsed, proc = run([sys.executable, "-m", "modelport", "convert", str(model), "--to", "tflite",
                                 "--no-validate", "-o", str(mp_dir)], env)
            check("modelport", proc, [p for p in [mp_dir / "model.tflite"] if p.is_file()])
            times["modelport"].append(elapsed)
            print(f"run {i + 1}/{args.runs}: raw {times['raw'][-1]:.2f}s  modelport {times['modelport'][-1]:.2f}s",
                  flush=True)

    print(f"\nconvert {model.name} -> tflite (--no-validate), {args.runs} runs each")
    medians = print_medians(times)
    print(f"ratio (modelport / raw): {medians['modelport'] / medians['raw']:.2f}  (target <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
