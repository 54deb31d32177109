"""2-d pooling over NCHW with PyTorch's exact window rules.

Windows are strided views of the padded input. With ceil_mode the output may have one
more window per dim, which overhangs the padded input on the right; the output sizes
come from the op's result type (the IR already dropped windows that would start in the
right padding). avg_pool2d divisors follow torch's AvgPoolKernel: a window clipped to
the padded input counts its padding when count_include_pad (but never the ceil_mode
overhang); otherwise only the real elements it covers.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from backends.numpy.common import is_low_float, result, upcast
from backends.numpy.registry import numpy_impl
from qir.ops.nn import avg_pool_window_counts


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
    total = win.sum(axis=(-2, -1))
    override = op.attr("divisor_override")
    if override is not None:
        return result(op, total / x.dtype.type(override))
    include = op.attr("count_include_pad")
    ch, cw = (avg_pool_window_counts(x.shape[2 + i], kernel[i], stride[i], padding[i],
                                     out_hw[i], include) for i in range(2))
    divisor = (ch[:, None] * cw[None, :]).astype(x.dtype)
    return result(op, total / divisor)


def _adaptive_matrix(n_in: int, n_out: int, dtype) -> np.ndarray:
    """[n_out, n_in] averaging matrix of torch's adaptive pooling along one dim: output i
    averages inputs floor(i*In/Out) .. ceil((i+1)*In/Out) - 1."""
    i = np.arange(n_out)
    start = (i * n_in) // n_out
    end = -((-(i + 1) * n_in) // n_out)
    cols = np.arange(n_in)
    inside = (cols[None, :] >= start[:, None]) & (cols[None, :] < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


@numpy_impl("qir.adaptive_avg_pool2d")
def adaptive_avg_pool2d(op, x: np.ndarray) -> np.ndarray:
    """Separable: average rows then columns, each as a small matmul."""
    x = upcast(x)
    oh, ow = op.attr("output_size")
    ph = _adaptive_matrix(x.shape[2], oh, x.dtype)
    pw = _adaptive_matrix(x.shape[3], ow, x.dtype)
    return result(op, np.matmul(np.matmul(ph, x), pw.T))
