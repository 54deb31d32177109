"""The quantization rule every backend shares: a quant type's parameters shaped to
broadcast against its tensor, and quantize (real values to storage) as qir.quantize
defines it (docs/semantics.md). The numpy interpreter and the TVM backend both use these,
so neither backend imports the other."""

from __future__ import annotations

import numpy as np

from qir.types import QuantType, TensorType


def quant_params(q: QuantType, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(scale as float32, zero point as int64), shaped to broadcast against a tensor of
    `shape`: scalars per-tensor, size-1 dims except `axis` per-axis, and the full shape
    per-group (each group's scale repeated over its `block_size` elements, the last group
    shorter when the block size does not divide the axis)."""
    scales = np.asarray(q.scales, dtype=np.float64).astype(np.float32)
    zps = np.asarray(q.zero_points, dtype=np.int64)
    if q.axis is None:
        return scales.reshape(()), zps.reshape(())
    if q.block_size is None:
        bshape = [1] * len(shape)
        bshape[q.axis] = shape[q.axis]
        return scales.reshape(bshape), zps.reshape(bshape)
    grid = q.group_shape(shape)
    keep = np.arange(shape[q.axis])  # a shorter last group: its scale over what is left
    scales = np.repeat(scales.reshape(grid), q.block_size, axis=q.axis).take(keep, q.axis)
    zps = np.repeat(zps.reshape(grid), q.block_size, axis=q.axis).take(keep, q.axis)
    return scales, zps


def quantize_values(x: np.ndarray, ty: TensorType) -> np.ndarray:
    """Quantize real values `x` (broadcastable to `ty.shape`) to `ty`'s storage: the
    qir.quantize rule, documented in backends/numpy/quant.py."""
    q = ty.quant
    scale, zp = quant_params(q, ty.shape)
    x32 = np.asarray(x).astype(np.float32, copy=False)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if q.is_codebook:
            return codebook_indices(x32 / scale, q.levels).astype(ty.dtype)
        if q.is_fp8:
            limit = np.float32(q.qmax)
            return np.clip(x32 / scale, -limit, limit).astype(ty.dtype)
        # rint in f32 (the specified division); the zero point is added and the result
        # clipped in f64, where every i32 storage bound is exact. NaN stores the zero
        # point (the real 0), +-Inf the storage bounds (docs/semantics.md).
        r = np.rint(x32 / scale).astype(np.float64)
        r = np.where(np.isnan(r), 0.0, r)
        return np.clip(r + zp, q.storage_min, q.storage_max).astype(ty.dtype)


def codebook_indices(v: np.ndarray, levels) -> np.ndarray:
    """The index of the level nearest each float32 value (ties: the lower level; NaN:
    the level nearest 0), as int64."""
    table = np.asarray(levels, np.float32)
    mids = ((table[:-1].astype(np.float64) + table[1:]) / 2).astype(np.float32)
    idx = np.searchsorted(mids, np.asarray(v, np.float32), side="left")
    return np.where(np.isnan(v), int(np.argmin(np.abs(table))), idx).astype(np.int64)


def dequantize_values(q: np.ndarray, ty: TensorType) -> np.ndarray:
    """Stored values of quantized type `ty` as float32 reals: float32(q - zp) * float32(s),
    q - zp exact in integers (the qir.dequantize rule); for a codebook type
    float32(levels[q]) * float32(s)."""
    scale, zp = quant_params(ty.quant, ty.shape)
    if ty.quant.is_codebook:
        table = np.asarray(ty.quant.levels, np.float32)
        return table[np.clip(q.astype(np.int64), 0, len(table) - 1)] * scale
    if ty.quant.is_fp8:
        return q.astype(np.float32) * scale
    return (q.astype(np.int64) - zp).astype(np.float32) * scale
