import zipfile

import pytest

from modelport.errors import BadInput
from modelport.registry import detect

TFLITE_HEAD = b"\x1c\x00\x00\x00TFL3" + b"\x00" * 56
ONNX_HEAD = b"\x08\x08\x12\x07pytorch" + b"\x00" * 20


def write(path, data):
    path.write_bytes(data)
    return path


def test_detects_by_content_not_extension(tmp_path):
    assert detect(write(tmp_path / "model.onnx", TFLITE_HEAD)).format == "tflite"
    assert detect(write(tmp_path / "model.tflite", ONNX_HEAD)).format == "onnx"
    assert detect(write(tmp_path / "weights.bin", b"\x89HDF\r\n\x1a\n" + b"\0" * 20)).format == "h5"
    assert detect(write(tmp_path / "m.bin", b"\x80\x02}q\x00.")).format == "torch-pickle"


def _zip(path, names):
    with zipfile.ZipFile(path, "w") as zf:
        for name in names:
            zf.writestr(name, b"x")
    return path


@pytest.mark.parametrize("names, fmt", [
    (["m/code/__torch__.py", "m/constants.pkl", "m/data.pkl"], "torchscript"),
    (["m/models/model.json", "m/archive_format", "m/data/weights/weight_0"], "pt2"),
    (["m/data.pkl", "m/data/0", "m/version"], "torch-pickle"),
    (["config.json", "metadata.json", "model.weights.h5"], "keras"),
])
def test_zip_layouts(tmp_path, names, fmt):
    assert detect(_zip(tmp_path / "model.onnx", names)).format == fmt


def test_directories(tmp_path):
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"x")
    assert detect(tmp_path / "sm").format == "savedmodel"
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "model.json").write_text("{}")
    assert detect(tmp_path / "js").format == "tfjs"
    with pytest.raises(BadInput, match="neither saved_model.pb nor model.json"):
        detect(tmp_path)


@pytest.mark.parametrize("data, fragment", [
    (b"", "is empty"),
    (b"hello, this is a text file\n", "looks like text"),
    (b"\xde\xad\xbe\xef" * 8, "binary starting with de ad be ef"),
    (b"PK\x03\x04garbage", "cannot be read"),
])
def test_refusals_say_what_it_looked_like(tmp_path, data, fragment):
    with pytest.raises(BadInput) as info:
        detect(write(tmp_path / "model.pt", data))
    assert fragment in info.value.message
    assert info.value.exit_code == 2


def test_missing_path_and_entry_points(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        detect(tmp_path / "nope.onnx")
    assert detect("some/file.py:build").format == "python-entry"
    assert detect("package.module:make_model").format == "python-entry"
    with pytest.raises(BadInput, match="name the function"):
        detect(write(tmp_path / "net.py", b"import torch\n"))
