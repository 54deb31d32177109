"""Elementwise arithmetic, comparisons, logic, unary math, where/masked_fill and clamp,
with torch type promotion (an int tensor times a float scalar is a float tensor)."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch

from frontends.common import ConversionError, converter
from frontends.context import Context
from frontends.converters.util import (
    binary,
    elem_of,
    float_input,
    is_float_elem,
    is_tensor,
    promoted_elem,
    scalar_value,
)
from qir import Value

aten = torch.ops.aten
M = "call_method"


def _scaled(ctx: Context, x: Any, alpha: Any) -> Any:
    """alpha * x for add/sub's `alpha` argument (a no-op for alpha == 1)."""
    if alpha == 1:
        return x
    return binary(ctx, "qir.mul", x, alpha)


@converter(aten.add.Tensor, aten.add.Scalar, operator.add, operator.iadd, torch.add, (M, "add"),
           emits=("qir.add",))
def add(ctx: Context, x: Any, other: Any, alpha: Any = 1, out: None = None) -> Value:
    return binary(ctx, "qir.add", x, _scaled(ctx, other, alpha))


@converter(aten.sub.Tensor, aten.sub.Scalar, operator.sub, operator.isub, torch.sub,
           torch.subtract, (M, "sub"), emits=("qir.sub",))
def sub(ctx: Context, x: Any, other: Any, alpha: Any = 1, out: None = None) -> Value:
    return binary(ctx, "qir.sub", x, _scaled(ctx, other, alpha))


@converter(aten.rsub.Tensor, aten.rsub.Scalar, torch.rsub, emits=("qir.sub",))
def rsub(ctx: Context, x: Any, other: Any, alpha: Any = 1) -> Value:
    """other - alpha * x."""
    return binary(ctx, "qir.sub", other, _scaled(ctx, x, alpha))


@converter(aten.mul.Tensor, aten.mul.Scalar, operator.mul, operator.imul, torch.mul,
           torch.multiply, (M, "mul"), emits=("qir.mul",))
def mul(ctx: Context, x: Any, other: Any, out: None = None) -> Value:
    return binary(ctx, "qir.mul", x, other)


@converter(aten.div.Tensor, aten.div.Scalar, aten.div.Tensor_mode, aten.div.Scalar_mode,
           operator.truediv, operator.itruediv, torch.div, torch.divide, torch.true_divide,
           (M, "div"), (M, "true_divide"), emits=("qir.div",))
def div(ctx: Context, x: Any, other: Any, rounding_mode: str | None = None,
        out: None = None) -> Value:
    if rounding_mode is not None:
        raise ConversionError(f"division with rounding_mode={rounding_mode!r}: qir has no "
                              "floor or trunc")
    elem = promoted_elem(x, other)
    if not is_float_elem(elem):
        elem = "f32"  # true division of integers gives the default float dtype
    return binary(ctx, "qir.div", x, other, elem)


@converter(aten.pow.Tensor_Scalar, aten.pow.Tensor_Tensor, aten.pow.Scalar, operator.pow,
           torch.pow, (M, "pow"), emits=("qir.pow", "qir.mul", "qir.sqrt"))
def pow_(ctx: Context, x: Any, exponent: Any) -> Value:
    if is_tensor(x) and isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
        if exponent == 2:  # the common x ** 2: exact, and cheaper than pow
            v = ctx.value(x, promoted_elem(x, exponent))
            return ctx.emit("qir.mul", [v, v])
        if exponent == 0.5 and is_float_elem(elem_of(x)):
            return ctx.emit("qir.sqrt", [ctx.value(x)])
    return binary(ctx, "qir.pow", x, exponent)


@converter(aten.maximum.default, torch.maximum, (M, "maximum"), emits=("qir.maximum",))
def maximum(ctx: Context, x: Any, other: Any) -> Value:
    return binary(ctx, "qir.maximum", x, other)


@converter(aten.minimum.default, torch.minimum, (M, "minimum"), emits=("qir.minimum",))
def minimum(ctx: Context, x: Any, other: Any) -> Value:
    return binary(ctx, "qir.minimum", x, other)


