"""Elementwise ops, casts and reductions, with the numpy interpreter's formulas (half
floats computed in float32 and rounded once; exp, tanh, erf and what is built on them
follow qir/floatmath.py, so float32 results equal the interpreter's bit for bit). Integer arithmetic wraps as numpy's does;
quantized relu and clamp work on the stored integers."""

from __future__ import annotations

import math

import numpy as np

from qir.quant import quant_params, quantize_values
from backends.tvm.common import (R, cast, clip, const, dtype_of, fused_clamp, is_float, scalar,
                                 shape_of, to_float32, tvm_dtype)
from backends.tvm.floatmath import unary
from backends.tvm.registry import relax_lowering
from qir import floatmath

# --- unary floats -------------------------------------------------------------------------


def exp(bb, x):
    return unary(bb, x, floatmath.exp, R.exp, "exp")


def sigmoid(bb, x):
    one = scalar(1.0, x)
    return unary(bb, x, floatmath.sigmoid,
                 lambda v: R.divide(one, R.add(one, R.exp(R.negative(v)))), "sigmoid")


def silu(bb, x):
    one = scalar(1.0, x)
    return unary(bb, x, floatmath.silu,
                 lambda v: R.divide(v, R.add(one, R.exp(R.negative(v)))), "silu")


def erf(bb, x):
    return unary(bb, x, floatmath.erf, R.erf, "erf")


def relu6_shifted(bb, x):
    """min(max(x + 3, 0), 6), NaN staying NaN (numpy's and torch's maximum)."""
    clipped = R.minimum(R.maximum(R.add(x, scalar(3.0, x)), scalar(0.0, x)), scalar(6.0, x))
    return bb.emit(R.where(R.isnan(x), x, clipped))


def softmax(bb, x, axis: int):
    """exp(x - max) / sum, rows that are all -inf give 0 (torch's safe softmax)."""
    m = bb.emit(R.max(x, axis=[axis], keepdims=True))
    m = bb.emit(R.where(R.equal(m, scalar(-np.inf, x)), scalar(0.0, x), m))
    e = exp(bb, bb.emit(R.subtract(x, m)))
    s = bb.emit(R.sum(e, axis=[axis], keepdims=True))
    zero = scalar(0.0, x)
    return bb.emit(R.where(R.equal(s, zero), zero, R.divide(e, s)))


def log_softmax(bb, x, axis: int):
    m = bb.emit(R.max(x, axis=[axis], keepdims=True))
    inf = scalar(np.inf, x)
    m = bb.emit(R.where(R.equal(R.abs(m), inf), scalar(0.0, x), m))
    shifted = bb.emit(R.subtract(x, m))
    return bb.emit(R.subtract(shifted, R.log(R.sum(R.exp(shifted), axis=[axis],
                                                   keepdims=True))))


def gelu(bb, x, approximate: str):
    return unary(bb, x, floatmath.gelu, lambda v: _gelu64(bb, v, approximate), "gelu",
                 approximate=approximate)


def _gelu64(bb, x, approximate: str):
    half, one = scalar(0.5, x), scalar(1.0, x)
    if approximate == "tanh":
        k = scalar(math.sqrt(2 / math.pi), x)
        cube = R.multiply(R.multiply(R.multiply(scalar(0.044715, x), x), x), x)
        return R.multiply(R.multiply(half, x), R.add(one, R.tanh(R.multiply(k, R.add(x, cube)))))
    e = R.erf(R.multiply(x, scalar(math.sqrt(0.5), x)))
    return R.multiply(R.multiply(x, half), R.add(one, e))


