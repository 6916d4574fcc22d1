"""ONNX backend node tests through one converter, on a seeded sample: how many give a TFLite file
that LiteRT runs and that matches onnxruntime on the test's own inputs.

Eligible tests: every input float32, and onnxruntime reproduces the test's expected outputs.
Each test is converted with `modelport convert TEST/model.onnx --to tflite --converter NAME
--inputs TEST` through the Python API (one warm model worker: TensorFlow is imported once).

Run:  .venv/bin/python benchmarks/onnx_node_sample.py [--count 40] [--seed 0] [--converter onnx2tf,onnx2tf2]
(onnx2tf2 needs `modelport toolchain install onnx2tf2`)
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def eligible(folder: Path) -> bool:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    try:
        model = onnx.load(str(folder / "model.onnx"))
        data = folder / "test_data_set_0"
        inputs = [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in sorted(data.glob("input_*.pb"))]
        expected = [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in sorted(data.glob("output_*.pb"))]
        graph_inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
        if not inputs or len(inputs) != len(graph_inputs) or any(a.dtype != np.float32 for a in inputs):
            return False
        session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        got = session.run(None, {i.name: a for i, a in zip(session.get_inputs(), inputs)})
        return len(got) == len(expected) and all(
            g.shape == e.shape and np.allclose(g, e, atol=1e-4, rtol=1e-3) for g, e in zip(got, expected))
    except Exception:  # noqa: BLE001 - a test onnxruntime cannot run is not eligible
        return False


def main() -> int:
    import onnx

    from modelport import api

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--converter", default="onnx2tf,onnx2tf2")
    args = parser.parse_args()
    root = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"
    tests = sorted(p for p in root.iterdir() if (p / "model.onnx").exists())
    random.Random(args.seed).shuffle(tests)
    sample = []
    for folder in tests:
        if eligible(folder):
            sample.append(folder)
        if len(sample) == args.count:
            break
    print(f"{len(sample)} eligible tests (seed {args.seed}) of {len(tests)}")
    for converter in args.converter.split(","):
        outcomes: Counter[str] = Counter()
        seconds = []
        failures = []
        for folder in sample:
            with tempfile.TemporaryDirectory() as out:
                options = api.ConvertOptions(targets=("tflite",), converters=(converter,), output_dir=Path(out),
                                             sample_inputs=folder)
                started = time.perf_counter()
                try:
                    status = api.convert(str(folder / "model.onnx"), options).targets[0]
                    outcome = status.status.value if hasattr(status.status, "value") else str(status.status)
                    why = status.error or ""
                except Exception as exc:  # noqa: BLE001 - a refusal before converting
                    outcome, why = "error", str(exc)
                seconds.append(time.perf_counter() - started)
            outcomes[outcome] += 1
            if outcome != "passed":
                failures.append(f"  {folder.name}: {outcome} {why[:140]}")
        seconds.sort()
        print(f"\n{converter}: {outcomes['passed']}/{len(sample)} passed ({dict(outcomes)}); "
              f"median {seconds[len(seconds) // 2]:.1f} s per test")
        print("\n".join(failures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