def _compare(op: str):
    def lower(ctx: Context, x: Any, other: Any) -> Value:
        return binary(ctx, op, x, other)

    return lower


for _name, _pyop in [("eq", operator.eq), ("ne", operator.ne), ("lt", operator.lt),
                     ("le", operator.le), ("gt", operator.gt), ("ge", operator.ge)]:
    converter(getattr(aten, _name).Tensor, getattr(aten, _name).Scalar, _pyop,
              getattr(torch, _name), (M, _name), emits=(f"qir.{_name}",))(_compare(f"qir.{_name}"))


def _to_bool(ctx: Context, x: Any) -> Value:
    v = ctx.value(x)
    if v.type.elem == "bool":
        return v
    return ctx.emit("qir.ne", [v, ctx.value(0, str(v.type.elem))])


@converter(aten.logical_and.default, torch.logical_and, (M, "logical_and"),
           emits=("qir.logical_and",))
def logical_and(ctx: Context, x: Any, other: Any) -> Value:
    return ctx.emit("qir.logical_and", [_to_bool(ctx, x), _to_bool(ctx, other)])


@converter(aten.logical_or.default, torch.logical_or, (M, "logical_or"),
           emits=("qir.logical_or",))
def logical_or(ctx: Context, x: Any, other: Any) -> Value:
    return ctx.emit("qir.logical_or", [_to_bool(ctx, x), _to_bool(ctx, other)])


@converter(aten.logical_not.default, torch.logical_not, (M, "logical_not"),
           emits=("qir.logical_not",))
def logical_not(ctx: Context, x: Any) -> Value:
    return ctx.emit("qir.logical_not", [_to_bool(ctx, x)])


def _require_bool(x: Any, what: str) -> None:
    if elem_of(x) != "bool":
        raise ConversionError(f"{what} of {elem_of(x)} tensors: qir has bitwise logic on "
                              "bool tensors only")


@converter(aten.bitwise_and.Tensor, aten.bitwise_and.Scalar, aten.__and__.Tensor,
           operator.and_, operator.iand, torch.bitwise_and, (M, "bitwise_and"),
           emits=("qir.logical_and",))
def bitwise_and(ctx: Context, x: Any, other: Any) -> Value:
    _require_bool(x, "bitwise and")
    return ctx.emit("qir.logical_and", [_to_bool(ctx, x), _to_bool(ctx, other)])


@converter(aten.bitwise_or.Tensor, aten.bitwise_or.Scalar, aten.__or__.Tensor, operator.or_,
           operator.ior, torch.bitwise_or, (M, "bitwise_or"), emits=("qir.logical_or",))
def bitwise_or(ctx: Context, x: Any, other: Any) -> Value:
    _require_bool(x, "bitwise or")
    return ctx.emit("qir.logical_or", [_to_bool(ctx, x), _to_bool(ctx, other)])


@converter(aten.bitwise_xor.Tensor, aten.bitwise_xor.Scalar, aten.__xor__.Tensor, operator.xor,
           torch.bitwise_xor, (M, "bitwise_xor"), emits=("qir.ne",))
def bitwise_xor(ctx: Context, x: Any, other: Any) -> Value:
    _require_bool(x, "bitwise xor")
    return ctx.emit("qir.ne", [_to_bool(ctx, x), _to_bool(ctx, other)])


@converter(aten.logical_xor.default, torch.logical_xor, (M, "logical_xor"), emits=("qir.ne",))
def logical_xor(ctx: Context, x: Any, other: Any) -> Value:
    return ctx.emit("qir.ne", [_to_bool(ctx, x), _to_bool(ctx, other)])


@converter(aten.isnan.default, torch.isnan, (M, "isnan"), emits=("qir.ne",))
def isnan(ctx: Context, x: Any) -> Value:
    """x != x (integers are never NaN)."""
    v = ctx.value(x)
    if not is_float_elem(str(v.type.elem)):
        return ctx.constant(np.zeros(v.type.shape, bool))
    return ctx.emit("qir.ne", [v, v])


