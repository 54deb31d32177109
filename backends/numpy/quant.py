"""Quantization ops: the reference integer semantics every qir backend reproduces bit
for bit. Rescaling uses integer arithmetic only (int64, arithmetic shifts), never a
float rounding of a product.

Notation: q stored values; s, zp a type's scale (as float32) and zero point, broadcast
per tensor, per axis (along the type's axis) or per group (block_size elements along
the axis; scales flat in row-major order of the group grid); [lo, hi] the storage
range (storage_min/max); x_f32 the float input cast to float32. Integer arithmetic is
int64; >> is an arithmetic shift (floor division by a power of two); an intermediate
that could overflow int64 makes the op fail rather than wrap.

qir.quantize     integer storage: q = clip(rint(x_f32 / s) + zp, lo, hi), division in
                 float32, rint = round half to even, stored in the type's numpy dtype
                 (i4 in int8, u4 in uint8). fp8 storage (zp = 0):
                 q = fp8(clip(x_f32 / s, -max, max)), max = 448 (e4m3) or 57344 (e5m2),
                 rounded to nearest even by ml_dtypes. NaN inputs are undefined.
qir.dequantize   x = float32(q - zp) * s (q - zp exact in integers); fp8:
                 x = float32(q) * s. f16/bf16 expressed types round the f32 at the end.
qir.requantize   xi = x - input_zp (x is i32 or integer-quantized), M = multiplier,
                 e = shift (one, or one per index along `axis`):
                   single:   y = (xi * M + 2^(30 - e)) >> (31 - e)       (int64)
                   gemmlowp: a = saturate_i32(xi * 2^max(e, 0));
                             h = SRDHM(a, M); y = RDBPOT(h, max(-e, 0)) where
                             SRDHM(a, b) = INT32_MAX if a == b == INT32_MIN, else
                               (a*b + (2^30 if a*b >= 0 else 1 - 2^30)) / 2^31 truncated
                               toward zero;
                             RDBPOT(h, n): mask = 2^n - 1, rem = h & mask,
                               thr = (mask >> 1) + (1 if h < 0 else 0),
                               (h >> n) + (1 if rem > thr else 0).
                 Then y = clip(y + output_zp, clamp_min, clamp_max). Ties: single rounds
                 toward +inf (-2.5 -> -2). gemmlowp's high multiply also rounds ties
                 toward +inf, its final shift away from zero (x = -10 at 0.25: -3), and
                 its two roundings can move a non-tie (x = 5 at 0.25: 1.25 -> 2).
qir.qconv1d/2d,  acc = sum (x - zp_x) * (w - zp_w) (+ bias), int32. Convolution padding is
qir.qlinear,     zp_x (zero after the subtraction). Computed exactly through float BLAS
qir.qmatmul      (float32 when K * max|x - zp_x| * max|w - zp_w| < 2^24, else float64,
                 which is exact below 2^53; above that the op is rejected). An
                 accumulator outside int32 is an error (a compiler bug), never wrapped.
qir.qadd         ta = (a - zp_a) * M_a, tb = (b - zp_b) * M_b (int64); n_a = 31 - e_a,
                 n_b = 31 - e_b, n = max(n_a, n_b);
                 s = (ta << (n - n_a)) + (tb << (n - n_b)); y = (s + 2^(n-1)) >> n;
                 y = clip(y + output_zp, clamp_min, clamp_max), numpy broadcasting.
qir.qmul         p = (a - zp_a) * (b - zp_b) (int64), rescaled like requantize with
                 (multiplier, shift, rounding), + output_zp, clipped.
data movement    reshape, permute, concat, split, slice, gather, pad, broadcast_to,
on quantized     max_pool2d, relu, clamp work on stored values: relu -> max(q, zp);
                 clamp -> clip(q, quantize(min), quantize(max)) (None: no bound);
                 pad value -> quantize(value); max_pool2d pads with storage_min
                 (fp8: -inf); every other op moves the stored values unchanged.
qir.observe      identity.
"""

