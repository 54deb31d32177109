"""Quantization arithmetic done once, at compile time, in double precision: fixed-point
multipliers, quantizing constant tensors, building quantized element types."""

from __future__ import annotations

import math

import numpy as np

from qir.diagnostics import QirError
from qir.types import INT_RANGES, QuantType


def quantize_multiplier(m: float) -> tuple[int, int]:
    """(M, e) with m ≈ M · 2^(e − 31), M in [2^30, 2^31) (TFLite QuantizeMultiplier).

    m = 0 gives (0, 0). Multipliers too small for e >= -31 keep e = -31 and a smaller
    M (precision degrades gracefully to 0). m >= 2^30 is rejected: no sane scale ratio
    is that large."""
    if not math.isfinite(m) or m < 0:
        raise QirError(f"requantize multiplier {m} must be finite and non-negative")
    if m == 0.0:
        return 0, 0
    q, e = math.frexp(m)
    big = round_half_away(q * 2**31)
    if big == 2**31:
        big //= 2
        e += 1
    if e > 30:
        raise QirError(f"requantize multiplier {m} is too large (scale ratio >= 2^30)")
    if e < -31:
        big = round_half_away(big * 2.0 ** (e + 31))
        e = -31
    return int(big), int(e)


def pow2_ceil(s: float) -> float:
    """The least power of two >= s (s > 0): a power-of-two scale that still covers the
    range s was chosen for."""
    m, e = math.frexp(s)
    return s if m == 0.5 else math.ldexp(1.0, e)


def shift_multiplier(m: float, pow2: bool, rounding: str = "single") -> tuple[int, int]:
    """quantize_multiplier(m); between power-of-two scales (`pow2`) under single rounding,
    m = 2^k < 1 gives (1, k + 31) instead: y = (x + 2^(s - 1)) >> s with s = -k, a
    rounding shift with no multiply (the same integers as (2^30, k + 1))."""
    if pow2 and rounding == "single" and m > 0:
        frac, e = math.frexp(m)
        if frac == 0.5 and -62 <= e - 1 <= -1:
            return 1, e - 1 + 31
    return quantize_multiplier(m)


def round_half_away(x: float) -> int:
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def multiplier_value(M: int, e: int) -> float:
    return M * 2.0 ** (e - 31)


def storage_range(dtype: str, narrow: bool = False) -> tuple[int, int]:
    lo, hi = INT_RANGES[dtype]
    return (lo + 1 if narrow and lo < 0 else lo), hi


def quantize_array(x: np.ndarray, q: QuantType) -> np.ndarray:
    """Quantize a constant exactly as qir.quantize does at run time (float32 division,
    round half to even, clamp), per tensor or per axis."""
    x = np.asarray(x, dtype=np.float32)
    scales = np.asarray(q.scales, dtype=np.float32)
    zps = np.asarray(q.zero_points, dtype=np.int64)
    if q.axis is not None:
        shape = [1] * x.ndim
        shape[q.axis] = -1
        scales, zps = scales.reshape(shape), zps.reshape(shape)
    out = np.rint(x / scales).astype(np.int64) + zps
    from qir.types import numpy_dtype

    return np.clip(out, q.storage_min, q.storage_max).astype(numpy_dtype(q.storage))


def quantize_bias(b: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """int32 bias with per-channel scale s_in·s_w[c] (float64 division, half to even)."""
    q = np.rint(np.asarray(b, np.float64) / np.asarray(scales, np.float64))
    lo, hi = INT_RANGES["i32"]
    return np.clip(q, lo, hi).astype(np.int32)


def channel_bounds(xq, wq_data: np.ndarray) -> np.ndarray:
    """The largest |int32 accumulator| of each output channel of a conv or linear with
    input type `xq` (its zero point subtracted) and integer weights [out, ...]: int64."""
    zp = xq.zero_point
    max_x = max(xq.storage_max - zp, zp - xq.storage_min)
    w = np.abs(np.asarray(wq_data).astype(np.int64))
    return max_x * w.reshape(w.shape[0], -1).sum(axis=1)
