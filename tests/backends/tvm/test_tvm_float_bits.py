"""Float ops that every backend computes bit for bit (docs/semantics.md, "Reproducible
float ops"): the llvm build against the numpy interpreter, compared as bits, on values
that probe every branch of qir/floatmath.py and long sums whose order matters."""

from __future__ import annotations

import numpy as np
from tvm_helpers import case, cases_module, rand

import qir
from backends.numpy import run
from backends.tvm import build
from qir import floatmath


def _edges() -> np.ndarray:
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 0.625, -0.625, 1.0, -1.0, 8.0, -8.0,
               floatmath.EXP_HI, floatmath.EXP_LO, 88.8, -87.4, 1e-30, -1e-30, 3.0, -3.0]
    rng = np.random.default_rng(3)
    body = np.concatenate([rng.standard_normal(900) * 4, np.linspace(-12, 12, 1101)])
    return np.concatenate([special, body]).astype(np.float32).reshape(4, 505)


def _assert_same_bits(module, inputs):
    want = run(module, inputs)
    got = build(module, "llvm").run(inputs)
    for key, w in want.items():
        g = got[key]
        assert g.dtype == w.dtype and g.shape == w.shape
        same = (g.view(np.uint32) == w.view(np.uint32)) | (np.isnan(g) & np.isnan(w))
        # a zero's sign may differ where one side starts a sum from +0 (0.0 == -0.0)
        same |= (g == 0) & (w == 0)
        assert same.all(), f"{key}: {np.size(same) - same.sum()} of {w.size} values differ"


def test_transcendental_ops_are_bit_exact():
    x = _edges()
    cases = [case(n, x) for n in ("qir.exp", "qir.sigmoid", "qir.silu", "qir.tanh",
                                  "qir.erf", "qir.gelu", "qir.hardswish", "qir.hardsigmoid",
                                  "qir.sqrt", "qir.rsqrt", "qir.reciprocal")]
    cases.append(case("qir.gelu", x, attrs={"approximate": "tanh"}))
    module, inputs, _ = cases_module(cases)
    _assert_same_bits(module, inputs)


def test_reductions_and_normalisations_are_bit_exact():
    """Values spanning 2^20 in magnitude, so that a different summation order would show."""
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((2, 6, 9, 7)) * np.exp2(rng.integers(-10, 10, (2, 6, 9, 7))))
    x = x.astype(np.float32)
    w, b = rand(7, seed=5), rand(7, seed=6)
    scores = rand(2, 3, 5, 5, seed=7, scale=4.0)
    cases = [
        case("qir.reduce_sum", x, attrs={"axes": [1, 3]}),
        case("qir.reduce_mean", x, attrs={"axes": [2, 3], "keepdims": True}),
        case("qir.reduce_mean", x),
        case("qir.softmax", x, attrs={"axis": 2}),
        case("qir.layer_norm", x, w, b, attrs={"normalized_ndim": 1, "eps": 1e-5}),
        case("qir.group_norm", x[:, :6], attrs={"groups": 3, "eps": 1e-5}),
        case("qir.avg_pool2d", x, attrs={"kernel": [3, 2], "stride": [2, 2],
                                         "padding": [1, 1], "count_include_pad": False}),
        case("qir.avg_pool2d", x, attrs={"kernel": [2, 2], "ceil_mode": True}),
        case("qir.adaptive_avg_pool2d", x, attrs={"output_size": [4, 3]}),
        case("qir.adaptive_avg_pool2d", x, attrs={"output_size": [1, 1]}),
        case("qir.adaptive_avg_pool2d", x, attrs={"output_size": [2, 5]}),
        case("qir.scaled_dot_product_attention", scores, rand(2, 3, 5, 5, seed=8),
             rand(2, 3, 5, 5, seed=9), attrs={"is_causal": True}),
    ]
    module, inputs, _ = cases_module(cases)
    _assert_same_bits(module, inputs)


def test_products_are_never_fused_into_the_add_that_follows():
    """a*b + c and a - b*c on tensors small enough that LLVM keeps every intermediate in
    registers: a fused multiply-add would round once, the interpreter rounds twice."""
    module = qir.parse("""
func @main(%a: tensor<2x5xf32>, %b: tensor<2x5xf32>, %c: tensor<2x5xf32>) -> (tensor<2x5xf32>, tensor<2x5xf32>) {
  %m = qir.mul %a, %b : tensor<2x5xf32>
  %s = qir.add %m, %c : tensor<2x5xf32>
  %n = qir.mul %b, %c : tensor<2x5xf32>
  %d = qir.sub %a, %n : tensor<2x5xf32>
  return %s, %d
}
""")
    rng = np.random.default_rng(11)
    for _ in range(3):
        inputs = {k: rng.standard_normal((2, 5)).astype(np.float32) for k in "abc"}
        _assert_same_bits(module, inputs)


def test_attention_products_run_the_sequential_kernel_bit_for_bit():
    """scaled_dot_product_attention at sizes where the sequential batched-matmul kernel
    vectorises over outputs (backends/tvm/kernels/dense.py): still each dot product
    summed in order with every product rounded, so bit for bit the interpreter's; with
    grouped KV heads (broadcast) and a causal mask."""
    q, k, v = rand(2, 4, 32, 16, seed=1), rand(2, 4, 48, 16, seed=2), rand(2, 4, 48, 32, seed=3)
    cases = [case("qir.scaled_dot_product_attention", q, k, v),
             case("qir.scaled_dot_product_attention", q, k[:, :, :32], v[:, :, :32],
                  attrs={"is_causal": True})]
    module, inputs, _ = cases_module(cases)
    assert any(name.startswith("qir_seqbmm") for name in build(module, "llvm").signature.kernels)
    _assert_same_bits(module, inputs)