from __future__ import annotations

import math

import numpy as np

from backends.numpy.common import result
from backends.numpy.conv import conv_nd, linear_nd
from backends.numpy.registry import InterpreterError, numpy_impl
from qir.quant import dequantize_values, quant_params, quantize_values
from qir.types import TensorType

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


# --- quantize / dequantize ------------------------------------------------------------------


@numpy_impl("qir.quantize")
def quantize(op, x: np.ndarray) -> np.ndarray:
    return quantize_values(x, op.result.type)


@numpy_impl("qir.dequantize")
def dequantize(op, q: np.ndarray) -> np.ndarray:
    return result(op, dequantize_values(q, op.operands[0].type))


# --- integer rescaling ------------------------------------------------------------------------


def _max_abs(x: np.ndarray) -> int:
    return int(np.abs(x).max()) if x.size else 0


def rescale(x: np.ndarray, multiplier, shift, rounding: str) -> np.ndarray:
    """round(x * M * 2^(e - 31)) in integers (see the module docstring); x int64, M and
    e integers or int64 arrays broadcasting against x."""
    x = np.asarray(x, dtype=np.int64)
    m = np.asarray(multiplier, dtype=np.int64)
    e = np.asarray(shift, dtype=np.int64)
    if rounding == "single":
        bound = _max_abs(x) * _max_abs(m) + 2 ** (30 - int(e.min()))
        if bound >= 2**63:
            raise InterpreterError(f"x * multiplier overflows int64 (|x| up to {_max_abs(x)})")
        return (x * m + np.left_shift(np.int64(1), 30 - e)) >> (31 - e)
    if rounding != "gemmlowp":
        raise InterpreterError(f"unknown rounding mode '{rounding}'")
    # Saturating first changes nothing (a shift never brings a value back into range)
    # and keeps the shift inside int64.
    a = np.clip(np.clip(x, INT32_MIN, INT32_MAX) << np.maximum(e, 0), INT32_MIN, INT32_MAX)
    ab = a * m
    v = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = np.where(v >= 0, v >> 31, -((-v) >> 31))  # divide by 2^31 toward zero
    high = np.where((a == INT32_MIN) & (m == INT32_MIN), INT32_MAX, high)
    n = np.maximum(-e, 0)
    mask = np.left_shift(np.int64(1), n) - 1
    threshold = (mask >> 1) + (high < 0)
    return (high >> n) + ((high & mask) > threshold)


def _finish(op, y: np.ndarray) -> np.ndarray:
    """y + output_zp clipped to [clamp_min, clamp_max] (default: the storage range)."""
    q = op.result.type.quant
    lo, hi = op.attr("clamp_min"), op.attr("clamp_max")
    lo = q.storage_min if lo is None else lo
    hi = q.storage_max if hi is None else hi
    return np.clip(y + op.attr("output_zp"), lo, hi).astype(op.result.type.dtype)


def _zero_point(ty: TensorType) -> int:
    return ty.quant.zero_point if ty.is_quantized else 0


@numpy_impl("qir.lut")
def lut(op, x: np.ndarray, table: np.ndarray) -> np.ndarray:
    return table[x.astype(np.int64) - np.iinfo(x.dtype).min]


@numpy_impl("qir.requantize")
def requantize(op, x: np.ndarray) -> np.ndarray:
    xi = x.astype(np.int64) - op.attr("input_zp")
    m = np.asarray(op.attr("multiplier"), dtype=np.int64)
    e = np.asarray(op.attr("shift"), dtype=np.int64)
    axis = op.attr("axis")
    if axis is None:
        m, e = m.reshape(()), e.reshape(())
    else:
        shape = [1] * x.ndim
        shape[axis % x.ndim] = -1
        m, e = m.reshape(shape), e.reshape(shape)
    return _finish(op, rescale(xi, m, e, op.attr("rounding")))


