"""SavedModels whose functions reach outside the model (write or read files, call back into
Python): every command refuses them before TensorFlow runs anything, naming the op; the payload
never runs. --trust-remote-code lets them through, as the user asked."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_cli

BUILD = textwrap.dedent('''
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf

    out, marker, secret = sys.argv[1], sys.argv[2], sys.argv[3]

    class Writer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
        def serve(self, x):
            tf.io.write_file(marker, "payload ran")
            return {"y": x * 2.0}

    class Reader(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
        def serve(self, x):
            secret_bytes = tf.strings.length(tf.io.read_file(secret))
            return {"y": x * tf.cast(secret_bytes, tf.float32)}

    class Python(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
        def serve(self, x):
            y = tf.numpy_function(lambda v: (open(marker, "w").write("x"), v)[1], [x], tf.float32)
            return {"y": tf.reshape(y, [1, 4])}

    for name, cls in (("writer", Writer), ("reader", Reader), ("python", Python)):
        module = cls()
        tf.saved_model.save(module, os.path.join(out, name), signatures={"serving_default": module.serve})
''')


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("hostile_sm")
    marker, secret = folder / "pwned", folder / "secret.txt"
    secret.write_text("the contents of a file outside the model")
    subprocess.run([sys.executable, "-c", BUILD, str(folder), str(marker), str(secret)], check=True, timeout=300,
                   stdin=subprocess.DEVNULL, capture_output=True)
    return folder, marker, secret


def test_every_command_refuses_a_savedmodel_that_reaches_outside(hostile, tmp_path):
    folder, marker, _ = hostile
    model = folder / "writer"
    config = tmp_path / "modelport.toml"
    config.write_text(f'[[models]]\nsource = "{model}"\ntargets = ["onnx"]\n')
    for argv in (["convert", str(model), "--to", "onnx", "-o", str(tmp_path / "out")], ["inspect", str(model)],
                 ["bench", str(model), "--runs", "2"], ["validate", str(model), str(model)],
                 ["check", str(config), "-o", str(tmp_path / "checked")]):
        result = run_cli(*argv)
        assert result.returncode == 2, (argv[0], result.stdout, result.stderr)
        line = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")][0]
        assert "op WriteFile" in line and "--trust-remote-code" in line, (argv[0], line)
        assert not marker.exists(), f"{argv[0]} ran the payload"


@pytest.mark.parametrize("name, op", [("reader", "ReadFile"), ("python", "PyFunc")])
def test_every_api_call_refuses_the_other_outside_ops(hostile, tmp_path, name, op):
    """The same refusal for the other ops, through every API call the commands make (one warm model
    worker, so TensorFlow starts once: the CLI layer above is the same for every op)."""
    from modelport import api
    from modelport.errors import BadInput

    folder, marker, _ = hostile
    model = str(folder / name)
    config = tmp_path / "modelport.toml"
    config.write_text(f'[[models]]\nsource = "{model}"\ntargets = ["onnx"]\n')
    calls = {"convert": lambda: api.convert(model, api.ConvertOptions(output_dir=tmp_path / "out")),
             "inspect": lambda: api.inspect(model, api.ModelOptions()),
             "bench": lambda: api.bench(model, api.BenchOptions(runs=2)),
             "validate": lambda: api.validate(model, model, api.ValidateOptions())}
    for command, call in calls.items():
        with pytest.raises(BadInput, match=f"op {op}") as refused:
            call()
        assert "--trust-remote-code" in refused.value.one_line(), command
        assert not marker.exists(), f"{command} ran the payload"
    checked = api.check(config, tmp_path / "checked")
    assert checked.exit_code == 2 and f"op {op}" in (checked.models[0][1].targets[0].error or "")
    assert not marker.exists(), "check ran the payload"


def test_trusted_savedmodel_runs_as_asked(hostile, tmp_path):
    folder, marker, _ = hostile
    result = run_cli("inspect", str(folder / "reader"), "--trust-remote-code", "--json")
    assert result.returncode == 0, result.stderr
