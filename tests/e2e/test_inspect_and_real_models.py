"""`modelport inspect` on every format, onnx2torch's missing ops, and real architectures
(random weights) from torch, SavedModel and ONNX."""

import json

import pytest

from modelport import api
from tests.conftest import ROOT, error_line, run_cli

MODELS = ROOT / "fixtures" / "models"


def _inspect(path, *extra):
    result = run_cli("inspect", str(path), "--json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_inspect_onnx_pt2_torchscript_and_tfjs(models, tmp_path):
    onnx = _inspect(models["mlp_onnx"])
    assert onnx["format"] == "onnx" and onnx["opset"] == {"ai.onnx": 17}
    assert onnx["inputs"] == [{"name": "x", "shape": ["batch", 6], "dtype": "float32"}]
    assert onnx["parameters"] == 6 * 16 + 16 + 16 * 3 + 3 and onnx["ops"] == {"Gemm": 2, "Tanh": 1}
    pt2 = _inspect(models["cnn_pt2"])
    assert pt2["format"] == "pt2" and pt2["framework"] == "torch" and pt2["parameters"] > 0
    assert any(op.startswith("aten.conv2d") for op in pt2["ops"])
    script = _inspect(models["cnn_torchscript"])  # no shapes recorded: shown as unknown, not an error
    assert script["inputs"] == [{"name": "image", "shape": None, "dtype": "float32"}]
    converted = run_cli("convert", str(models["mlp_onnx"]), "--to", "tfjs", "-o", str(tmp_path))
    assert converted.returncode == 0, converted.stderr
    tfjs = _inspect(tmp_path / "tfjs")
    assert tfjs["format"] == "tfjs" and tfjs["parameters"] >= onnx["parameters"]  # + small graph constants
    assert [i["name"] for i in tfjs["inputs"]] == ["x"] and tfjs["ops"]
    table = run_cli("inspect", str(models["mlp_onnx"]))
    assert "Gemm x2" in table.stdout and "batchx6" in table.stdout


def test_inspect_refuses_like_convert(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07garbage-garbage")
    result = run_cli("inspect", str(tmp_path / "junk.onnx"))
    assert result.returncode == 2 and "junk.onnx" in error_line(result)


def test_onnx_op_without_an_onnx2torch_converter_is_exit_3_naming_it(entry_file, tmp_path):
    exported = run_cli("convert", f"{entry_file}:build_spectrum", "--to", "onnx", "-o", str(tmp_path / "a"))
    assert exported.returncode == 0, exported.stderr
    result = run_cli("convert", str(tmp_path / "a" / "model.onnx"), "--to", "torchscript", "-o", str(tmp_path / "b"))
    assert result.returncode == 3
    assert "onnx2torch has no converter for the ONNX op DFT" in error_line(result)


def _resnet():
    """A ResNet-style network (stem, 3 stages of residual blocks, head) with random weights."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + self.skip(x))

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                        Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    net.train()  # one pass in train mode gives BatchNorm real statistics (random init has none)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 1.0
        net(torch.randn(8, 3, 64, 64))
    return net.eval()


@pytest.mark.slow
def test_resnet_style_torch_to_every_target_and_back_from_onnx(tmp_path):
    import torch

    program = torch.export.export(_resnet(), (torch.randn(1, 3, 64, 64),))
    torch.export.save(program, tmp_path / "resnet.pt2")
    result = api.convert(str(tmp_path / "resnet.pt2"),
                         api.ConvertOptions(targets=("all",), output_dir=tmp_path / "out", samples=2))
    status = {t.target: (t.status, t.error) for t in result.targets}
    assert all(s == "passed" for s, _ in status.values()), status
    # The ONNX it wrote, as a source of its own, to the TF targets.
    again = api.convert(str(tmp_path / "out" / "model.onnx"),
                        api.ConvertOptions(targets=("tflite", "savedmodel"), output_dir=tmp_path / "again", samples=2))
    assert [t.status for t in again.targets] == ["passed", "passed"], [t.error for t in again.targets]


@pytest.mark.slow
def test_keras_mobilenet_as_a_savedmodel_source(tmp_path):
    import make_tf_fixtures

    model = make_tf_fixtures.realistic_mobilenet()
    model.export(str(tmp_path / "saved"), verbose=False)
    result = api.convert(str(tmp_path / "saved"), api.ConvertOptions(targets=("onnx", "tflite", "tfjs"),
                                                                     output_dir=tmp_path / "out", samples=2))
    status = {t.target: (t.status, t.error) for t in result.targets}
    assert all(s == "passed" for s, _ in status.values()), status
