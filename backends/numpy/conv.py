"""Convolution, linear and matmul in float, through BLAS.

Convolution is im2col: a strided window view of the padded input (no copy), gathered
once into a [groups, N*positions, Cin/groups*taps] matrix and multiplied by the weights
in one batched GEMM. Depthwise-style convolutions (one input channel per group) skip
the GEMM and accumulate one vectorised product per kernel tap instead. The integer ops
(quant.py) reuse these kernels on exactly representable floats.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from backends.numpy.common import fused_clamp, result, upcast
from backends.numpy.floatmath import seq_matmul
from backends.numpy.registry import numpy_impl

# Largest im2col matrix built at once (elements); bigger batches run in chunks.
_IM2COL_LIMIT = 1 << 26


def conv_nd(x: np.ndarray, w: np.ndarray, stride, padding, dilation,
            groups: int) -> np.ndarray:
    """PyTorch's convNd (cross-correlation) of x [N, C, *spatial] with w [O, C/groups,
    *kernel], zero padding given as all begins then all ends. x and w share a float
    dtype, which is also the accumulation dtype."""
    nd = x.ndim - 2
    n = x.shape[0]
    o, cg = w.shape[:2]
    kernel = w.shape[2:]
    og = o // groups
    if any(padding):
        pads = [(0, 0), (0, 0)] + [(padding[i], padding[nd + i]) for i in range(nd)]
        x = np.pad(x, pads)
    extent = tuple(dilation[i] * (kernel[i] - 1) + 1 for i in range(nd))
    win = sliding_window_view(x, extent, axis=tuple(range(2, 2 + nd)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)
              + tuple(slice(None, None, d) for d in dilation)]
    out_spatial = win.shape[2:2 + nd]
    # [N, G, Cg, *out, *kernel]: splitting the channel axis keeps this a view.
    win = win.reshape((n, groups, cg) + out_spatial + kernel)
    if cg == 1:
        return _conv_per_tap(win, w, groups, og, out_spatial, kernel)
    taps = math.prod(kernel)
    positions = math.prod(out_spatial)
    # [G, N, *out, Cg, *kernel] -> [G, N*P, Cg*taps]; one copy (the im2col matrix).
    order = (1, 0) + tuple(range(3, 3 + nd)) + (2,) + tuple(range(3 + nd, 3 + 2 * nd))
    wmat = w.reshape(groups, og, cg * taps).transpose(0, 2, 1)
    chunk = max(1, _IM2COL_LIMIT // max(1, groups * positions * cg * taps))
    outs = []
    for start in range(0, n, chunk):
        part = win[start:start + chunk]
        cols = part.transpose(order).reshape(groups, part.shape[0] * positions, cg * taps)
        outs.append(np.matmul(cols, wmat).reshape((groups, part.shape[0]) + out_spatial
                                                  + (og,)))
    out = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=1)
    # [G, N, *out, Og] -> [N, G, Og, *out] -> [N, O, *out]
    out = out.transpose((1, 0, 2 + nd) + tuple(range(2, 2 + nd)))
    return np.ascontiguousarray(out).reshape((n, o) + out_spatial)


def _conv_per_tap(win: np.ndarray, w: np.ndarray, groups: int, og: int, out_spatial,
                  kernel) -> np.ndarray:
    """Convolution with one input channel per group (depthwise): sum over kernel taps of
    the shifted input times that tap's weight, vectorised over batch and channels."""
    nd = len(kernel)
    n = win.shape[0]
    wt = w.reshape((groups, og, math.prod(kernel)))
    out = np.zeros((n, groups, og) + out_spatial, dtype=np.result_type(win, w))
    lead = (slice(None), slice(None), 0) + (slice(None),) * nd
    for t, tap in enumerate(np.ndindex(*kernel)):
        shifted = win[lead + tap][:, :, None]  # [N, G, 1, *out]
        out += shifted * wt[:, :, t].reshape((1, groups, og) + (1,) * nd)
    return out.reshape((n, groups * og) + out_spatial)


def _conv_impl(op, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    x, w = upcast(x), upcast(w)
    y = conv_nd(x, w, op.attr("stride"), op.attr("padding"), op.attr("dilation"),
                op.attr("groups"))
    if b is not None:
        y += upcast(b).reshape((1, -1) + (1,) * (x.ndim - 2))
    return result(op, fused_clamp(op, y))


numpy_impl("qir.conv1d")(_conv_impl)
numpy_impl("qir.conv2d")(_conv_impl)


def linear_nd(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x [..., K] @ w[N, K]^T as one GEMM over all leading dims."""
    lead = x.shape[:-1]
    return np.matmul(x.reshape(-1, x.shape[-1]), w.T).reshape(lead + (w.shape[0],))


def _sequential(op) -> bool:
    return op.attr("accumulate") == "sequential"


@numpy_impl("qir.linear")
def linear(op, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    x, w = upcast(x), upcast(w)
    y = seq_matmul(x, w.T) if _sequential(op) else linear_nd(x, w)
    if b is not None:
        y += upcast(b)
    return result(op, fused_clamp(op, y))


@numpy_impl("qir.matmul")
def matmul(op, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy matmul: the same 1-d promotion and batch broadcasting rules as torch."""
    a, b = upcast(a), upcast(b)
    if not _sequential(op):
        return result(op, fused_clamp(op, np.matmul(a, b)))
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    y = seq_matmul(a2, b2)
    if b.ndim == 1:
        y = y[..., 0]
    if a.ndim == 1:
        y = y[..., 0, :] if b.ndim > 1 else y[..., 0]
    return result(op, fused_clamp(op, y))
