"""quantize_onnx: fp16 / dynamic / int8 (QDQ) with onnxruntime's own tools, checked by running the
results in onnxruntime with its *default* session options, as a user would.

The models are built here with onnx.helper (no torch: keeps the file fast). The first layer's
weights sit near +-max of their channel and the inputs are uniform in [0, 1]: the case where
onnxruntime's U8S8 kernels saturate on x86 CPUs without VNNI unless weights are 7-bit, so the
"optimized == unoptimized" check below is meaningful on such CPUs and holds on every CPU."""

import numpy as np
import pytest

from modelport.converters.onnx_quantize import quantize_onnx
from modelport.errors import BadInput, ConversionFailed

CONVS = ("conv1", "conv2", "conv3")


def _cnn(path, channels=64):
    """conv1..conv3 (3x3, ReLU) -> GlobalAveragePool -> Flatten -> Gemm; input x: N x 3 x 32 x 32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes, prev, cin = [], [], "x", 3
    for i, name in enumerate(CONVS):
        scale = np.sqrt(2.0 / (cin * 9))
        w = rng.normal(0, scale, (channels, cin, 3, 3))
        if i == 0:  # near +-max in every channel: the worst case for u8*s8 pair sums
            w = np.sign(w) * rng.uniform(0.6, 1.0, w.shape) * scale * 2
        inits += [numpy_helper.from_array(w.astype(np.float32), f"{name}.w"),
                  numpy_helper.from_array(rng.normal(0, 0.05, channels).astype(np.float32), f"{name}.b")]
        nodes += [helper.make_node("Conv", [prev, f"{name}.w", f"{name}.b"], [f"{name}.out"], name=name, pads=[1] * 4),
                  helper.make_node("Relu", [f"{name}.out"], [f"{name}.relu"], name=f"{name}_relu")]
        prev, cin = f"{name}.relu", channels
    inits += [numpy_helper.from_array(rng.normal(0, 0.2, (channels, 10)).astype(np.float32), "fc.w"),
              numpy_helper.from_array(np.zeros(10, np.float32), "fc.b")]
    nodes += [helper.make_node("GlobalAveragePool", [prev], ["pool"], name="pool"),
              helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["y"], name="fc")]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])], inits)
    # IR 10: what onnxruntime 1.17+ reads (onnx 1.19 would write 12, which onnxruntime 1.23 refuses).
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _mlp(path):
    """Gemm 256->512 -> ReLU -> Gemm 512->10 (no Conv: dynamic mode keeps int8 weights there)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w1 = np.sign(rng.normal(size=(256, 512))) * rng.uniform(0.6, 1.0, (256, 512)) / 16
    inits = [numpy_helper.from_array(w1.astype(np.float32), "w1"),
             numpy_helper.from_array(np.zeros(512, np.float32), "b1"),
             numpy_helper.from_array(rng.normal(0, 0.06, (512, 10)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.zeros(10, np.float32), "b2")]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["hr"], name="relu"),
             helper.make_node("Gemm", ["hr", "w2", "b2"], ["y"], name="fc2")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), str(path))
    return path


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    return _cnn(tmp_path_factory.mktemp("cnn") / "cnn.onnx")


def _samples(seed, n, shape=(3, 32, 32)):
    """Uniform [0, 1] inputs; calibration and evaluation use different seeds (held-out data)."""
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype(np.float32)


def _calibration(shape=(3, 32, 32)):
    return [{"x": sample[None]} for sample in _samples(10, 32, shape)]


