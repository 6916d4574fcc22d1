"""int8 QDQ ONNX (tf2onnx's output for a full-int8 TFLite file) rewritten as uint8 QDQ so that
onnxruntime's *default* session computes it right on every x86-64 CPU: without VNNI its fused U8S8
kernels saturate (a MobileNetV2 drifts to cosine ~0.6 against LiteRT), U8U8 ones do not.

Every check here holds on any CPU: the rewritten file is compared with LiteRT (or with exact integer
arithmetic) and with the original under ORT without optimizations; how the *original* fares with
the defaults depends on the CPU, so it is never asserted."""

import subprocess
import sys

import numpy as np
import pytest

from modelport.converters.qdq_portable import make_portable
from tests.conftest import litert_in_clean_process

INT8, UINT8 = 3, 2  # onnx.TensorProto element types


def _tf2onnx(tflite, out):
    result = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite", str(tflite), "--output", str(out),
                             "--opset", "17"], capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def _io(path):
    import onnx

    graph = onnx.load(str(path)).graph
    return [(v.name, v.type.tensor_type.elem_type, [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim])
            for v in (*graph.input, *graph.output)]


def _weights_dtypes(path):
    """Element types of the constants DequantizeLinear reads (the weights of the fused kernels)."""
    import onnx

    graph = onnx.load(str(path)).graph
    inits = {t.name: t.data_type for t in graph.initializer}
    return {inits[n.input[0]] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}


