"""Helpers shared by the numpy implementations: dtype handling for half-precision floats
and broadcastable quantization parameters."""

from __future__ import annotations

import numpy as np

from qir.ir import Op
from qir.types import QuantType, TensorType

F32 = np.dtype(np.float32)


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype arithmetic runs in: f16 and bf16 are computed in f32 and rounded once at
    the end (as PyTorch's CPU kernels do); every other dtype is computed as itself."""
    return F32 if is_low_float(dtype) else np.dtype(dtype)


def upcast(x: np.ndarray) -> np.ndarray:
    """`x` in its compute dtype (a no-op for f32, f64 and integers)."""
    return x.astype(compute_dtype(x.dtype), copy=False)


def is_low_float(dtype: np.dtype) -> bool:
    """f16, bf16 and fp8: floats numpy does not compute in natively."""
    dtype = np.dtype(dtype)
    return dtype.name in ("float16", "bfloat16", "float8_e4m3fn", "float8_e5m2")


def result(op: Op, x, i: int = 0) -> np.ndarray:
    """`x` as an array of result i's dtype (rounds f32 to f16/bf16 when needed)."""
    return np.asarray(x).astype(op.results[i].type.dtype, copy=False)


def fused_clamp(op: Op, y: np.ndarray) -> np.ndarray:
    """Apply an op's fused activation (`clamp_min` / `clamp_max` on float conv, linear,
    matmul and add), in the compute dtype, before the final rounding to the result type."""
    lo, hi = op.attrs.get("clamp_min"), op.attrs.get("clamp_max")
    if lo is None and hi is None:
        return y
    return np.clip(y, lo if lo is not None else -np.inf, hi if hi is not None else np.inf)


def quant_params(q: QuantType, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(scale as float32, zero point as int64), shaped to broadcast against a tensor of
    `shape`: scalars per-tensor, size-1 dims except `axis` per-axis, and the full shape
    per-group (each group's scale repeated over its `block_size` elements)."""
    scales = np.asarray(q.scales, dtype=np.float64).astype(np.float32)
    zps = np.asarray(q.zero_points, dtype=np.int64)
    if q.axis is None:
        return scales.reshape(()), zps.reshape(())
    if q.block_size is None:
        bshape = [1] * len(shape)
        bshape[q.axis] = shape[q.axis]
        return scales.reshape(bshape), zps.reshape(bshape)
    grid = q.group_shape(shape)
    scales = np.repeat(scales.reshape(grid), q.block_size, axis=q.axis)
    zps = np.repeat(zps.reshape(grid), q.block_size, axis=q.axis)
    return scales, zps


def quantize_values(x: np.ndarray, ty: TensorType) -> np.ndarray:
    """Quantize real values `x` (broadcastable to `ty.shape`) to `ty`'s storage: the
    qir.quantize rule, documented in backends/numpy/quant.py."""
    q = ty.quant
    scale, zp = quant_params(q, ty.shape)
    x32 = np.asarray(x).astype(np.float32, copy=False)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if q.is_fp8:
            limit = np.float32(q.qmax)
            return np.clip(x32 / scale, -limit, limit).astype(ty.dtype)
        # rint in f32 (the specified division); the zero point is added and the result
        # clipped in f64, where every i32 storage bound is exact.
        r = np.rint(x32 / scale).astype(np.float64)
        return np.clip(r + zp, q.storage_min, q.storage_max).astype(ty.dtype)


def storage_as_float(x: np.ndarray) -> np.ndarray:
    """fp8 storage as f32 for comparisons (exact); integer storage unchanged."""
    return x.astype(np.float32) if is_low_float(x.dtype) else x
