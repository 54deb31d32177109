"""Activations and softmax, functional and ATen spellings (module classes are in
modules.py). `inplace=True` is accepted: fx and export graphs use the result value."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from frontends.common import ConversionError, converter, qir_elem
from frontends.context import Context
from frontends.converters.util import float_input
from qir import Value

aten = torch.ops.aten
M = "call_method"


def _unary(op: str):
    def lower(ctx: Context, x: Any, inplace: bool = False) -> Value:
        return ctx.emit(op, [float_input(ctx, x)])

    return lower


for _op, _targets in {
    "relu": [aten.relu.default, F.relu, torch.relu, (M, "relu")],
    "silu": [aten.silu.default, F.silu],
    "sigmoid": [aten.sigmoid.default, torch.sigmoid, F.sigmoid, (M, "sigmoid")],
    "tanh": [aten.tanh.default, torch.tanh, F.tanh, (M, "tanh")],
    "hardswish": [aten.hardswish.default, F.hardswish],
    "hardsigmoid": [aten.hardsigmoid.default, F.hardsigmoid],
}.items():
    converter(*_targets, emits=(f"qir.{_op}",))(_unary(f"qir.{_op}"))


@converter(aten.relu6.default, F.relu6, emits=("qir.clamp",))
def relu6(ctx: Context, x: Any, inplace: bool = False) -> Value:
    return ctx.emit("qir.clamp", [float_input(ctx, x)], {"min": 0.0, "max": 6.0})


@converter(aten.hardtanh.default, F.hardtanh, emits=("qir.clamp",))
def hardtanh(ctx: Context, x: Any, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> Value:
    return ctx.emit("qir.clamp", [float_input(ctx, x)], {"min": float(min_val),
                                                         "max": float(max_val)})


@converter(aten.leaky_relu.default, F.leaky_relu, emits=("qir.leaky_relu",))
def leaky_relu(ctx: Context, x: Any, negative_slope: float = 0.01,
               inplace: bool = False) -> Value:
    return ctx.emit("qir.leaky_relu", [float_input(ctx, x)],
                    {"negative_slope": float(negative_slope)})


@converter(aten.gelu.default, F.gelu, emits=("qir.gelu",))
def gelu(ctx: Context, x: Any, approximate: str = "none") -> Value:
    if approximate not in ("none", "tanh"):
        raise ConversionError(f"gelu approximate={approximate!r}")
    return ctx.emit("qir.gelu", [float_input(ctx, x)], {"approximate": approximate})


@converter(aten.elu.default, F.elu, emits=("qir.elu",))
def elu(ctx: Context, x: Any, alpha: float = 1.0, scale: float = 1.0, input_scale: float = 1.0,
        inplace: bool = False) -> Value:
    if scale != 1 or input_scale != 1:
        raise ConversionError("elu with scale/input_scale (selu): qir.elu has alpha only")
    return ctx.emit("qir.elu", [float_input(ctx, x)], {"alpha": float(alpha)})


def _softmax_dim(dim: int | None, rank: int) -> int:
    if dim is None:  # torch's legacy implicit choice
        return 0 if rank in (0, 1, 3) else 1
    return int(dim)


def lower_softmax(ctx: Context, op: str, x: Any, dim: int | None,
                  dtype: torch.dtype | None = None) -> Value:
    v = ctx.value(x)
    if dtype is not None:
        v = ctx.cast(v, qir_elem(dtype))
    return ctx.emit(op, [float_input(ctx, v)], {"axis": _softmax_dim(dim, v.type.rank)})


def _softmax(op: str):
    def lower(ctx: Context, x: Any, dim: int | None = None, dtype: torch.dtype | None = None,
              _stacklevel: int = 3) -> Value:
        return lower_softmax(ctx, op, x, dim, dtype)

    return lower


converter(aten.softmax.int, F.softmax, torch.softmax, (M, "softmax"),
          emits=("qir.softmax",))(_softmax("qir.softmax"))
converter(aten.log_softmax.int, F.log_softmax, torch.log_softmax, (M, "log_softmax"),
          emits=("qir.log_softmax",))(_softmax("qir.log_softmax"))


def _core_softmax(op: str):
    def lower(ctx: Context, x: Any, dim: int, half_to_float: bool) -> Value:
        v = float_input(ctx, x)
        if half_to_float:
            v = ctx.cast(v, "f32")
        return ctx.emit(op, [v], {"axis": int(dim)})

    return lower


converter(aten._softmax.default, emits=("qir.softmax",))(_core_softmax("qir.softmax"))
converter(aten._log_softmax.default,
          emits=("qir.log_softmax",))(_core_softmax("qir.log_softmax"))