_UNARY = {
    "qir.leaky_relu": lambda op, bb, x: R.where(
        R.greater(x, scalar(0.0, x)), x, R.multiply(x, scalar(op.attr("negative_slope"), x))),
    "qir.gelu": lambda op, bb, x: gelu(bb, x, op.attr("approximate")),
    "qir.silu": lambda op, bb, x: silu(bb, x),
    "qir.sigmoid": lambda op, bb, x: sigmoid(bb, x),
    "qir.tanh": lambda op, bb, x: unary(bb, x, floatmath.tanh, R.tanh, "tanh"),
    "qir.hardswish": lambda op, bb, x: R.divide(R.multiply(x, relu6_shifted(bb, x)),
                                                scalar(6.0, x)),
    "qir.hardsigmoid": lambda op, bb, x: R.divide(relu6_shifted(bb, x), scalar(6.0, x)),
    "qir.elu": lambda op, bb, x: R.where(
        R.greater(x, scalar(0.0, x)), x,
        R.multiply(R.subtract(R.exp(x), scalar(1.0, x)), scalar(op.attr("alpha"), x))),
    "qir.softmax": lambda op, bb, x: softmax(bb, x, op.attr("axis") % len(shape_of(x))),
    "qir.log_softmax": lambda op, bb, x: log_softmax(bb, x,
                                                     op.attr("axis") % len(shape_of(x))),
    "qir.exp": lambda op, bb, x: exp(bb, x),
    "qir.log": lambda op, bb, x: R.log(x),
    "qir.sqrt": lambda op, bb, x: R.sqrt(x),
    "qir.rsqrt": lambda op, bb, x: R.divide(scalar(1.0, x), R.sqrt(x)),
    "qir.erf": lambda op, bb, x: erf(bb, x),
    "qir.reciprocal": lambda op, bb, x: R.divide(scalar(1.0, x), x),
    "qir.sin": lambda op, bb, x: R.sin(x),
    "qir.cos": lambda op, bb, x: R.cos(x),
    "qir.floor": lambda op, bb, x: R.floor(x),
    "qir.ceil": lambda op, bb, x: R.ceil(x),
    "qir.trunc": lambda op, bb, x: R.trunc(x),
    "qir.round": lambda op, bb, x: R.round(x),  # ties to even (backends/tvm/exact.py)
    "qir.sign": lambda op, bb, x: R.sign(x),
    "qir.tan": lambda op, bb, x: R.tan(x),
    "qir.asin": lambda op, bb, x: R.asin(x),
    "qir.acos": lambda op, bb, x: R.acos(x),
    "qir.atan": lambda op, bb, x: R.atan(x),
    # sinh, cosh from exp: TVM's llvm codegen has no vector form of its own intrinsics
    "qir.sinh": lambda op, bb, x: R.multiply(R.subtract(R.exp(x), R.exp(R.negative(x))),
                                             scalar(0.5, x)),
    "qir.cosh": lambda op, bb, x: R.multiply(R.add(R.exp(x), R.exp(R.negative(x))),
                                             scalar(0.5, x)),
    "qir.asinh": lambda op, bb, x: R.asinh(x),
    "qir.acosh": lambda op, bb, x: R.acosh(x),
    "qir.atanh": lambda op, bb, x: R.atanh(x),
    "qir.expm1": lambda op, bb, x: R.subtract(R.exp(x), scalar(1.0, x)),
    "qir.log1p": lambda op, bb, x: log1p(bb, x),
    "qir.log2": lambda op, bb, x: R.multiply(R.log(x), scalar(1 / math.log(2), x)),
    "qir.log10": lambda op, bb, x: R.multiply(R.log(x), scalar(1 / math.log(10), x)),
    "qir.neg": lambda op, bb, x: R.negative(x),
    "qir.abs": lambda op, bb, x: R.abs(x),
}


def _register_unary(name: str, fn) -> None:
    @relax_lowering(name)
    def lower(op, bb, args, params):
        return fn(op, bb, args[0])

    lower.__name__ = name.split(".")[-1]


for _name, _fn in _UNARY.items():
    _register_unary(_name, _fn)


@relax_lowering("qir.relu", upcast=False)
def relu(op, bb, args, params):
    """max(x, 0); on a quantized tensor max(q, zero_point) on the stored values (fp8
    storage: in float32, rounded back exactly by the driver)."""
    ty = op.operands[0].type
    x = args[0]
    if ty.is_quantized and not ty.quant.is_fp8:
        _, zp = quant_params(ty.quant, ty.shape)
        return R.maximum(x, const(zp, dtype_of(x)))
    x = to_float32(bb, x)
    return R.maximum(x, scalar(0, x))


@relax_lowering("qir.clamp", upcast=False)
def clamp(op, bb, args, params):
    """Bounds in the tensor's dtype; on a quantized tensor the bounds are quantized with
    the qir.quantize rule and the stored values clipped to them."""
    ty = op.operands[0].type
    lo, hi = op.attr("min"), op.attr("max")
    x = args[0]
    if ty.is_quantized:
        q = [None if b is None else quantize_values(np.float32(b), ty) for b in (lo, hi)]
        if ty.quant.is_fp8:
            q = [None if b is None else b.astype(np.float32) for b in q]
            x = to_float32(bb, x)
        return clip(bb, x, *q)
    return clip(bb, to_float32(bb, x), lo, hi)


# --- binary ---------------------------------------------------------------------------------


