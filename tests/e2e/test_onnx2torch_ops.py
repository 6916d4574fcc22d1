"""The ONNX ops modelport adds to onnx2torch (converters/onnx2torch_ops.py, onnx2torch_rnn.py), on
models torch's own exporter writes: each converted to TorchScript and validated against
onnxruntime running the ONNX file."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


def _export(module, example, path, **kwargs) -> None:
    import torch

    torch.onnx.export(module.eval(), example, str(path), opset_version=17, dynamo=False, **kwargs)


@pytest.mark.slow
def test_bidirectional_lstm_and_gru_with_batch_first_reach_torchscript(tmp_path):
    import torch

    class Recurrent(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(6, 8, batch_first=True, bidirectional=True)
            self.gru = torch.nn.GRU(16, 5, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.gru(self.lstm(x)[0])[0]

    torch.manual_seed(0)
    source = tmp_path / "recurrent.onnx"
    _export(Recurrent(), (torch.randn(2, 7, 6),), source, input_names=["x"], output_names=["y"])
    import onnx

    assert {"LSTM", "GRU"} <= {n.op_type for n in onnx.load(str(source)).graph.node}
    result = run_cli("convert", str(source), "--to", "torchscript", "-o", str(tmp_path / "out"),
                     "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    target = json.loads((tmp_path / "r.json").read_text())["targets"][0]
    assert target["status"] == "passed" and target["numeric"]["outputs"][0]["max_abs_diff"] < 1e-5, target
