"""Elementwise ops: activations, unary math, broadcasting binary arithmetic,
comparisons, logical ops and select.

Floats are computed in their own dtype (f16/bf16 in f32, rounded once at the end), with
PyTorch's formulas; exp, tanh, erf and the functions built on them follow
qir/floatmath.py in float32, so every backend gets the same bits.
Quantized relu and clamp work on the stored integers (see quant.py).
"""

from __future__ import annotations

import math

import numpy as np

from backends.numpy.common import fused_clamp, result, storage_as_float, upcast
from backends.numpy.floatmath import seq_sum, unary
from backends.numpy.registry import InterpreterError, numpy_impl
from qir import floatmath
from qir.quant import quant_params, quantize_values

# --- erf in float64 (float64 tensors; float32 uses qir/floatmath.py) -------------------------
# Cephes' ndtr.c (S. L. Moshier) rational approximations, the coefficients floatmath uses,
# evaluated in float64: relative error ~1e-16.
_ERF_T, _ERF_U = floatmath.ERF_T, floatmath.ERF_U
_ERFC_P, _ERFC_Q = floatmath.ERFC_P, floatmath.ERFC_Q


def _polevl(x: np.ndarray, coeffs: tuple[float, ...]) -> np.ndarray:
    """Horner evaluation, highest-degree coefficient first (in place on a fresh array)."""
    acc = np.full_like(x, coeffs[0])
    for c in coeffs[1:]:
        acc *= x
        acc += c
    return acc


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, vectorised, evaluated in float64 (NaN stays NaN). Each branch
    runs only on its own elements: the tail's exp dominates the cost."""
    x = np.asarray(x, dtype=np.float64)
    ax = np.abs(x)
    out = np.empty_like(x)
    small = ax < 1.0
    xs = x[small]
    z = xs * xs
    out[small] = xs * _polevl(z, _ERF_T) / _polevl(z, _ERF_U)
    large = ~small  # includes NaN, which propagates through the tail
    a = np.minimum(ax[large], 8.0)
    with np.errstate(under="ignore"):
        tail = np.exp(-a * a)
    tail *= _polevl(a, _ERFC_P)
    tail /= _polevl(a, _ERFC_Q)
    out[large] = np.copysign(1.0 - tail, x[large])
    return out


# --- unary floats -----------------------------------------------------------------------------


def _gelu(op, x: np.ndarray) -> np.ndarray:
    approximate = op.attr("approximate")
    return unary(floatmath.gelu, x, lambda v: _gelu64(v, approximate), approximate=approximate)


def _gelu64(x: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        k = math.sqrt(2 / math.pi)
        return 0.5 * x * (1 + np.tanh(k * (x + 0.044715 * x * x * x)))
    return x * 0.5 * (1 + erf(x * math.sqrt(0.5)))


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """exp(x - max) / sum (sum in sequential order); rows that are all -inf give 0
    (torch's safe softmax)."""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isneginf(m), 0, m).astype(x.dtype, copy=False)
    e = _exp(x - m)
    s = seq_sum(e, (axis,), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s == 0, 0, e / s).astype(x.dtype, copy=False)


def _exp(x: np.ndarray) -> np.ndarray:
    return unary(floatmath.exp, x, np.exp)


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isinf(m), 0, m)
    shifted = x - m
    with np.errstate(divide="ignore"):
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


_FLOAT_UNARY = {
    "qir.leaky_relu": lambda op, x: np.where(x > 0, x, x * op.attr("negative_slope")),
    "qir.gelu": _gelu,
    "qir.silu": lambda op, x: unary(floatmath.silu, x, lambda v: v / (1 + np.exp(-v))),
    "qir.sigmoid": lambda op, x: unary(floatmath.sigmoid, x, lambda v: 1 / (1 + np.exp(-v))),
    "qir.tanh": lambda op, x: unary(floatmath.tanh, x, np.tanh),
    "qir.hardswish": lambda op, x: x * np.minimum(np.maximum(x + 3, 0), 6) / 6,
    "qir.hardsigmoid": lambda op, x: np.minimum(np.maximum(x + 3, 0), 6) / 6,
    "qir.elu": lambda op, x: np.where(x > 0, x, np.expm1(x) * op.attr("alpha")),
    "qir.softmax": lambda op, x: softmax(x, op.attr("axis")),
    "qir.log_softmax": lambda op, x: _log_softmax(x, op.attr("axis")),
    "qir.exp": lambda op, x: _exp(x),
    "qir.log": lambda op, x: np.log(x),
    "qir.sqrt": lambda op, x: np.sqrt(x),
    "qir.rsqrt": lambda op, x: 1 / np.sqrt(x),
    "qir.erf": lambda op, x: unary(floatmath.erf, x, erf),
    "qir.reciprocal": lambda op, x: 1 / x,
    "qir.sin": lambda op, x: np.sin(x),
    "qir.cos": lambda op, x: np.cos(x),
    "qir.floor": lambda op, x: np.floor(x),
    "qir.ceil": lambda op, x: np.ceil(x),
    "qir.trunc": lambda op, x: np.trunc(x),
    "qir.round": lambda op, x: np.rint(x),
    "qir.sign": lambda op, x: np.sign(x),
    "qir.tan": lambda op, x: np.tan(x),
    "qir.asin": lambda op, x: np.arcsin(x),
    "qir.acos": lambda op, x: np.arccos(x),
    "qir.atan": lambda op, x: np.arctan(x),
    "qir.sinh": lambda op, x: np.sinh(x),
    "qir.cosh": lambda op, x: np.cosh(x),
    "qir.asinh": lambda op, x: np.arcsinh(x),
    "qir.acosh": lambda op, x: np.arccosh(x),
    "qir.atanh": lambda op, x: np.arctanh(x),
    "qir.expm1": lambda op, x: np.expm1(x),
    "qir.log1p": lambda op, x: np.log1p(x),
    "qir.log2": lambda op, x: np.log2(x),
    "qir.log10": lambda op, x: np.log10(x),
}


