"""Convolution, linear/matmul, pooling, normalisation, embedding and attention against
PyTorch eager in float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy_helpers import rand, run_op

from qir.types import TensorType

RTOL, ATOL = 1e-4, 1e-5


def close(got: np.ndarray, want: torch.Tensor, rtol=RTOL, atol=ATOL) -> None:
    want = want.detach().numpy()
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


T = torch.from_numpy

# --- convolution ---------------------------------------------------------------------------

CONV2D_CASES = [
    # (N, C, H, W, O, kernel, stride, padding [t, l, b, r], dilation, groups, bias)
    (2, 3, 9, 8, 4, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, True),
    (1, 3, 10, 11, 5, (3, 2), (2, 3), (1, 2, 1, 2), (1, 1), 1, False),
    (1, 4, 12, 12, 6, (3, 3), (1, 2), (2, 2, 2, 2), (2, 3), 2, True),
    (2, 8, 7, 9, 8, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 8, True),    # depthwise
    (1, 4, 9, 9, 8, (5, 5), (2, 2), (2, 2, 2, 2), (1, 1), 4, False),   # depthwise x2
    (1, 6, 8, 8, 6, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 3, True),    # grouped 1x1
    (1, 1, 6, 7, 3, (3, 3), (1, 1), (0, 1, 2, 0), (1, 1), 1, True),    # asymmetric pads
]


@pytest.mark.parametrize("case", CONV2D_CASES)
def test_conv2d(case):
    n, c, h, w, o, k, stride, pad, dil, groups, has_bias = case
    x, wt, b = rand(n, c, h, w), rand(o, c // groups, *k, seed=1), rand(o, seed=2)
    args = (x, wt, b) if has_bias else (x, wt)
    got = run_op("qir.conv2d", *args, attrs={"stride": list(stride), "padding": list(pad),
                                             "dilation": list(dil), "groups": groups})
    xt = F.pad(T(x), (pad[1], pad[3], pad[0], pad[2]))
    want = F.conv2d(xt, T(wt), T(b) if has_bias else None, stride, 0, dil, groups)
    close(got, want)


@pytest.mark.parametrize("case", [
    (2, 4, 17, 6, 3, 1, (0, 0), 1, 1, True),
    (1, 6, 20, 6, 5, 3, (2, 1), 2, 3, False),
    (1, 6, 12, 6, 3, 1, (1, 1), 1, 6, True),   # depthwise
])
def test_conv1d(case):
    n, c, length, o, k, stride, pad, dil, groups, has_bias = case
    x, wt, b = rand(n, c, length), rand(o, c // groups, k, seed=1), rand(o, seed=2)
    args = (x, wt, b) if has_bias else (x, wt)
    got = run_op("qir.conv1d", *args, attrs={"stride": [stride], "padding": list(pad),
                                             "dilation": [dil], "groups": groups})
    want = F.conv1d(F.pad(T(x), pad), T(wt), T(b) if has_bias else None, stride, 0, dil, groups)
    close(got, want)


def test_conv2d_large_batch_runs_in_chunks(monkeypatch):
    from backends.numpy import conv

    monkeypatch.setattr(conv, "_IM2COL_LIMIT", 500)
    x, wt = rand(5, 4, 6, 6), rand(4, 2, 3, 3, seed=1)
    got = run_op("qir.conv2d", x, wt, attrs={"groups": 2})
    close(got, F.conv2d(T(x), T(wt), groups=2))


# --- linear and matmul -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 8), (2, 3, 8), (8,)])
def test_linear(shape):
    x, w, b = rand(*shape), rand(6, 8, seed=1), rand(6, seed=2)
    close(run_op("qir.linear", x, w, b), F.linear(T(x), T(w), T(b)))
    close(run_op("qir.linear", x, w), F.linear(T(x), T(w)))


@pytest.mark.parametrize("a, b", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (2, 4, 5)),
                                  ((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (4,)), ((4,), (4,))])
def test_matmul_broadcasting(a, b):
    x, y = rand(*a), rand(*b, seed=1)
    close(run_op("qir.matmul", x, y), torch.matmul(T(x), T(y)))


# --- pooling ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel, stride, padding, dilation, ceil_mode", [
    ((2, 2), (2, 2), (0, 0), (1, 1), False),
    ((3, 3), (2, 2), (1, 1), (1, 1), False),
    ((3, 3), (2, 2), (1, 1), (1, 1), True),
    ((2, 3), (2, 2), (0, 1), (1, 1), True),
    ((3, 2), (3, 2), (1, 0), (2, 1), True),
    ((3, 3), (1, 1), (1, 1), (2, 2), False),
])
def test_max_pool2d(kernel, stride, padding, dilation, ceil_mode):
    x = rand(2, 3, 11, 10)
    got = run_op("qir.max_pool2d", x, attrs={"kernel": list(kernel), "stride": list(stride),
                                             "padding": list(padding),
                                             "dilation": list(dilation),
                                             "ceil_mode": ceil_mode})
    close(got, F.max_pool2d(T(x), kernel, stride, padding, dilation, ceil_mode))


def test_max_pool2d_of_negative_values_ignores_padding():
    x = -np.abs(rand(1, 1, 5, 5)) - 1
    got = run_op("qir.max_pool2d", x, attrs={"kernel": [3, 3], "stride": [2, 2],
                                             "padding": [1, 1]})
    close(got, F.max_pool2d(T(x), 3, 2, 1))


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize("kernel, stride, padding, divisor", [
    ((2, 2), (2, 2), (0, 0), None),
    ((3, 3), (2, 2), (1, 1), None),
    ((3, 2), (2, 3), (1, 1), None),
    ((3, 3), (3, 3), (1, 0), None),
    ((3, 3), (2, 2), (1, 1), 5),
])
def test_avg_pool2d(kernel, stride, padding, divisor, count_include_pad, ceil_mode):
    x = rand(2, 3, 10, 11)
    got = run_op("qir.avg_pool2d", x, attrs={
        "kernel": list(kernel), "stride": list(stride), "padding": list(padding),
        "ceil_mode": ceil_mode, "count_include_pad": count_include_pad,
        "divisor_override": divisor})
    want = F.avg_pool2d(T(x), kernel, stride, padding, ceil_mode, count_include_pad, divisor)
    close(got, want)


def test_avg_pool2d_ceil_mode_edge_window_divisor():
    # 5 wide, kernel 2, stride 2, padding 1, ceil_mode: windows at -1, 1, 3, 5; the last
    # overhangs the padded input (length 7) by one. torch divides it by 1 (the padding
    # it covers counts, the overhang does not) with count_include_pad.
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    for include in (True, False):
        got = run_op("qir.avg_pool2d", x, attrs={"kernel": [2, 2], "stride": [2, 2],
                                                 "padding": [1, 1], "ceil_mode": True,
                                                 "count_include_pad": include})
        close(got, F.avg_pool2d(T(x), 2, 2, 1, True, include))


@pytest.mark.parametrize("size, out", [((7, 5), (3, 2)), ((5, 5), (3, 3)), ((10, 7), (4, 3)),
                                       ((6, 6), (1, 1)), ((3, 4), (5, 6)), ((8, 8), (8, 8))])
def test_adaptive_avg_pool2d(size, out):
    x = rand(2, 3, *size)
    got = run_op("qir.adaptive_avg_pool2d", x, attrs={"output_size": list(out)})
    close(got, F.adaptive_avg_pool2d(T(x), out))


# --- normalisation, embedding ------------------------------------------------------------------


@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm(affine):
    x, mean, var = rand(2, 4, 5, 3), rand(4, seed=1), np.abs(rand(4, seed=2)) + 0.1
    w, b = rand(4, seed=3), rand(4, seed=4)
    args = (x, mean, var, w, b) if affine else (x, mean, var)
    got = run_op("qir.batch_norm", *args, attrs={"eps": 1e-3})
    want = F.batch_norm(T(x), T(mean), T(var), T(w) if affine else None,
                        T(b) if affine else None, False, 0.0, 1e-3)
    close(got, want)


@pytest.mark.parametrize("ndim", [1, 2])
def test_layer_norm(ndim):
    x = rand(2, 5, 6, scale=3.0) + 4
    shape = x.shape[-ndim:]
    w, b = rand(*shape, seed=1), rand(*shape, seed=2)
    got = run_op("qir.layer_norm", x, w, b, attrs={"normalized_ndim": ndim, "eps": 1e-6})
    close(got, F.layer_norm(T(x), shape, T(w), T(b), 1e-6))
    got = run_op("qir.layer_norm", x, attrs={"normalized_ndim": ndim})
    close(got, F.layer_norm(T(x), shape))


def test_group_norm():
    x, w, b = rand(2, 6, 4, 5) * 2 + 1, rand(6, seed=1), rand(6, seed=2)
    close(run_op("qir.group_norm", x, w, b, attrs={"groups": 3}),
          F.group_norm(T(x), 3, T(w), T(b)))
    close(run_op("qir.group_norm", x, attrs={"groups": 2, "eps": 1e-3}),
          F.group_norm(T(x), 2, eps=1e-3))


def test_embedding():
    table = rand(10, 4)
    ids = np.array([[0, 9, 3], [3, 3, 1]], dtype=np.int64)
    close(run_op("qir.embedding", table, ids), F.embedding(T(ids), T(table)))


# --- attention --------------------------------------------------------------------------------


def _sdpa(q, k, v, mask=None, attrs=None):
    args = (q, k, v) if mask is None else (q, k, v, mask)
    return run_op("qir.scaled_dot_product_attention", *args, attrs=attrs)


def test_sdpa_plain_and_scaled():
    q, k, v = rand(2, 3, 4, 8), rand(2, 3, 6, 8, seed=1), rand(2, 3, 6, 5, seed=2)
    close(_sdpa(q, k, v), F.scaled_dot_product_attention(T(q), T(k), T(v)))
    close(_sdpa(q, k, v, attrs={"scale": 0.3}),
          F.scaled_dot_product_attention(T(q), T(k), T(v), scale=0.3))


def test_sdpa_bool_mask_keeps_true_positions():
    q, k, v = rand(2, 2, 4, 8), rand(2, 2, 6, 8, seed=1), rand(2, 2, 6, 8, seed=2)
    mask = np.random.default_rng(3).random((2, 1, 4, 6)) > 0.4
    mask[0, 0, 1] = False  # a row with nothing kept: torch's safe softmax gives zeros
    got = _sdpa(q, k, v, mask)
    close(got, F.scaled_dot_product_attention(T(q), T(k), T(v), attn_mask=T(mask)))
    assert np.all(got[0, :, 1] == 0)


def test_sdpa_float_mask_is_added():
    q, k, v = rand(1, 2, 4, 8), rand(1, 2, 6, 8, seed=1), rand(1, 2, 6, 8, seed=2)
    mask = rand(4, 6, seed=3)
    mask[:, -1] = -np.inf
    close(_sdpa(q, k, v, mask),
          F.scaled_dot_product_attention(T(q), T(k), T(v), attn_mask=T(mask)))


@pytest.mark.parametrize("lq, lk", [(5, 5), (3, 6), (6, 3)])
def test_sdpa_causal(lq, lk):
    q, k, v = rand(2, lq, 8), rand(2, lk, 8, seed=1), rand(2, lk, 4, seed=2)
    got = _sdpa(q, k, v, attrs={"is_causal": True})
    want = F.scaled_dot_product_attention(T(q), T(k), T(v), is_causal=True)
    close(got, want)


# --- half precision ---------------------------------------------------------------------------


@pytest.mark.parametrize("elem, tdtype", [("bf16", torch.bfloat16), ("f16", torch.float16)])
def test_half_precision_linear_and_conv(elem, tdtype):
    xt, wt = torch.randn(3, 2, 6, 6).to(tdtype), torch.randn(4, 2, 3, 3).to(tdtype)
    x, w = xt.float().numpy(), wt.float().numpy()
    dtype = TensorType((1,), elem).dtype
    got = run_op("qir.conv2d", x.astype(dtype), w.astype(dtype))
    assert got.dtype == dtype
    want = F.conv2d(xt.float(), wt.float()).to(tdtype).float().numpy()
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=1e-2, atol=1e-2)
    lt, lw = torch.randn(5, 16).to(tdtype), torch.randn(3, 16).to(tdtype)
    lin = run_op("qir.linear", lt.float().numpy().astype(dtype),
                 lw.float().numpy().astype(dtype))
    want = F.linear(lt, lw).float().numpy()
    np.testing.assert_allclose(lin.astype(np.float32), want, rtol=1e-2, atol=1e-2)
