"""Fuzzing: valid tiny models of each format, mutated as bytes and as structure, fed to
detection and `inspect`. In CI a bounded number of mutants per format (MODELPORT_FUZZ_EXAMPLES,
default 20); `make fuzz` runs many more."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

EXAMPLES = int(os.environ.get("MODELPORT_FUZZ_EXAMPLES", "20"))


@pytest.fixture(scope="module")
def seeds(models, tmp_path_factory):
    from modelport import api

    out = tmp_path_factory.mktemp("fuzz_seeds")
    result = api.convert(str(models["mlp_onnx"]), api.ConvertOptions(targets=("tflite", "ort", "savedmodel", "tfjs"),
                                                                      output_dir=out, validate=False))
    assert [t.status for t in result.targets] == ["converted"] * 4, [t.error for t in result.targets]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tf_keras

    keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu")]).save(out / "tiny.keras")
    tf_keras.Sequential([tf_keras.layers.Dense(3, input_shape=(4,))]).save(out / "tiny.h5")
    return {"onnx": models["mlp_onnx"], "pt2": models["cnn_pt2"], "torchscript": models["cnn_torchscript"],
            "tflite": out / "model.tflite", "ort": out / "model.ort", "keras": out / "tiny.keras",
            "h5": out / "tiny.h5", "savedmodel": out / "savedmodel", "tfjs": out / "tfjs"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["onnx", "pt2", "torchscript", "tflite", "ort", "keras", "h5", "savedmodel", "tfjs"])
def test_mutated_models_give_an_answer_or_a_clean_refusal(seeds, kind):
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzz" / "worker.py"), str(seeds[kind]),
                             str(EXAMPLES)], capture_output=True, text=True, timeout=60 * EXAMPLES,
                            stdin=subprocess.DEVNULL, cwd=ROOT)
    assert result.returncode == 0, f"{kind}: exit {result.returncode}\n{result.stdout}\n{result.stderr[-4000:]}"
    assert "no hang, no crash" in result.stdout
