"""Run the model of this bundle, standalone: only numpy and the model's runtime are needed
(ai-edge-litert or tflite-runtime for .tflite; onnxruntime for .onnx and .ort).

    python run.py --selftest              # run the golden vectors; exit 1 if the outputs drifted
    python run.py --inputs x.npz -o y.npz # named input arrays in, named output arrays out

Inputs and outputs are named and laid out as the original (source) model's: this script applies
the layout change and the integer quantization recorded in modelport.json, as modelport did when
it validated the model. Written by modelport; it needs nothing from modelport.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _quantize(value: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    info = np.iinfo(np.dtype(dtype))
    return np.clip(np.round(value / np.float32(scale)) + zero_point, info.min, info.max).astype(dtype)


def _dequantize(value: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (value.astype(np.float32) - zero_point) * np.float32(scale)


class Model:
    def __init__(self, manifest: dict, threads: int | None = None) -> None:
        self.manifest = manifest
        path = HERE / manifest["model"]
        if manifest["runtime_kind"] == "litert":
            try:
                from ai_edge_litert.interpreter import Interpreter
            except ImportError:
                from tflite_runtime.interpreter import Interpreter
            self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self._interpreter.allocate_tensors()
            signatures = self._interpreter.get_signature_list()
            self._signature = (self._interpreter.get_signature_runner(next(iter(signatures)))
                               if len(signatures) == 1 else None)
            self._run = self._run_tflite
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            for key, value in manifest.get("session_config", {}).items():  # e.g. how to read the file
                options.add_session_config_entry(key, value)
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self._run = self._run_onnxruntime

    def _run_tflite(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._signature is not None:
            return dict(self._signature(**feeds))
        interpreter = self._interpreter
        by_name = {d["name"]: d for d in interpreter.get_input_details()}
        for name, value in feeds.items():
            if tuple(by_name[name]["shape"]) != value.shape:
                interpreter.resize_tensor_input(by_name[name]["index"], value.shape, strict=False)
        interpreter.allocate_tensors()
        by_name = {d["name"]: d for d in interpreter.get_input_details()}
        for name, value in feeds.items():
            interpreter.set_tensor(by_name[name]["index"], value)
        interpreter.invoke()
        return {d["name"]: interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()}

    def _run_onnxruntime(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self._session.get_outputs()]
        return dict(zip(names, self._session.run(names, feeds)))

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Source-named, source-laid-out float inputs in; the same kind of outputs out."""
        feeds = {}
        for spec in self.manifest["inputs"]:
            value = np.asarray(inputs[spec["name"]])
            if spec.get("perm"):
                value = np.ascontiguousarray(value.transpose(spec["perm"]))
            if spec.get("scalar"):  # the model holds the source's scalar as one element
                value = value.reshape(1)
            if spec.get("scale") and value.dtype.kind == "f" and spec["model_dtype"].startswith(("int", "uint")):
                value = _quantize(value, spec["scale"], spec["zero_point"], spec["model_dtype"])
            feeds[spec["model_name"]] = value.astype(spec["model_dtype"], copy=False)
        produced = self._run(feeds)
        outputs = {}
        for spec in self.manifest["outputs"]:
            value = produced[spec["model_name"]]
            if spec.get("scale") and value.dtype.kind in "iu":
                value = _dequantize(value, spec["scale"], spec["zero_point"])
            if spec.get("perm"):
                value = value.transpose(np.argsort(spec["perm"]))
            if spec.get("scalar") and value.size == 1:
                value = value.reshape(())
            outputs[spec["name"]] = value
        return outputs


def selftest(model: Model) -> int:
    golden_info = model.manifest["golden"]
    golden = np.load(HERE / golden_info["file"], allow_pickle=False)
    tolerance = golden_info["tolerance"]
    worst = 0
    for index in range(golden_info["samples"]):
        inputs = {s["name"]: golden[f"input/{index}/{s['name']}"] for s in model.manifest["inputs"]}
        outputs = model.predict(inputs)
        for spec in model.manifest["outputs"]:
            expected = golden[f"output/{index}/{spec['name']}"].astype(np.float64).ravel()
            got = np.asarray(outputs[spec["name"]], np.float64).ravel()
            if expected.shape != got.shape:
                print(f"FAIL sample {index} output {spec['name']}: shape {got.shape} != {expected.shape}")
                worst = 1
                continue
            diff = np.abs(expected - got)
            within = bool(np.all(diff <= tolerance["atol"] + tolerance["rtol"] * np.abs(expected)))
            norms = float(np.linalg.norm(expected) * np.linalg.norm(got))
            cosine = 1.0 if np.array_equal(expected, got) else (float(np.dot(expected, got)) / norms if norms else 0.0)
            ok = within and cosine >= tolerance.get("min_cosine", 0.0)
            print(f"{'ok  ' if ok else 'FAIL'} sample {index} output {spec['name']}: max abs diff "
                  f"{float(diff.max()) if diff.size else 0.0:.3g}, cosine {cosine:.6f}")
            worst = max(worst, 0 if ok else 1)
    print("selftest passed" if worst == 0 else "selftest FAILED: the model's outputs drifted from the golden vectors")
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--selftest", action="store_true", help="run the golden vectors; exit 1 on drift")
    parser.add_argument("--inputs", type=Path, help="an .npz of named input arrays")
    parser.add_argument("-o", "--output", type=Path, help="where to write the outputs (.npz)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    manifest = json.loads((HERE / "modelport.json").read_text())
    model = Model(manifest, args.threads)
    if args.selftest:
        return selftest(model)
    if args.inputs is None:
        parser.error("pass --selftest, or --inputs FILE.npz")
    data = np.load(args.inputs, allow_pickle=False)
    outputs = model.predict({s["name"]: data[s["name"]] for s in manifest["inputs"]})
    if args.output:
        np.savez(args.output, **outputs)
    for name, value in outputs.items():
        print(f"{name}: shape {tuple(value.shape)}, dtype {value.dtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
