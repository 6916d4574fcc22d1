"""Wall time of a validated `modelport convert X.pt --to all` against the raw tools run one after
another, unvalidated, on the same small ResNet-style TorchScript model.

The model (3 residual blocks, 1x3x64x64, seeded) is built here into a temp dir. The raw side is a
script in a fresh subprocess making the calls modelport's converters make for a TorchScript
source, in the order `--to all` plans them (see `modelport convert X.pt --to all --explain`):

    onnx         torch.jit.load -> torch.onnx.export(dynamo=False, opset 17)
    tflite       onnx2tf 2.x (flatbuffer_direct) on a copy, in the onnx2tf2 toolchain's Python
    torchscript  a copy of the file (modelport's edge copies a TorchScript source)
    savedmodel   onnx2tf 1.29 on a copy (in this process: TensorFlow is imported once)
    tfjs         tensorflowjs' convert_tf_saved_model on that SavedModel
    ort          onnxruntime.tools' convert_onnx_models_to_ort (Fixed)
    executorch   (not made: a TorchScript file cannot be torch.exported; modelport says so)

The modelport side is `python -m modelport convert X.pt --input x:1x3x64x64 --to all -o DIR`,
validated (every target run on its own runtime against the source). Runs alternate raw /
modelport, each into a fresh dir; each side must produce every file or the benchmark exits 1.
Prints the median wall times and their ratio (goal: <= 1.3).

Run:  .venv/bin/python benchmarks/to_all.py [--runs N]   (default N=3)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _timing import print_medians  # (beside this script)

ROOT = Path(__file__).resolve().parent.parent
GOAL = 1.3

BUILD_SCRIPT = '''
import sys
import torch
from torch import nn

torch.manual_seed(0)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.b2(self.c2(torch.relu(self.b1(self.c1(x))))))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(Block(16), Block(16), Block(16))
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


model = Net().eval()
for bn in model.modules():  # non-trivial BatchNorm statistics, so the folding is exercised
    if isinstance(bn, nn.BatchNorm2d):
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
torch.jit.save(torch.jit.trace(model, torch.randn(1, 3, 64, 64)), sys.argv[1])
'''

# onnx2tf 2.x as modelport's onnx2tf2 edge calls it, inside that toolchain's Python.
# argv: model.onnx (a copy), output folder.
ONNX2TF2_SCRIPT = '''
import sys
import numpy as np
from onnx2tf import onnx2tf as impl
impl.download_test_image_data = lambda: np.random.default_rng(0).uniform(0, 1, (20, 128, 128, 3)).astype(np.float32)
impl.convert(input_onnx_file_path=sys.argv[1], output_folder_path=sys.argv[2], tflite_backend="flatbuffer_direct",
             non_verbose=True, copy_onnx_input_output_names_to_tflite=True, output_signaturedefs=True)
'''

# The raw conversion. argv: model.pt, work dir, onnx2tf2 toolchain python, onnx2tf2 script.
RAW_SCRIPT = '''
import shutil, subprocess, sys, types
from pathlib import Path
import numpy, torch

model, work, chain_python, chain_script = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
x = torch.from_numpy(numpy.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(numpy.float32))

# onnx
module = torch.jit.load(str(model), map_location="cpu").eval()
onnx_path = work / "model.onnx"
torch.onnx.export(module, (x,), str(onnx_path), input_names=["x"], output_names=["output"], opset_version=17,
                  dynamo=False)

# tflite: onnx2tf 2.x in its toolchain (a copy: it rewrites its input)
(work / "tflite-in").mkdir()
shutil.copyfile(onnx_path, work / "tflite-in" / "model.onnx")
subprocess.run([chain_python, "-I", chain_script, str(work / "tflite-in" / "model.onnx"), str(work / "tflite")],
               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)

# torchscript
shutil.copyfile(model, work / "model.pt")

# savedmodel: onnx2tf 1.29 (a copy)
import onnx2tf
import onnx2tf.onnx2tf as impl
impl.download_test_image_data = lambda: numpy.random.default_rng(0).uniform(0, 1, (20, 128, 128, 3)).astype(numpy.float32)
shutil.copyfile(onnx_path, work / "onnx2tf-input.onnx")
onnx2tf.convert(input_onnx_file_path=str(work / "onnx2tf-input.onnx"), output_folder_path=str(work / "saved"),
                non_verbose=True, copy_onnx_input_output_names_to_tflite=True, output_signaturedefs=True)

# tfjs, from that SavedModel (tensorflowjs imports TF-DF only to register its ops)
sys.modules.setdefault("tensorflow_decision_forests", types.ModuleType("tensorflow_decision_forests"))
from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs_convert
tfjs_convert.convert_tf_saved_model(str(work / "saved"), str(work / "tfjs"), signature_def="serving_default",
                                    use_structured_outputs_names=True)

# ort
from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort
(work / "ort-in").mkdir()
shutil.copyfile(onnx_path, work / "ort-in" / "model.onnx")
convert_onnx_models_to_ort(work / "ort-in" / "model.onnx", output_dir=work / "ort",
                           optimization_styles=[OptimizationStyle.Fixed])
'''


def raw_products(work: Path) -> list[Path]:
    return [work / "model.onnx", *sorted((work / "tflite").glob("*_float32.tflite"))[:1], work / "model.pt",
            work / "saved" / "saved_model.pb", work / "tfjs" / "model.json", work / "ort" / "model.ort"]


TARGETS = ("onnx", "tflite", "torchscript", "savedmodel", "tfjs", "ort")


def run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    """Wall seconds and result of one subprocess; output is captured to keep the table readable."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return time.perf_counter() - start, proc


