"""weight-only (W4A16 / W8A16): per-group int4 weights in the IR, float activations,
outputs close to float, weights ~8x smaller packed; GPTQ beats round-to-nearest on a
layer with correlated inputs."""

from __future__ import annotations

import numpy as np
import pytest
from method_models import gptq_experiment, run_custom, run_zoo, weight_bytes

import qir
from backends.numpy import run
from passes import PassContext, PassManager

W4 = "canonicalize,weight-only{bits=4,group-size=128},canonicalize"
W8 = "canonicalize,weight-only{bits=8,group-size=0},canonicalize"


def test_w4a16_ffn_close_to_float_and_8x_smaller(tmp_path):
    metrics, module, ctx = run_custom("ffn", W4)
    # measured: 24.4 dB, cos 0.9982
    assert metrics["sqnr"] >= 21 and metrics["cos"] >= 0.995, metrics
    names = [op.name for op in module.main.ops]
    assert "qir.quantize" not in names and names.count("qir.linear") == 5
    for op in module.main.ops:
        if op.name == "qir.linear":
            w = op.operands[1].owner
            assert w.name == "qir.dequantize"
            q = w.operands[0].type.quant
            assert (q.storage, q.storage_min, q.storage_max, q.axis, q.block_size) == \
                ("i4", -7, 7, 1, 128)
    floats, stored, packed = weight_bytes(module)
    assert floats / packed > 7.4  # 4 bytes -> 0.5 byte + a 4-byte scale per 128
    assert floats / stored > 3.8  # one int4 per byte in the npz
    qir.save(module, tmp_path / "w4.qir")
    back = qir.load(tmp_path / "w4.qir")
    x = np.random.default_rng(0).standard_normal((4, 8, 256)).astype(np.float32)
    for a, b in zip(run(module, {"x": x}).values(), run(back, {"x": x}).values()):
        np.testing.assert_array_equal(a, b)


def test_w8a16_is_near_lossless():
    metrics, module, _ = run_custom("ffn", W8)
    assert metrics["sqnr"] >= 40, metrics  # measured 47.6 dB
    q = [op.result.type.quant for op in module.main.ops
         if op.name == "qir.param" and op.result.type.is_quantized]
    assert q and all(t.storage == "i8" and t.axis == 0 and t.block_size is None for t in q)


def test_a_group_covering_k_is_per_channel():
    _, module, ctx = run_zoo("mlp", W4)  # K = 64 (fc1), 128 (fc2, fc3)
    types = [op.result.type.quant for op in module.main.ops
             if op.name == "qir.param" and op.result.type.is_quantized]
    # group >= K is one scale per output channel: printed as a per-axis type
    assert {(t.axis, t.block_size) for t in types} == {(0, None)}
    with pytest.raises(qir.QirError, match="group-size"):
        PassManager("weight-only{group-size=16}").run(module)