def _run(path, x, optimized=True):
    import onnxruntime as ort

    options = ort.SessionOptions()  # the defaults a user gets (ORT_ENABLE_ALL)
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _cosine(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _ops(path):
    import onnx

    return [n.op_type for n in onnx.load(str(path)).graph.node]


def _output_scale(path):
    """The scale of the QuantizeLinear whose DequantizeLinear produces the graph output: one step of y."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    dq = next(n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] == graph.output[0].name)
    return float(inits[dq.input[1]])


def test_int8_qdq_matches_fp32_under_default_optimizations(cnn, tmp_path):
    out = tmp_path / "int8.onnx"
    info = quantize_onnx(cnn, out, "int8", calibration=_calibration())
    assert info == {**info, "mode": "int8", "format": "QDQ", "activation_type": "uint8", "weight_type": "int8",
                    "per_channel": True, "reduce_range": True, "excluded_nodes": [], "calibration_samples": 32}
    assert out.exists() and info["bytes_out"] == out.stat().st_size < 0.5 * cnn.stat().st_size
    ops = _ops(out)
    assert ops.count("QuantizeLinear") >= 4 and ops.count("DequantizeLinear") >= 7  # activations + 4 weights
    x = _samples(20, 16)
    reference, fused, exact = _run(cnn, x), _run(out, x), _run(out, x, optimized=False)
    assert _cosine(fused, reference) >= 0.99
    # The fused integer kernels compute what the QDQ graph says (up to rounding of the last requantization);
    # with 8-bit weights they saturate on CPUs without VNNI and this fails there.
    assert np.abs(fused - exact).max() <= 2 * _output_scale(out) + 1e-6


def test_int8_needs_calibration(cnn, tmp_path):
    for calibration in (None, []):
        with pytest.raises(BadInput, match="calibration"):
            quantize_onnx(cnn, tmp_path / "int8.onnx", "int8", calibration=calibration)
    assert not (tmp_path / "int8.onnx").exists()


def test_int8_calibration_must_name_the_inputs(cnn, tmp_path):
    with pytest.raises(BadInput, match="missing: \\['x'\\]"):
        quantize_onnx(cnn, tmp_path / "int8.onnx", "int8",
                      calibration=[{"image": np.zeros((1, 3, 32, 32), np.float32)}])


def test_int8_quantizer_error_is_one_line(cnn, tmp_path):
    with pytest.raises(ConversionFailed) as caught:
        quantize_onnx(cnn, tmp_path / "int8.onnx", "int8", calibration=[{"x": np.zeros((1, 3, 7), np.float32)}])
    assert "\n" not in caught.value.message and "rank" in caught.value.message.lower()
    assert list(tmp_path.iterdir()) == []  # no partial file, no scratch directory left behind


def test_int8_exclude_nodes_keeps_the_node_float(cnn, tmp_path):
    import onnx

    out = tmp_path / "int8.onnx"
    info = quantize_onnx(cnn, out, "int8", calibration=_calibration()[:8], exclude_nodes=["conv2"])
    assert info["excluded_nodes"] == ["conv2"]
    graph = onnx.load(str(out)).graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    nodes = {n.name: n for n in graph.node}
    float_inits = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}

    conv2 = nodes["conv2"]
    assert conv2.input[1] in float_inits and conv2.input[2] in float_inits  # float weights, no DequantizeLinear
    assert not any(c.op_type == "QuantizeLinear" for c in consumers[conv2.output[0]])  # nor a Q after it
    for name in ("conv1", "conv3"):  # the others are quantized
        assert producer[nodes[name].input[1]].op_type == "DequantizeLinear"
    x = _samples(20, 8)
    assert _cosine(_run(out, x), _run(cnn, x)) >= 0.99


def test_dynamic_cnn(cnn, tmp_path):
    out = tmp_path / "dynamic.onnx"
    info = quantize_onnx(cnn, out, "dynamic")
    # onnxruntime's CPU ConvInteger only has uint8-weight kernels: a CNN gets uint8 weights.
    assert info == {**info, "mode": "dynamic", "weight_type": "uint8", "per_channel": True, "excluded_nodes": []}
    assert out.exists() and out.stat().st_size < 0.5 * cnn.stat().st_size
    ops = _ops(out)
    assert "DynamicQuantizeLinear" in ops and ops.count("ConvInteger") == 3
    x = _samples(20, 16)
    assert _cosine(_run(out, x), _run(cnn, x)) >= 0.99


def test_dynamic_mlp_int8_weights(tmp_path):
    model, out = _mlp(tmp_path / "mlp.onnx"), tmp_path / "dynamic.onnx"
    info = quantize_onnx(model, out, "dynamic", per_channel=False)
    assert info == {**info, "weight_type": "int8", "reduce_range": True, "per_channel": False}
    assert out.stat().st_size < 0.5 * model.stat().st_size
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= set(_ops(out))
    x = _samples(21, 32, (256,))
    assert _cosine(_run(out, x), _run(model, x)) >= 0.99


def test_bad_requests(cnn, tmp_path):
    with pytest.raises(BadInput, match="Unknown quantization mode"):
        quantize_onnx(cnn, tmp_path / "q.onnx", "int4")
    with pytest.raises(BadInput, match="No node named 'conv9'"):
        quantize_onnx(cnn, tmp_path / "q.onnx", "dynamic", exclude_nodes=["conv9"])
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(BadInput, match="Cannot read ONNX model"):
        quantize_onnx(tmp_path / "junk.onnx", tmp_path / "q.onnx", "dynamic")
    assert not (tmp_path / "q.onnx").exists()


def _fp16_available():
    for name in ("onnxruntime.transformers.float16", "onnxconverter_common.float16"):
        try:
            __import__(name)
            return True
        except ImportError:
            pass
    return False


@pytest.mark.skipif(not _fp16_available(), reason="no float16 converter installed")
def test_fp16(cnn, tmp_path):
    import onnx

    out = tmp_path / "fp16.onnx"
    info = quantize_onnx(cnn, out, "fp16")
    assert info["mode"] == "fp16" and info["io_type"] == "float32"
    assert 0.4 < out.stat().st_size / cnn.stat().st_size < 0.6
    graph = onnx.load(str(out)).graph
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in (*graph.input, *graph.output))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    x = _samples(20, 16)
    np.testing.assert_allclose(_run(out, x), _run(cnn, x), atol=1e-2)
