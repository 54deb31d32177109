"""Helpers shared by the numpy implementations: dtype handling for half-precision floats;
the quantization parameters and rule come from qir/quant.py."""

from __future__ import annotations

import numpy as np

from qir.ir import Op

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


def storage_as_float(x: np.ndarray) -> np.ndarray:
    """fp8 storage as f32 for comparisons (exact); integer storage unchanged."""
    return x.astype(np.float32) if is_low_float(x.dtype) else x