def _register_float_unary(name: str, fn) -> None:
    @numpy_impl(name)
    def impl(op, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            return result(op, fn(op, upcast(x)))

    impl.__name__ = name.split(".")[-1]


for _name, _fn in _FLOAT_UNARY.items():
    _register_float_unary(_name, _fn)


@numpy_impl("qir.relu")
def relu(op, x: np.ndarray) -> np.ndarray:
    """max(x, 0); on a quantized tensor max(q, zero_point) on the stored values."""
    ty = op.operands[0].type
    if ty.is_quantized:
        _, zp = quant_params(ty.quant, ty.shape)
        return result(op, np.maximum(storage_as_float(x), zp))
    return result(op, np.maximum(upcast(x), 0))


@numpy_impl("qir.clamp")
def clamp(op, x: np.ndarray) -> np.ndarray:
    """min(max(x, min), max) (None: unbounded); on a quantized tensor the bounds are
    quantized with the qir.quantize rule and the stored values clipped to them."""
    lo, hi = op.attr("min"), op.attr("max")
    ty = op.operands[0].type
    if ty.is_quantized:
        y = storage_as_float(x)
        if lo is not None:
            y = np.maximum(y, storage_as_float(quantize_values(np.float32(lo), ty)))
        if hi is not None:
            y = np.minimum(y, storage_as_float(quantize_values(np.float32(hi), ty)))
        return result(op, y)
    y = upcast(x)
    if lo is not None:
        y = np.maximum(y, y.dtype.type(lo))
    if hi is not None:
        y = np.minimum(y, y.dtype.type(hi))
    return result(op, y)


@numpy_impl("qir.neg")
def neg(op, x: np.ndarray) -> np.ndarray:
    return result(op, np.negative(upcast(x)))


@numpy_impl("qir.abs")
def abs_(op, x: np.ndarray) -> np.ndarray:
    return result(op, np.abs(upcast(x)))


# --- binary ---------------------------------------------------------------------------------


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """True division for floats; integers divide truncating toward zero (C, ONNX and
    torch's rounding_mode='trunc'); integer division by zero gives 0."""
    if a.dtype.kind == "f":
        return a / b
    q = np.floor_divide(a, b)
    fix = (q < 0) & (q * b != a)
    return np.where(b == 0, 0, q + fix)


def _pow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu" and np.any(b < 0):
        raise InterpreterError("integer pow with a negative exponent")
    return np.power(a, b)


_BINARY = {
    "qir.add": np.add, "qir.sub": np.subtract, "qir.mul": np.multiply, "qir.div": _div,
    "qir.pow": _pow, "qir.maximum": np.maximum, "qir.minimum": np.minimum,
    "qir.eq": np.equal, "qir.ne": np.not_equal, "qir.lt": np.less, "qir.le": np.less_equal,
    "qir.gt": np.greater, "qir.ge": np.greater_equal,
    "qir.logical_and": np.logical_and, "qir.logical_or": np.logical_or,
    "qir.atan2": np.arctan2, "qir.fmod": np.fmod, "qir.remainder": np.remainder,
}


def _register_binary(name: str, fn) -> None:
    @numpy_impl(name)
    def impl(op, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            return result(op, fused_clamp(op, fn(upcast(a), upcast(b))))

    impl.__name__ = name.split(".")[-1]


for _name, _fn in _BINARY.items():
    _register_binary(_name, _fn)


@numpy_impl("qir.logical_not")
def logical_not(op, x: np.ndarray) -> np.ndarray:
    return np.logical_not(x)


@numpy_impl("qir.where")
def where(op, cond: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return result(op, np.where(cond, a, b))