def int_divide(bb, a, b):
    """Integer division truncating toward zero; division by zero gives 0 and
    INT_MIN / -1 wraps (numpy's results, without the hardware trap)."""
    zero = scalar(0, a)
    signed = not dtype_of(a).startswith("uint")
    if signed:
        minus_one = bb.emit(R.equal(b, scalar(-1, b)))
    # The safe divisor by arithmetic, not a select: TVM's simplifier rewrites
    # a // where(c, 1, b) into where(c, a, a // b), which divides by the 0 anyway once
    # vectorised (both arms evaluated).
    safe = bb.emit(R.add(b, R.astype(R.equal(b, zero), dtype_of(b))))
    if signed:
        safe = bb.emit(R.add(safe, R.multiply(R.astype(minus_one, dtype_of(b)),
                                              scalar(2, b))))
    q = bb.emit(R.floor_divide(a, safe))
    if signed:
        fix = bb.emit(R.logical_and(R.less(q, zero), R.not_equal(R.multiply(q, safe), a)))
        q = bb.emit(R.add(q, R.astype(fix, dtype_of(a))))
        q = bb.emit(R.where(minus_one, R.negative(a), q))
    return bb.emit(R.where(R.equal(b, zero), zero, q))


def int_mod(bb, a, b, floor: bool):
    """numpy's integer fmod (the sign of a) or remainder (the sign of b), from the
    trapless truncating division: a - trunc(a / b) * b; 0 where b is 0."""
    dtype = dtype_of(a)
    if dtype in ("int8", "int16"):
        # Exact in float32 (frem is exact), where the int8 path fails to vectorise.
        fa, fb = cast(bb, a, "float32"), cast(bb, b, "float32")
        r = bb.emit(remainder(fa, fb) if floor else R.mod(fa, fb))
        r = bb.emit(R.where(R.equal(fb, scalar(0.0, fb)), scalar(0.0, fb), r))
        return cast(bb, r, dtype)
    zero = scalar(0, a)
    r = bb.emit(R.subtract(a, R.multiply(int_divide(bb, a, b), b)))
    if floor and not dtype.startswith("uint"):
        fix = R.logical_and(R.not_equal(r, zero),
                            R.logical_xor(R.less(r, zero), R.less(b, zero)))
        r = bb.emit(R.where(fix, R.add(r, b), r))
    return bb.emit(R.where(R.equal(b, zero), zero, r))


def int_power(bb, a, b, shape):
    """a ** b for integers by repeated squaring over the exponent's bits (wrapping like
    numpy; negative exponents are undefined)."""
    bits = int(dtype_of(a).lstrip("uint"))
    result = bb.emit(R.broadcast_to(scalar(1, a), shape))
    base, e = a, b
    one = scalar(1, b)
    for _ in range(bits):
        bit = bb.emit(R.equal(R.bitwise_and(e, one), one))
        result = bb.emit(R.where(bit, R.multiply(result, base), result))
        base = bb.emit(R.multiply(base, base))
        e = bb.emit(R.right_shift(e, one))
    return result


_BINARY = {
    "qir.add": R.add, "qir.sub": R.subtract, "qir.mul": R.multiply, "qir.div": R.divide,
    "qir.pow": R.power, "qir.maximum": R.maximum, "qir.minimum": R.minimum,
    "qir.eq": R.equal, "qir.ne": R.not_equal, "qir.lt": R.less, "qir.le": R.less_equal,
    "qir.gt": R.greater, "qir.ge": R.greater_equal, "qir.logical_and": R.logical_and,
    "qir.logical_or": R.logical_or, "qir.atan2": R.atan2, "qir.fmod": R.mod,
    "qir.remainder": lambda a, b: remainder(a, b),  # defined below
}


def remainder(a, b):
    """numpy's remainder from the exact fmod (frem): r, plus b where r is non-zero and
    its sign differs from b's."""
    r = R.mod(a, b)
    zero = scalar(0.0, a)
    fix = R.logical_and(R.not_equal(r, zero),
                        R.logical_xor(R.less(r, zero), R.less(b, zero)))
    return R.where(fix, R.add(r, b), r)


def log1p(bb, x):
    """log(1 + x) accurate for small x: log(u) * x / (u - 1) with u = 1 + x; x itself
    where u rounds to 1, log(u) where u is infinite."""
    one, zero = scalar(1.0, x), scalar(0.0, x)
    u = bb.emit(R.add(x, one))
    d = bb.emit(R.subtract(u, one))
    y = R.divide(R.multiply(R.log(u), x), d)
    return R.where(R.equal(d, zero), x, R.where(R.isinf(u), R.log(u), y))


