"""Helpers shared by the calibration-driven method passes (bias-correction, smoothquant,
weight-only GPTQ): run the float module over calibration data and keep chosen
intermediate tensors, and replace an op's constant operands with new arrays."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from qir.diagnostics import QirError
from qir.ir import Function, Module, Op, Value

from passes.manager import PassContext
from passes.utils import make_constant, param_name


def calibration_batches(ctx: PassContext, pass_name: str) -> list[dict[str, Any]]:
    """ctx.calibration_data, or an error saying how to give it."""
    batches = ctx.calibration_data
    if batches is None:
        raise QirError(f"{pass_name} needs calibration data: pass --calib CALIB.npz (or set "
                       "PassContext.calibration_data)")
    if len(batches) == 0:
        raise QirError(f"{pass_name}: the calibration set is empty")
    return batches


def collect(module: Module, batches: list[dict[str, Any]], values: list[Value],
            reduce: Callable[[Value, np.ndarray], Any] | None = None,
            function: str = "main") -> dict[int, list[Any]]:
    """Run @function on every batch and keep, per value of it (keyed by id), one entry
    per batch: the array itself, or `reduce(value, array)` (to keep memory small)."""
    from backends.numpy import run

    keep = reduce or (lambda _v, a: np.array(a, copy=True))
    out: dict[int, list[Any]] = {id(v): [] for v in values}
    by_owner: dict[int, list[Value]] = {}
    args = []
    for v in values:
        if v.owner is None:
            args.append(v)
        else:
            by_owner.setdefault(id(v.owner), []).append(v)

    def hook(op: Op, results: list[np.ndarray]) -> None:
        for v in by_owner.get(id(op), ()):
            out[id(v)].append(keep(v, results[v.index]))

    for batch in batches:
        for v in args:
            out[id(v)].append(keep(v, np.asarray(batch[v.name], dtype=v.type.dtype)))
        run(module, batch, function=function, hook=hook)
    return out


def rows(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """x as a [M, C] float64 matrix with the channel axis last."""
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    return x.reshape(-1, x.shape[-1])


def replace_constant(op: Op, index: int, array: np.ndarray, suffix: str) -> Value:
    """Give `op` a fresh constant operand `index` holding `array` (named after the old
    parameter plus `suffix`); the old one is left for dead-code elimination."""
    fn: Function = op.function
    old = op.operands[index]
    base = param_name(old) or old.name
    v = make_constant(fn, op, np.ascontiguousarray(array), f"{base}.{suffix}", loc=op.loc)
    op.set_operand(index, v)
    return v


def add_bias(op: Op, bias: np.ndarray, suffix: str) -> Op:
    """Replace conv/linear `op` (without a bias operand) by the same op with `bias`."""
    from qir.builder import Builder

    fn: Function = op.function
    wname = param_name(op.operands[1]) or op.operands[1].name
    bv = make_constant(fn, op, bias, f"{wname.rsplit('.', 1)[0]}.bias.{suffix}", loc=op.loc)
    new = Builder(fn, before=op, loc=op.loc).create(
        op.name, list(op.operands) + [bv], dict(op.attrs), [op.result.type])
    name = op.result.name
    fn.replace_all_uses(op.result, new.result)
    fn.erase(op)
    fn.rename(new.result, name)
    return new


def finish(module: Module) -> None:
    """Drop the constants and parameters the rewrites left unused."""
    from passes.utils import eliminate_dead_code, prune_params

    for fn in module.functions.values():
        eliminate_dead_code(fn)
    prune_params(module)
