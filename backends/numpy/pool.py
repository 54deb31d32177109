"""2-d pooling over NCHW with PyTorch's exact window rules.

Windows are strided views of the padded input. With ceil_mode the output may have one
more window per dim, which overhangs the padded input on the right; the output sizes
come from the op's result type (the IR already dropped windows that would start in the
right padding). Window sums accumulate in row-major order (backends/numpy/floatmath.py).
avg_pool2d divisors follow torch's AvgPoolKernel: a window clipped to
the padded input counts its padding when count_include_pad (but never the ceil_mode
overhang); otherwise only the real elements it covers.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from backends.numpy.common import is_low_float, result, upcast
from backends.numpy.floatmath import seq_sum
from backends.numpy.registry import numpy_impl
from qir.ops.nn import adaptive_pool_windows, avg_pool_window_counts


def _pool_windows(x: np.ndarray, kernel, stride, padding, dilation, out_hw,
                  fill) -> np.ndarray:
    """View [N, C, OH, OW, KH, KW] of the windows of `x` padded with `fill`."""
    pads, extent = [(0, 0), (0, 0)], []
    for i in range(2):
        eff = dilation[i] * (kernel[i] - 1) + 1
        need = (out_hw[i] - 1) * stride[i] + eff  # padded length the last window reaches
        pads.append((padding[i], max(0, need - x.shape[2 + i] - padding[i])))
        extent.append(eff)
    if any(lo or hi for lo, hi in pads):
        x = np.pad(x, pads, constant_values=fill)
    win = sliding_window_view(x, tuple(extent), axis=(2, 3))
    win = win[:, :, ::stride[0], ::stride[1], ::dilation[0], ::dilation[1]]
    return win[:, :, :out_hw[0], :out_hw[1]]


def _stride(op) -> list[int]:
    return op.attr("stride") or op.attr("kernel")


@numpy_impl("qir.max_pool2d")
def max_pool2d(op, x: np.ndarray) -> np.ndarray:
    """Max over each window; padding is -inf (for quantized storage: the storage
    minimum, which no stored value is below)."""
    ty = op.operands[0].type
    if ty.is_quantized and not ty.quant.is_fp8:
        fill = ty.quant.storage_min
    else:
        x = x.astype(np.float32) if is_low_float(x.dtype) else x
        fill = -np.inf
    win = _pool_windows(x, op.attr("kernel"), _stride(op), op.attr("padding"),
                        op.attr("dilation"), op.result.type.shape[2:], fill)
    return result(op, win.max(axis=(-2, -1)))


@numpy_impl("qir.avg_pool2d")
def avg_pool2d(op, x: np.ndarray) -> np.ndarray:
    x = upcast(x)
    kernel, stride, padding = op.attr("kernel"), _stride(op), op.attr("padding")
    out_hw = op.result.type.shape[2:]
    win = _pool_windows(x, kernel, stride, padding, (1, 1), out_hw, 0)
    total = seq_sum(win, (-2, -1))
    override = op.attr("divisor_override")
    if override is not None:
        return result(op, total / x.dtype.type(override))
    include = op.attr("count_include_pad")
    ch, cw = (avg_pool_window_counts(x.shape[2 + i], kernel[i], stride[i], padding[i],
                                     out_hw[i], include) for i in range(2))
    divisor = (ch[:, None] * cw[None, :]).astype(x.dtype)
    return result(op, total / divisor)


@numpy_impl("qir.adaptive_avg_pool2d")
def adaptive_avg_pool2d(op, x: np.ndarray) -> np.ndarray:
    """Each window's sum, accumulated row by row in order, over its element count."""
    x = upcast(x)
    (sh, nh), (sw, nw) = (adaptive_pool_windows(x.shape[2 + i], op.attr("output_size")[i])
                          for i in range(2))
    acc = np.zeros(x.shape[:2] + (len(sh), len(sw)), dtype=x.dtype)
    for i in range(int(nh.max())):
        rows = x[:, :, np.minimum(sh + i, x.shape[2] - 1)]
        for j in range(int(nw.max())):
            value = rows[:, :, :, np.minimum(sw + j, x.shape[3] - 1)]
            valid = (i < nh)[:, None] & (j < nw)[None, :]
            acc = np.where(valid, acc + value, acc)
    return result(op, acc / (nh[:, None] * nw[None, :]).astype(x.dtype))