@converter(aten.isinf.default, torch.isinf, (M, "isinf"), emits=("qir.abs", "qir.eq"))
def isinf(ctx: Context, x: Any) -> Value:
    v = ctx.value(x)
    if not is_float_elem(str(v.type.elem)):
        return ctx.constant(np.zeros(v.type.shape, bool))
    return ctx.emit("qir.eq", [ctx.emit("qir.abs", [v]), ctx.value(float("inf"),
                                                                   str(v.type.elem))])


@converter(aten.bitwise_not.default, operator.invert, torch.bitwise_not, (M, "bitwise_not"),
           emits=("qir.logical_not",))
def bitwise_not(ctx: Context, x: Any) -> Value:
    _require_bool(x, "bitwise not")
    return ctx.emit("qir.logical_not", [ctx.value(x)])


# --- unary math --------------------------------------------------------------------------------


def _float_unary(op: str):
    def lower(ctx: Context, x: Any, out: None = None) -> Value:
        return ctx.emit(op, [float_input(ctx, x)])

    return lower


for _name in ("exp", "log", "sqrt", "rsqrt", "erf", "reciprocal", "sin", "cos", "tan", "asin",
              "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "expm1", "log1p",
              "log2", "log10"):
    _targets = [getattr(aten, _name).default, getattr(torch, _name), (M, _name)]
    if _name == "erf":
        _targets.append(torch.special.erf)
    converter(*_targets, emits=(f"qir.{_name}",))(_float_unary(f"qir.{_name}"))


def _rounding(op: str):
    def lower(ctx: Context, x: Any, out: None = None) -> Value:
        v = ctx.value(x)
        if not is_float_elem(str(v.type.elem)):
            return v  # integers are whole already
        return ctx.emit(op, [v])

    return lower


for _name in ("floor", "ceil", "trunc"):
    converter(getattr(aten, _name).default, getattr(torch, _name), (M, _name),
              emits=(f"qir.{_name}",))(_rounding(f"qir.{_name}"))


@converter(aten.round.default, aten.round.decimals, torch.round, (M, "round"),
           emits=("qir.round", "qir.mul", "qir.div"))
def round_(ctx: Context, x: Any, *, decimals: int = 0, out: None = None) -> Value:
    """Ties to even; with decimals, round(x * 10^d) / 10^d as torch computes it."""
    v = ctx.value(x)
    elem = str(v.type.elem)
    if not is_float_elem(elem):
        return v
    if not decimals:
        return ctx.emit("qir.round", [v])
    ten = ctx.value(float(10 ** abs(int(decimals))), elem)
    if decimals > 0:
        return ctx.emit("qir.div", [ctx.emit("qir.round", [ctx.emit("qir.mul", [v, ten])]), ten])
    return ctx.emit("qir.mul", [ctx.emit("qir.round", [ctx.emit("qir.div", [v, ten])]), ten])


@converter(aten.sign.default, torch.sign, (M, "sign"), emits=("qir.sign",))
def sign(ctx: Context, x: Any) -> Value:
    """-1, 0, 1 (integers through float64, exact for |x| < 2^53)."""
    v = ctx.value(x)
    elem = str(v.type.elem)
    if elem == "bool":
        return v
    if is_float_elem(elem):
        return ctx.emit("qir.sign", [v])
    return ctx.cast(ctx.emit("qir.sign", [ctx.cast(v, "f64")]), elem)


def _float_binary(op: str, ints: bool = False):
    def lower(ctx: Context, x: Any, other: Any, out: None = None) -> Value:
        elem = promoted_elem(x, other)
        if elem == "bool" or not (ints or is_float_elem(elem)):
            raise ConversionError(f"{op.split('.')[1]} of {elem} tensors: qir computes it "
                                  "on floats only")
        return ctx.emit(op, [ctx.value(x, elem), ctx.value(other, elem)])

    return lower


converter(aten.atan2.default, torch.atan2, (M, "atan2"), emits=("qir.atan2",))(
    _float_binary("qir.atan2"))