@pytest.mark.parametrize("gptq", [False, True])
def test_a_group_size_not_dividing_k_leaves_a_shorter_last_group(gptq):
    """K = 200 in groups of 128: columns 0..127 and 128..199 get a scale each (as ONNX
    Runtime's MatMulNBits pads the last group), not one scale per output channel; the
    error is lower than per channel, and llvm computes what the interpreter does."""
    from backends.tvm import build

    rng = np.random.default_rng(3)
    w = rng.standard_normal((16, 200)).astype(np.float32)
    w[:, 150:] *= 8  # the last columns large: one scale per row would crush the others
    x = rng.standard_normal((4, 200)).astype(np.float32)

    def quantized(pipeline):
        m = qir.parse("func @main(%x: tensor<4x200xf32>) -> (tensor<4x16xf32>) {\n"
                      '  %w = qir.param {name = "w"} : tensor<16x200xf32>\n'
                      "  %y = qir.linear %x, %w : tensor<4x16xf32>\n  return %y\n}\n")
        m.params["w"] = w
        PassManager(pipeline, ctx=PassContext(calibration_data=[{"x": x}],
                                              progress=False)).run(m)
        return m

    grouped = quantized(f"weight-only{{bits=4,group-size=128,gptq={str(gptq).lower()}}}")
    (t,) = [op.result.type.quant for op in grouped.main.ops
            if op.name == "qir.param" and op.result.type.is_quantized]
    assert (t.axis, t.block_size, len(t.scales)) == (1, 128, 32)
    per_row = quantized("weight-only{bits=4,group-size=0}")
    want = x @ w.T
    err = {name: np.abs(run(m, {"x": x})["y"] - want).mean()
           for name, m in (("grouped", grouped), ("per_row", per_row))}
    assert err["grouped"] < 0.8 * err["per_row"], err
    (dq,) = [op.result for op in grouped.main.ops if op.name == "qir.dequantize"]
    weights = qir.parse(qir.print_module(grouped))  # the dequantized weights themselves:
    weights.params = grouped.params                 # bit for bit in both backends
    weights.main.set_outputs([v for op in weights.main.ops for v in op.results
                              if v.name == dq.name])
    np.testing.assert_array_equal(build(weights, "llvm").run({"x": x})[dq.name],
                                  run(weights, {"x": x})[dq.name])
    # the float
    # product follows the float-matmul contract (docs/semantics.md), within 1e-5
    got, want = build(grouped, "llvm").run({"x": x})["y"], run(grouped, {"x": x})["y"]
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_matmul_with_constant_rhs_is_grouped_along_k():
    m = qir.parse("func @main(%x: tensor<2x64xf32>) -> (tensor<2x8xf32>) {\n"
                  '  %w = qir.param {name = "w"} : tensor<64x8xf32>\n'
                  "  %y = qir.matmul %x, %w : tensor<2x8xf32>\n  return %y\n}\n")
    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 8)).astype(np.float32)
    m.params["w"] = w
    x = rng.standard_normal((2, 64)).astype(np.float32)
    PassManager("weight-only{bits=8,group-size=32}").run(m)
    param = [op for op in m.main.ops if op.name == "qir.param"][0]
    q = param.result.type.quant
    assert (q.axis, q.block_size, len(q.scales)) == (0, 32, 16)
    scales = np.repeat(np.asarray(q.scales, np.float32).reshape(2, 8), 32, axis=0)
    deq = m.params[param.attr("name")].astype(np.float32) * scales
    assert np.all(np.abs(deq - w) <= scales / 2 * (1 + 1e-6))  # round to nearest, no clip
    np.testing.assert_allclose(list(run(m, {"x": x}).values())[0], x @ deq, rtol=1e-5,
                               atol=1e-5)


def test_gptq_beats_round_to_nearest_on_correlated_inputs():
    err = gptq_experiment()
    # measured: relative output error 0.091 (nearest) -> 0.041 (GPTQ)
    assert err["gptq"] < 0.7 * err["rtn"], err


def test_gptq_needs_calibration_data():
    _, module, _ = run_custom("ffn", "canonicalize")
    with pytest.raises(qir.QirError, match="calib"):
        PassManager("weight-only{gptq=true}", ctx=PassContext(progress=False)).run(module)


def test_awq_protects_salient_input_channels():
    """Inputs with a few large channels (LLM activations' outliers): AWQ scales those
    weight columns up before rounding and divides the input by the same scales (a mul
    before the linear), which lowers the output error against round-to-nearest on
    held-out inputs (measured: relative error 0.114 -> 0.070); awq and gptq together are
    refused."""
    rng = np.random.default_rng(5)
    text = ("func @main(%x: tensor<64x256xf32>) -> (tensor<64x64xf32>) {\n"
            '  %w = qir.param {name = "w"} : tensor<64x256xf32>\n'
            "  %y = qir.linear %x, %w : tensor<64x64xf32>\n  return %y\n}\n")
    w = rng.standard_normal((64, 256)).astype(np.float32)
    big = rng.choice(256, 8, replace=False)

    def inputs(seed):
        x = np.random.default_rng(seed).standard_normal((64, 256)).astype(np.float32)
        x[:, big] *= 30
        return {"x": x}

    errors = {}
    for method in ("", ",awq=true"):
        m = qir.parse(text)
        m.params["w"] = w
        PassManager(f"weight-only{{bits=4,group-size=128{method}}}",
                    ctx=PassContext(calibration_data=[inputs(s) for s in range(4)],
                                    progress=False)).run(m)
        held = inputs(99)
        want = held["x"] @ w.T
        got = list(run(m, held).values())[0]
        errors[method] = float(np.linalg.norm(got - want) / np.linalg.norm(want))
        if method:
            assert any(op.name == "qir.mul" for op in m.main.ops)
    print(errors)
    assert errors[",awq=true"] < 0.8 * errors[""], errors
    m = qir.parse(text)
    m.params["w"] = w
    with pytest.raises(qir.QirError, match="not both"):
        PassManager("weight-only{gptq=true,awq=true}",
                    ctx=PassContext(calibration_data=[inputs(0)], progress=False)).run(m)
