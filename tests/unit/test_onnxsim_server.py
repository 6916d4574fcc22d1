"""The warm onnxsim helper answers onnx2tf's `onnxsim` command as the command does: the same
simplified file, and a failure as CalledProcessError (onnx2tf then warns and goes on)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from modelport.converters.onnxsim_server import SubprocessWithWarmOnnxsim, run_onnxsim

NODE_TESTS = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"


def test_the_helper_simplifies_in_place_like_the_command(tmp_path):
    source = NODE_TESTS / "test_layer_normalization_3d_axis1_epsilon_expanded" / "model.onnx"
    by_helper, by_command = tmp_path / "helper.onnx", tmp_path / "command.onnx"
    shutil.copyfile(source, by_helper)
    shutil.copyfile(source, by_command)
    printed = SubprocessWithWarmOnnxsim().check_output(["onnxsim", str(by_helper), str(by_helper)],
                                                       stderr=subprocess.PIPE)
    onnxsim = Path(sys.executable).parent / "onnxsim"
    subprocess.check_output([str(onnxsim), str(by_command), str(by_command)], stderr=subprocess.PIPE)
    assert isinstance(printed, bytes) and printed.strip()  # the command's table, for onnx2tf's log
    simplified = onnx.load(str(by_helper))
    assert len(simplified.graph.node) < len(onnx.load(str(source)).graph.node)
    assert [n.op_type for n in simplified.graph.node] == [n.op_type for n in onnx.load(str(by_command)).graph.node]


def test_a_failing_onnxsim_is_called_process_error_and_the_helper_keeps_serving(tmp_path):
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(subprocess.CalledProcessError) as failed:
        run_onnxsim(["onnxsim", str(tmp_path / "broken.onnx"), str(tmp_path / "out.onnx")])
    assert failed.value.returncode != 0 and not (tmp_path / "out.onnx").exists()
    good = tmp_path / "good.onnx"
    shutil.copyfile(NODE_TESTS / "test_relu" / "model.onnx", good)
    run_onnxsim(["onnxsim", str(good), str(good)])
    onnx.checker.check_model(onnx.load(str(good)))


def test_other_commands_are_subprocess_s_own():
    assert SubprocessWithWarmOnnxsim().check_output([sys.executable, "-c", "print(7)"]) == b"7\n"
    assert SubprocessWithWarmOnnxsim().PIPE == subprocess.PIPE