def _register_binary(name: str, fn) -> None:
    @relax_lowering(name)
    def lower(op, bb, args, params):
        a, b = args
        if name == "qir.div" and not is_float(dtype_of(a)):
            return int_divide(bb, a, b)
        if name in ("qir.fmod", "qir.remainder") and not is_float(dtype_of(a)):
            return int_mod(bb, a, b, floor=name == "qir.remainder")
        if name == "qir.pow" and not is_float(dtype_of(a)):
            return int_power(bb, a, b, op.result.type.shape)
        y = bb.emit(fn(a, b))
        return fused_clamp(bb, op, y) if name == "qir.add" else y

    lower.__name__ = name.split(".")[-1]


for _name, _fn in _BINARY.items():
    _register_binary(_name, _fn)


@relax_lowering("qir.logical_not")
def logical_not(op, bb, args, params):
    return R.logical_not(args[0])


@relax_lowering("qir.cast")
def cast_op(op, bb, args, params):
    """numpy's astype (torch's .to()): float -> int truncates toward zero, anything ->
    bool is != 0, narrowing integers wrap."""
    to = tvm_dtype(op.result.type)
    x = args[0]
    if to == "bool":
        return R.not_equal(x, scalar(0, x))
    if to.startswith("float8"):  # the lowering driver rounds float32 to fp8 exactly
        return cast(bb, x, "float32")
    return R.astype(x, to)


# --- reductions -------------------------------------------------------------------------------


def _axes(op):
    rank = op.operands[0].type.rank
    axes = op.attr("axes")
    return sorted({a % rank for a in axes}) if axes else list(range(rank))


def _mean(x, axis, keepdims):
    """sum / n: the sum in sequential order, as the interpreter's."""
    if not is_float(dtype_of(x)):
        return R.mean(x, axis=axis, keepdims=keepdims)
    n = math.prod(shape_of(x)[a] for a in axis)
    return R.divide(R.sum(x, axis=axis, keepdims=keepdims), scalar(float(n), x))


_REDUCERS = {"qir.reduce_mean": _mean, "qir.reduce_sum": R.sum, "qir.reduce_max": R.max,
             "qir.reduce_min": R.min, "qir.reduce_prod": R.prod}


def _register_reduce(name: str, fn) -> None:
    @relax_lowering(name)
    def lower(op, bb, args, params):
        if op.operands[0].type.rank == 0:
            return args[0]
        return fn(args[0], axis=_axes(op), keepdims=op.attr("keepdims"))

    lower.__name__ = name.split(".")[-1]


for _name, _fn in _REDUCERS.items():
    _register_reduce(_name, _fn)


@relax_lowering("qir.argmax")
def argmax(op, bb, args, params):
    """Index of the first maximum (i64)."""
    x = args[0]
    if op.operands[0].type.rank == 0:
        x = bb.emit(R.reshape(x, (1,)))
    axis = op.attr("axis") % max(1, op.operands[0].type.rank)
    y = bb.emit(R.argmax(x, axis=axis, keepdims=op.attr("keepdims")))
    y = cast(bb, y, "int64")
    return R.reshape(y, op.result.type.shape)


@relax_lowering("qir.cumsum")
def cumsum(op, bb, args, params):
    x = args[0]
    shape = op.result.type.shape
    if not shape:
        return x
    return R.cumsum(x, axis=op.attr("axis") % len(shape), dtype=dtype_of(x))


def _stable_argsort(bb, op, x, descending: bool):
    """TVM's argsort is a std::stable_sort: equal values keep their order, as in the
    interpreter (NaN order is unspecified here)."""
    axis = op.attr("axis") % op.operands[0].type.rank
    key = x
    if dtype_of(x) in ("int8", "uint8", "int16", "uint16", "bool"):  # not sortable there
        key = cast(bb, x, "int32")
    return axis, bb.emit(R.argsort(key, axis=axis, descending=descending, dtype="int64"))


@relax_lowering("qir.sort")
def sort(op, bb, args, params):
    axis, idx = _stable_argsort(bb, op, args[0], op.attr("descending"))
    return [R.gather_elements(args[0], idx, axis=axis), idx]


@relax_lowering("qir.topk")
def topk(op, bb, args, params):
    axis, idx = _stable_argsort(bb, op, args[0], op.attr("largest"))
    idx = bb.emit(R.strided_slice(idx, axes=[axis], begin=[0], end=[op.attr("k")]))
    return [R.gather_elements(args[0], idx, axis=axis), idx]