@numpy_impl("qir.qmul")
def qmul(op, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    za, zb = _zero_point(op.operands[0].type), _zero_point(op.operands[1].type)
    p = (a.astype(np.int64) - za) * (b.astype(np.int64) - zb)
    return _finish(op, rescale(p, op.attr("multiplier"), op.attr("shift"),
                               op.attr("rounding")))


@numpy_impl("qir.qadd")
def qadd(op, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    za, zb = _zero_point(op.operands[0].type), _zero_point(op.operands[1].type)
    ta = (a.astype(np.int64) - za) * op.attr("lhs_multiplier")
    tb = (b.astype(np.int64) - zb) * op.attr("rhs_multiplier")
    na, nb = 31 - op.attr("lhs_shift"), 31 - op.attr("rhs_shift")
    n = max(na, nb)
    if (_max_abs(ta) << (n - na)) + (_max_abs(tb) << (n - nb)) + (1 << (n - 1)) >= 2**63:
        raise InterpreterError("the aligned sum overflows int64")
    s = (ta << (n - na)) + (tb << (n - nb))
    return _finish(op, (s + (1 << (n - 1))) >> n)


# --- integer compute ops ----------------------------------------------------------------------


def _exact_float_operands(op, x: np.ndarray, w: np.ndarray,
                          k: int) -> tuple[np.ndarray, np.ndarray]:
    """x - zp_x and w - zp_w as floats in which every partial sum of a length-k dot
    product is an exact integer: float32 below 2^24, float64 below 2^53."""
    tx, tw = op.operands[0].type, op.operands[1].type
    _, zx = quant_params(tx.quant, tx.shape)
    _, zw = quant_params(tw.quant, tw.shape)

    def span(v: np.ndarray, zp: np.ndarray) -> int:
        if not v.size:
            return 0
        return max(int(np.max(v.astype(np.int64) - zp)), int(np.max(zp - v.astype(np.int64))), 0)

    bound = k * span(x, zx) * span(w, zw)
    if bound < 2**24:
        dtype = np.float32
    elif bound < 2**53:
        dtype = np.float64
    else:
        raise InterpreterError(f"a dot product of length {k} can reach {bound} >= 2^53, "
                               "beyond what the interpreter computes exactly")
    return x.astype(dtype) - zx.astype(dtype), w.astype(dtype) - zw.astype(dtype)


def _to_int32(op, acc: np.ndarray, bias: np.ndarray | None, bias_shape) -> np.ndarray:
    """Round the exact float accumulator to int64, add the bias, check the int32 range."""
    acc = np.rint(acc).astype(np.int64)
    if bias is not None:
        acc += bias.astype(np.int64).reshape(bias_shape)
    if acc.size and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        worst = int(acc.max()) if acc.max() > INT32_MAX else int(acc.min())
        raise InterpreterError(f"the int32 accumulator overflows (a sum reaches {worst}); "
                               "integer compute accumulates in int32, so the quantization "
                               "parameters chosen by the compiler are wrong")
    return acc.astype(np.int32)


def _qconv(op, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    k = w.shape[1] * math.prod(w.shape[2:])
    xf, wf = _exact_float_operands(op, x, w, k)
    acc = conv_nd(xf, wf, op.attr("stride"), op.attr("padding"), op.attr("dilation"),
                  op.attr("groups"))
    return _to_int32(op, acc, b, (1, -1) + (1,) * (x.ndim - 2))


numpy_impl("qir.qconv1d")(_qconv)
numpy_impl("qir.qconv2d")(_qconv)


@numpy_impl("qir.qlinear")
def qlinear(op, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    xf, wf = _exact_float_operands(op, x, w, x.shape[-1])
    return _to_int32(op, linear_nd(xf, wf), b, (-1,))


@numpy_impl("qir.qmatmul")
def qmatmul(op, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    af, bf = _exact_float_operands(op, a, b, a.shape[-1])
    return _to_int32(op, np.matmul(af, bf), None, None)
