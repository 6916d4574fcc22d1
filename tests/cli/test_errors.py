"""Every error a user can hit: one 'Error:' line saying what to do, the right exit code, no traceback."""

import pickle

import pytest

from tests.conftest import error_line, run_cli


def test_missing_file(tmp_path):
    result = run_cli("convert", str(tmp_path / "nope.pt2"), "--to", "onnx")
    assert result.returncode == 2
    assert "does not exist" in error_line(result)


def test_empty_file(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    result = run_cli("convert", str(tmp_path / "empty.onnx"), "--to", "onnx")
    assert result.returncode == 2
    assert "is empty (0 bytes)" in error_line(result)


def test_corrupt_onnx(tmp_path, models):
    data = models["mlp_onnx"].read_bytes()
    (tmp_path / "broken.onnx").write_bytes(data[: len(data) // 2])
    result = run_cli("convert", str(tmp_path / "broken.onnx"), "--to", "onnx")
    assert result.returncode == 2
    line = error_line(result)
    assert "broken.onnx" in line and ("corrupt" in line or "cannot load" in line)


def test_corrupt_pt2_archive(tmp_path, models):
    data = models["cnn_pt2"].read_bytes()
    (tmp_path / "broken.pt2").write_bytes(data[: len(data) // 3])
    result = run_cli("convert", str(tmp_path / "broken.pt2"), "--to", "onnx")
    assert result.returncode == 2
    assert "broken.pt2" in error_line(result)


def test_unknown_format(tmp_path):
    (tmp_path / "notes.pt").write_text("just some notes, not a model\n")
    result = run_cli("convert", str(tmp_path / "notes.pt"), "--to", "onnx")
    assert result.returncode == 2
    assert "not a model format modelport knows (it looks like text)" in error_line(result)


@pytest.mark.parametrize("spec, fragment", [
    ("image", "expected NAME:SHAPE"),
    ("image:1x3xfoo-bar", "bad dimension"),
    ("image:1x3x16x16:complex", "Unknown dtype"),
])
def test_malformed_input(models, spec, fragment):
    result = run_cli("convert", str(models["cnn_torchscript"]), "--to", "onnx", "--input", spec)
    assert result.returncode == 2
    assert fragment in error_line(result)


def test_unknown_target(models):
    result = run_cli("convert", str(models["cnn_pt2"]), "--to", "onnx,coreml")
    assert result.returncode == 2
    line = error_line(result)
    assert "Unknown target 'coreml'" in line and "onnx, tflite" in line


def test_missing_shapes_names_the_exact_flag(models):
    result = run_cli("convert", str(models["cnn_torchscript"]), "--to", "onnx")
    assert result.returncode == 2
    assert "--input image:1x3x224x224" in error_line(result)


def test_state_dict_is_refused(models):
    result = run_cli("convert", str(models["state_dict"]), "--to", "onnx")
    assert result.returncode == 2
    assert "state_dict" in error_line(result)


class _Payload:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_untrusted_pickle_is_refused_and_its_payload_does_not_run(tmp_path):
    import torch

    marker = tmp_path / "PAYLOAD_RAN"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker)}, evil)
    assert not marker.exists()
    result = run_cli("convert", str(evil), "--to", "onnx", "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    line = error_line(result)
    assert "--trust-remote-code" in line and "run code" in line
    assert not marker.exists(), "the pickle's payload ran"
    assert not (tmp_path / "out").exists()


def test_plain_pickle_stream_is_refused_too(tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    result = run_cli("convert", str(evil), "--to", "onnx")
    assert result.returncode == 2
    assert "--trust-remote-code" in error_line(result)
    assert not marker.exists()


def test_trusted_whole_module_loads(models, tmp_path):
    result = run_cli("convert", str(models["whole_module"]), "--to", "onnx", "--trust-remote-code",
                     "--input", "x:1x4", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "model.onnx").is_file()


def test_converter_failure_names_the_op(entry_file, tmp_path):
    # onnx2tf 1.29 cannot lower DFT (onnx2tf 2.x can: tests/e2e/test_toolchains.py)
    result = run_cli("convert", f"{entry_file}:build_spectrum", "--to", "tflite", "--converter", "onnx2tf",
                     "-o", str(tmp_path))
    assert result.returncode == 3
    line = error_line(result)
    assert "ONNX op DFT" in line and "--verbose" in line
    assert list(tmp_path.iterdir()) == [], "a failed target must leave nothing in the output directory"


def test_missing_backend_names_the_extra(models, tmp_path):
    # Simulate a machine without onnx2tf: an import of it fails as it would there. (Pinned to the
    # onnx2tf 1.29 converter: where the onnx2tf2 toolchain is built, it would convert instead.)
    result = run_cli("convert", str(models["cnn_pt2"]), "--to", "tflite", "--converter", "onnx2tf", "-o", str(tmp_path),
                     python_prelude="import sys; sys.modules['onnx2tf'] = None")
    assert result.returncode == 4
    assert "pip install 'modelport[tf]'" in error_line(result)


def test_bad_entry_point(tmp_path, entry_file):
    result = run_cli("convert", f"{entry_file}:no_such_function", "--to", "onnx")
    assert result.returncode == 2
    assert "has no attribute 'no_such_function'" in error_line(result)


def test_verbose_shows_the_traceback(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    result = run_cli("convert", str(tmp_path / "empty.onnx"), "--to", "onnx", "--verbose")
    assert result.returncode == 2
    assert "Traceback" in result.stderr