converter(aten.fmod.Tensor, aten.fmod.Scalar, torch.fmod, (M, "fmod"), emits=("qir.fmod",))(
    _float_binary("qir.fmod", ints=True))
converter(aten.remainder.Tensor, aten.remainder.Scalar, torch.remainder, operator.mod,
          (M, "remainder"), emits=("qir.remainder",))(
    _float_binary("qir.remainder", ints=True))


@converter(aten.neg.default, operator.neg, torch.neg, torch.negative, (M, "neg"),
           emits=("qir.neg",))
def neg(ctx: Context, x: Any) -> Value:
    return ctx.emit("qir.neg", [ctx.value(x)])


@converter(aten.abs.default, torch.abs, operator.abs, (M, "abs"), emits=("qir.abs",))
def abs_(ctx: Context, x: Any) -> Value:
    return ctx.emit("qir.abs", [ctx.value(x)])


# --- select ------------------------------------------------------------------------------------


@converter(aten.where.self, aten.where.ScalarSelf, aten.where.ScalarOther, aten.where.Scalar,
           torch.where, emits=("qir.where",))
def where(ctx: Context, condition: Any, x: Any = None, other: Any = None) -> Value:
    if x is None or other is None:
        raise ConversionError("torch.where(condition) returns data-dependent indices; only "
                              "the three-argument form is supported")
    elem = promoted_elem(x, other)
    return ctx.emit("qir.where", [_to_bool(ctx, condition), ctx.value(x, elem),
                                  ctx.value(other, elem)])


@converter((M, "where"), emits=("qir.where",))
def where_method(ctx: Context, x: Any, condition: Any, y: Any) -> Value:
    return where(ctx, condition, x, y)


@converter(aten.masked_fill.Scalar, aten.masked_fill.Tensor, (M, "masked_fill"),
           emits=("qir.where",))
def masked_fill(ctx: Context, x: Any, mask: Any, value: Any) -> Value:
    """x with `value` where mask is true: where(mask, value, x), in x's element type."""
    v = ctx.value(x)
    fill = ctx.value(value, str(v.type.elem))
    return ctx.emit("qir.where", [_to_bool(ctx, mask), fill, v])


# --- clamp -------------------------------------------------------------------------------------


@converter(aten.clamp.default, aten.clamp.Tensor, aten.clip.default, torch.clamp, torch.clip,
           (M, "clamp"), (M, "clip"), emits=("qir.clamp", "qir.maximum", "qir.minimum"))
def clamp(ctx: Context, x: Any, min: Any = None, max: Any = None, out: None = None) -> Value:
    v = ctx.value(x)
    numbers = all(b is None or isinstance(b, (int, float)) for b in (min, max))
    if numbers and is_float_elem(str(v.type.elem)):
        return ctx.emit("qir.clamp", [v], {"min": None if min is None else float(min),
                                           "max": None if max is None else float(max)})
    elem = promoted_elem(x, *(b for b in (min, max) if b is not None))
    v = ctx.value(x, elem)
    if min is not None:
        v = ctx.emit("qir.maximum", [v, ctx.value(min, elem)])
    if max is not None:
        v = ctx.emit("qir.minimum", [v, ctx.value(max, elem)])
    return v


@converter(aten.clamp_min.default, torch.clamp_min, (M, "clamp_min"), emits=("qir.clamp",))
def clamp_min(ctx: Context, x: Any, min: Any) -> Value:
    return clamp(ctx, x, min=min)


@converter(aten.clamp_max.default, torch.clamp_max, (M, "clamp_max"), emits=("qir.clamp",))
def clamp_max(ctx: Context, x: Any, max: Any) -> Value:
    return clamp(ctx, x, max=max)


def fill_like(ctx: Context, value: Any) -> Value:
    """A tensor of torch's result shape and dtype filled with `value` (zeros_like & co.)."""
    ty = ctx.out_type
    value = scalar_value(value, "fill value")
    return ctx.constant(np.full(ty.shape, value, dtype=ty.dtype))