def _session(path, optimized=True):
    import onnxruntime as ort

    options = ort.SessionOptions()  # the defaults a user re-running the file gets
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session, feeds):
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def _cosine(a, b):
    return float(a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def _rewrite_and_compare_with_litert(tflite, workdir, seeds=(0, 1, 2)):
    """tf2onnx -> make_portable; returns the rewrite's summary and, per output, the worst
    (difference in output steps, cosine) of ORT with default options against LiteRT."""
    from modelport.sources.tflite import read_flatbuffer

    original = _tf2onnx(tflite, workdir / "original.onnx")
    portable = workdir / "portable.onnx"
    portable.write_bytes(original.read_bytes())
    summary = make_portable(portable)
    assert summary["rewrote"] == "int8 QDQ -> uint8" and summary["tensors"] > 0 and summary["weights"] > 0, summary
    # Same interface (names, int8, shapes); the weights the fused kernels read are uint8 now.
    assert _io(portable) == _io(original)
    assert {dtype for _, dtype, _ in _io(portable)} == {INT8}
    assert _weights_dtypes(original) >= {INT8} and INT8 not in _weights_dtypes(portable)

    facts = read_flatbuffer(tflite)
    default, reference, reference_rewritten = _session(portable), _session(original, False), _session(portable, False)
    shapes = {i.name: [d if isinstance(d, int) else 1 for d in i.shape] for i in default.get_inputs()}
    worst: dict[str, tuple[int, float]] = {}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        feeds = {t.tensor: np.clip(np.round(rng.uniform(-1, 1, shapes[t.tensor]) / t.scale) + t.zero_point,
                                   -128, 127).astype(np.int8) for t in facts.inputs}
        expected = litert_in_clean_process(tflite, {t.name: feeds[t.tensor] for t in facts.inputs})
        produced = _run(default, feeds)
        # Exact in arithmetic: without optimizations both files compute the very same numbers.
        unfused, unfused_rewritten = _run(reference, feeds), _run(reference_rewritten, feeds)
        for name, values in unfused.items():
            np.testing.assert_array_equal(unfused_rewritten[name], values)
        for t in facts.outputs:
            got, want = produced[t.tensor], expected[t.name]
            assert got.dtype == want.dtype == np.int8 and got.shape == want.shape
            steps = int(np.abs(got.astype(np.int32) - want.astype(np.int32)).max())
            cosine = _cosine((got.astype(np.float64) - t.zero_point) * t.scale,
                             (want.astype(np.float64) - t.zero_point) * t.scale)
            before = worst.get(t.name, (0, 1.0))
            worst[t.name] = (max(before[0], steps), min(before[1], cosine))
    return summary, worst


def test_tiny_int8_tflite_matches_litert_with_default_options(tflite_models, tmp_path):
    summary, worst = _rewrite_and_compare_with_litert(tflite_models["tflite_cnn_int8"], tmp_path)
    assert set(worst) == {"output_0", "output_1"}
    for name, (steps, cosine) in worst.items():
        assert steps <= 2 and cosine > 0.999, (name, steps, cosine)
    assert summary["boundaries"] == 3  # the int8 input and both int8 outputs


@pytest.mark.slow
def test_mobilenet_v2_int8_matches_litert_with_default_options(mobilenet_models, tmp_path):
    summary, worst = _rewrite_and_compare_with_litert(mobilenet_models["mobilenet_int8"], tmp_path)
    # Without the rewrite, a CPU without VNNI gives up to ~170 steps, cosine ~0.6, here.
    steps, cosine = worst["output_0"]
    assert steps <= 2 and cosine > 0.999, worst
    assert summary["weights"] > 50  # 52 convolutions and the classifier
    size = (tmp_path / "portable.onnx").stat().st_size
    assert size < 1.01 * (tmp_path / "original.onnx").stat().st_size  # still 8-bit weights


# --- small graphs built by hand ------------------------------------------------------------

def _conv_model(path, dtype="int8"):
    """int8 -> DQ -> Q (zero point -1, same values) -> DQ -> Conv 1x1 (int8 weights) -> Q -> DQ -> Q
    -> int8: the Q/DQ pairs around the Conv make onnxruntime fuse it into QLinearConv. With
    activations near 127 and weights of +-127, two u8*s8 products exceed int16: the U8S8 kernel of
    a CPU without VNNI saturates. dtype="uint8" builds the same graph in uint8 (nothing to do)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    kind, offset = (np.int8, 0) if dtype == "int8" else (np.uint8, 128)
    elem = TensorProto.INT8 if dtype == "int8" else TensorProto.UINT8
    weights = np.full((4, 32, 1, 1), 127, np.int16)
    weights[1] = -127
    weights[2, ::2] = -127
    weights[3, :, 0, 0] = np.arange(32) * 8 % 255 - 127
    constants = {
        "w": (weights + offset).astype(kind), "s": np.array(1 / 128, np.float32), "z": np.array(offset, kind),
        "z_minus_1": np.array(offset - 1, kind), "sw": np.full(4, 1 / 128, np.float32), "zw": np.full(4, offset, kind),
        "sy": np.array(0.3, np.float32),
    }
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "s", "z"], ["x_float"]),
        helper.make_node("QuantizeLinear", ["x_float", "s", "z_minus_1"], ["x_requantized"]),
        helper.make_node("DequantizeLinear", ["x_requantized", "s", "z_minus_1"], ["conv_in"]),
        helper.make_node("DequantizeLinear", ["w", "sw", "zw"], ["conv_w"], axis=0),
        helper.make_node("Conv", ["conv_in", "conv_w"], ["conv_out"]),
        helper.make_node("QuantizeLinear", ["conv_out", "sy", "z"], ["y_quantized"]),
        helper.make_node("DequantizeLinear", ["y_quantized", "sy", "z"], ["y_float"]),
        helper.make_node("QuantizeLinear", ["y_float", "sy", "z_minus_1"], ["y"]),  # y = y_quantized - 1
    ]
    graph = helper.make_graph(nodes, "qdq_conv", [helper.make_tensor_value_info("x", elem, [1, 32, 2, 2])],
                              [helper.make_tensor_value_info("y", elem, [1, 4, 2, 2])],
                              [numpy_helper.from_array(v, k) for k, v in constants.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return weights[:, :, 0, 0].astype(np.int64)


def _saturating_input():
    x = np.full((1, 32, 2, 2), 127, np.int8)
    x[0, :, 1, 1] = -127
    x[0, ::2, 0, 1] = 100
    x[0, 1::3, 1, 0] = 126
    return x


def test_rewritten_int8_conv_is_exact_with_default_options(tmp_path):
    path = tmp_path / "conv.onnx"
    weights = _conv_model(path)
    original = path.read_bytes()
    summary = make_portable(path)
    assert summary == {"rewrote": "int8 QDQ -> uint8", "tensors": 3, "weights": 1, "boundaries": 0}
    assert _io(path) == [("x", INT8, [1, 32, 2, 2]), ("y", INT8, [1, 4, 2, 2])]

    x = _saturating_input()
    # Exact integer arithmetic, then the two requantizations (no value lands on a rounding tie).
    real = np.einsum("nc,bchw->bnhw", weights, x.astype(np.int64)) / 128 / 128 / np.float32(0.3)
    assert np.all(np.abs(real - np.floor(real) - 0.5) > 1e-3)
    exact = np.clip(np.clip(np.round(real), -128, 127) - 1, -128, 127).astype(np.int8)
    produced = _session(path).run(None, {"x": x})[0]
    assert produced.dtype == np.int8
    assert np.abs(produced.astype(np.int32) - exact.astype(np.int32)).max() <= 1, (produced, exact)

    # Exact rewrite: unoptimized, the original and the rewritten file agree bit for bit.
    before = tmp_path / "before.onnx"
    before.write_bytes(original)
    np.testing.assert_array_equal(_session(path, False).run(None, {"x": x})[0],
                                  _session(before, False).run(None, {"x": x})[0])


def test_graphs_without_int8_qdq_are_left_byte_identical(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    # Float only.
    weights = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "float_conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], [weights])
    float_model = tmp_path / "float.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(float_model))
    # Already uint8 QDQ.
    uint8_model = tmp_path / "uint8.onnx"
    _conv_model(uint8_model, dtype="uint8")
    # Already rewritten: a second call changes nothing.
    rewritten = tmp_path / "rewritten.onnx"
    _conv_model(rewritten)
    assert make_portable(rewritten)

    for path in (float_model, uint8_model, rewritten):
        before = path.read_bytes()
        assert make_portable(path) == {}, path.name
        assert path.read_bytes() == before, path.name
