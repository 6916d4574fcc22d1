"""A zoo of small models through `modelport check`: serial, `--jobs 2`, a local Ray, warm cache.

Builds N models (default 100) spread over the six sources: PyTorch (.pt2), ONNX, Keras
(.keras), TensorFlow SavedModel, TFLite and JAX (a `file.py:fn` entry point, each in its own
folder), each a small MLP or CNN with its own seed and width, plus one corrupt file, and writes
one modelport.toml checking each to `onnx` (converted, then validated on onnxruntime against the
source on its own runtime). Then times, in one run and on the same machine:

    serial   modelport check --jobs 1 --no-cache
    jobs     modelport check --jobs J --cache DIR      (J = --jobs, default 2; fills the cache)
    ray      modelport check --executor ray --jobs J --no-cache
    warm     modelport check --jobs J --cache DIR      (every model a cache hit)

and prints the wall times, the ratios against the goals, and each run's verdicts, which must
agree (the corrupt model is the one error row; its exit code is the run's).

Run:  .venv/bin/python benchmarks/zoo.py [--models N] [--jobs J] [--skip-ray] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("torch", "onnx", "keras", "savedmodel", "tflite", "jax")
GOALS = {"jobs / serial": 0.6, "ray / jobs": 1.2, "warm / serial": 0.05}

BUILD_SCRIPT = r'''
import json, sys
from pathlib import Path
import numpy as np

out, plan = Path(sys.argv[1]), json.loads(sys.argv[2])
entries = []

def torch_model(seed, width, cnn):
    import torch
    torch.manual_seed(seed)
    if cnn:
        model = torch.nn.Sequential(torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.ReLU(),
                                    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(width, 5))
        return model.eval(), (torch.randn(1, 3, 16, 16),)
    model = torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.Tanh(), torch.nn.Linear(width, 4))
    return model.eval(), (torch.randn(1, 8),)

def keras_model(seed, width, cnn):
    import keras
    keras.utils.set_random_seed(seed)
    if cnn:
        x = keras.Input((16, 16, 3), name="image")
        h = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
        y = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(h))
    else:
        x = keras.Input((8,), name="x")
        y = keras.layers.Dense(4)(keras.layers.Dense(width, activation="tanh")(x))
    return keras.Model(x, y)

for index, (source, seed, width, cnn) in enumerate(plan):
    name = f"{source}{index:03d}"
    if source == "torch":
        import torch
        model, args = torch_model(seed, width, cnn)
        path = out / f"{name}.pt2"
        torch.export.save(torch.export.export(model, args), path)
    elif source == "onnx":
        import torch
        model, args = torch_model(seed, width, cnn)
        path = out / f"{name}.onnx"
        torch.onnx.export(model, args, str(path), input_names=["x"], output_names=["y"], opset_version=17,
                          dynamo=False)
    elif source == "keras":
        path = out / f"{name}.keras"
        keras_model(seed, width, cnn).save(path)
    elif source == "savedmodel":
        path = out / name
        keras_model(seed, width, cnn).export(str(path), verbose=False)
    elif source == "tflite":
        import tensorflow as tf
        path = out / f"{name}.tflite"
        path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras_model(seed, width, cnn)).convert())
    else:  # jax: an entry point in a folder of its own (its key covers the folder)
        folder = out / name
        folder.mkdir()
        (folder / "model.py").write_text(
            "import functools\nimport jax, jax.numpy as jnp\nimport numpy as np\n\n"
            f"rng = np.random.default_rng({seed})\n"
            f"W1 = rng.standard_normal((8, {width})).astype(np.float32) / 3\n"
            f"W2 = rng.standard_normal(({width}, 4)).astype(np.float32) / 3\n\n"
            "def predict(x):\n    return jnp.tanh(x @ W1) @ W2\n\n"
            "def build():\n    return predict\n")
        path = f"{folder / 'model.py'}:build"
    entries.append({"name": name, "source": str(path), "inputs": ["x:1x8"] if source == "jax" else []})
print(json.dumps(entries))
'''


def plan(count: int) -> list[tuple[str, int, int, bool]]:
    """(source, seed, width, cnn) for each model: the sources in turn, widths 8..32."""
    return [(SOURCES[i % len(SOURCES)], i, 8 + 4 * (i % 7), i % 3 == 0 and SOURCES[i % len(SOURCES)] != "jax")
            for i in range(count)]


def build(folder: Path, count: int) -> Path:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    started = time.perf_counter()
    made = subprocess.run([sys.executable, "-c", BUILD_SCRIPT, str(folder), json.dumps(plan(count - 1))],
                          env=env, capture_output=True, text=True)
    if made.returncode:
        sys.exit(f"building the zoo failed:\n{made.stderr[-3000:]}")
    entries = json.loads(made.stdout.strip().splitlines()[-1])
    (folder / "corrupt.onnx").write_bytes(b"\x08\x07not a model" * 8)
    entries.append({"name": "corrupt", "source": str(folder / "corrupt.onnx"), "inputs": []})
    lines = ["[defaults]", "samples = 2", "latency_runs = 5", ""]
    for entry in entries:
        lines += ["[[models]]", f'name = "{entry["name"]}"', f'source = "{entry["source"]}"', 'targets = ["onnx"]']
        if entry["inputs"]:
            lines.append(f"inputs = {json.dumps(entry['inputs'])}")
        lines.append("")
    config = folder / "modelport.toml"
    config.write_text("\n".join(lines))
    print(f"built {len(entries)} models ({', '.join(f'{n} {s}' for s, n in Counter(e[0] for e in plan(count - 1)).items())}, "
          f"1 corrupt) in {time.perf_counter() - started:.0f}s", flush=True)
    return config


def check(config: Path, out: Path, report: Path, *flags: str) -> tuple[float, int, list[str]]:
    argv = [sys.executable, "-m", "modelport", "check", str(config), "-o", str(out), "--report", str(report), *flags]
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=config.parent, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if not report.is_file():
        sys.exit(f"{' '.join(flags)}: no report (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    data = json.loads(report.read_text())
    verdicts = [f"{m['source']['path'].rsplit('/', 1)[-1]}:{t['status']}" for m in data["models"] for t in m["targets"]]
    return seconds, proc.returncode, verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100, help="models in the zoo, the corrupt one included")
    parser.add_argument("--jobs", type=int, default=2, help="workers for the parallel runs (default 2)")
    parser.add_argument("--skip-ray", action="store_true", help="leave out the Ray run")
    parser.add_argument("--keep", type=Path, default=None, help="build the zoo here and keep it")
    args = parser.parse_args()
    if args.models < 2:
        parser.error("--models must be >= 2")
    work = args.keep or Path(tempfile.mkdtemp(prefix="modelport-zoo-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        zoo = work / "zoo"
        zoo.mkdir(exist_ok=True)
        config = zoo / "modelport.toml" if (zoo / "modelport.toml").exists() else build(zoo, args.models)
        cache = work / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        runs = [("serial", ("--jobs", "1", "--no-cache")),
                ("jobs", ("--jobs", str(args.jobs), "--cache", str(cache))),
                ("ray", ("--executor", "ray", "--jobs", str(args.jobs), "--no-cache")),
                ("warm", ("--jobs", str(args.jobs), "--cache", str(cache)))]
        results: dict[str, tuple[float, int, list[str]]] = {}
        for label, flags in runs:
            if label == "ray" and args.skip_ray:
                continue
            results[label] = check(config, work / f"out-{label}", work / f"{label}.json", *flags)
            seconds, code, verdicts = results[label]
            counts = Counter(v.rsplit(":", 1)[1] for v in verdicts)
            print(f"{label:<7} {seconds:8.1f} s  exit {code}  {dict(counts)}", flush=True)
        reference = results["serial"][2]
        for label, (_, code, verdicts) in results.items():
            if verdicts != reference or code != results["serial"][1]:
                print(f"MISMATCH: {label}'s verdicts or exit code differ from the serial run's", file=sys.stderr)
                return 1
        serial = results["serial"][0]
        ratios = {"jobs / serial": results["jobs"][0] / serial, "warm / serial": results["warm"][0] / serial}
        if "ray" in results:
            ratios["ray / jobs"] = results["ray"][0] / results["jobs"][0]
        print(f"\n{args.models} models, {os.cpu_count()} CPUs, --jobs {args.jobs}")
        print(f"{'ratio':<14} {'measured':>9} {'goal':>7}")
        for name, value in ratios.items():
            mark = "ok" if value <= GOALS[name] else "MISSED"
            print(f"{name:<14} {value:9.3f} {GOALS[name]:7.2f}  {mark}")
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