def fail(label: str, proc: subprocess.CompletedProcess[bytes], why: str) -> None:
    tail = proc.stdout.decode(errors="replace")[-3000:]
    print(f"FAILED: {label} (exit {proc.returncode}): {why}\n{tail}", file=sys.stderr)
    sys.exit(1)


def check_raw(proc: subprocess.CompletedProcess[bytes], work: Path) -> None:
    missing = [str(p.relative_to(work)) for p in raw_products(work) if not p.is_file()]
    if proc.returncode != 0 or missing or len(raw_products(work)) < 6:
        fail("raw", proc, f"missing {missing or 'the tflite file'}")


def check_modelport(proc: subprocess.CompletedProcess[bytes], report: Path) -> dict[str, float]:
    """Every target passed (executorch: the known refusal of a TorchScript file); its seconds."""
    if not report.is_file():
        fail("modelport", proc, "no report")
    targets = {t["target"]: t for t in json.loads(report.read_text())["targets"]}
    bad = [f"{name}: {targets.get(name, {}).get('status')}" for name in TARGETS
           if targets.get(name, {}).get("status") != "passed"]
    executorch = targets.get("executorch")
    if executorch and executorch["status"] != "passed" and "TorchScript" not in json.dumps(executorch):
        bad.append(f"executorch: {executorch['status']}")
    if bad:
        fail("modelport", proc, "; ".join(bad))
    return {name: (t.get("conversion") or {}).get("seconds") or 0.0 for name, t in targets.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each side (default 3)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    sys.path.insert(0, str(ROOT))
    from modelport import toolchains  # only to find the onnx2tf2 toolchain's Python

    problem = toolchains.problem("onnx2tf2", "for this benchmark")
    if problem is not None:
        sys.exit(f"error: {problem.message} {problem.hint}")
    chain_python = str(toolchains.get("onnx2tf2").interpreter)

    # Same environment for both: quiet TF, oneDNN rewrites off (tensorflowjs needs it; modelport
    # sets it for the TF it imports), and the venv's bin on PATH (onnx2tf runs `onnxsim`).
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")

    times: dict[str, list[float]] = {"raw": [], "modelport": []}
    per_target: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        base = Path(tmp)
        model = base / "resnet.pt"
        subprocess.run([sys.executable, "-c", BUILD_SCRIPT, str(model)], env=env, check=True)
        (base / "raw.py").write_text(RAW_SCRIPT)
        (base / "onnx2tf2.py").write_text(ONNX2TF2_SCRIPT)
        # Untimed warm-up: the first import of torch/tensorflow reads ~GBs from disk.
        subprocess.run([sys.executable, "-c", "import torch, onnx2tf, tensorflow, tensorflowjs"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i in range(args.runs):  # alternate raw / modelport, fresh dirs every run
            raw_dir = Path(tempfile.mkdtemp(prefix=f"raw{i}-", dir=base))
            elapsed, proc = run([sys.executable, str(base / "raw.py"), str(model), str(raw_dir), chain_python,
                                 str(base / "onnx2tf2.py")], env, raw_dir)
            check_raw(proc, raw_dir)
            times["raw"].append(elapsed)

            mp_dir = Path(tempfile.mkdtemp(prefix=f"modelport{i}-", dir=base))
            report = mp_dir / "report.json"
            elapsed, proc = run([sys.executable, "-m", "modelport", "convert", str(model), "--input", "x:1x3x64x64",
                                 "--to", "all", "-o", str(mp_dir / "out"), "--report", str(report)], env, mp_dir)
            per_target.append(check_modelport(proc, report))
            times["modelport"].append(elapsed)
            print(f"run {i + 1}/{args.runs}: raw {times['raw'][-1]:.2f}s  modelport {times['modelport'][-1]:.2f}s",
                  flush=True)

    print(f"\nconvert a ResNet-style TorchScript model --to all ({', '.join(TARGETS)}), {args.runs} runs each")
    medians = print_medians(times)
    print("modelport's per-target seconds (conversion, median): " + ", ".join(
        f"{name} {statistics.median(run[name] for run in per_target):.1f}" for name in per_target[0]))
    ratio = medians["modelport"] / medians["raw"]
    print(f"ratio (modelport validated / raw unvalidated): {ratio:.2f}  (goal <= {GOAL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
