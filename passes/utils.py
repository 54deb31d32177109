"""Helpers shared by passes: constants, parameters, single-use checks."""

from __future__ import annotations

import numpy as np

from qir.builder import Builder
from qir.ir import Function, Module, Op, Value
from qir.ops.core import INLINE_CONSTANT_LIMIT, constant_array
from qir.types import TensorType, elem_from_numpy

__all__ = ["constant_array", "eliminate_dead_code", "make_constant", "prune_params",
           "single_user", "param_name"]


def make_constant(fn: Function, anchor: Op, array: np.ndarray, name_hint: str,
                  elem=None, loc=None) -> Value:
    """A value holding `array`: an inline qir.constant when small, else a new module
    parameter. `elem` overrides the element type (e.g. a quantized type over int8 data)."""
    module = fn.module
    array = np.ascontiguousarray(array)
    ty = TensorType(array.shape, elem if elem is not None else elem_from_numpy(array.dtype))
    b = Builder(fn, before=anchor, loc=loc if loc is not None else anchor.loc)
    if array.size <= INLINE_CONSTANT_LIMIT and elem is None:
        return b.value("qir.constant", [], {"value": array}, result_types=[ty],
                       names=[name_hint])
    pname = module.add_param(name_hint, array)
    return b.value("qir.param", [], {"name": pname}, result_types=[ty], names=[name_hint])


def param_name(value: Value) -> str | None:
    op = value.owner
    return op.attr("name") if op is not None and op.name == "qir.param" else None


def single_user(value: Value) -> Op | None:
    """The only op using `value`, if it has exactly one use and is not a function output."""
    if len(value.uses) != 1:
        return None
    fn = value.owner.function if value.owner is not None else None
    if fn is not None and value in fn.outputs:
        return None
    return value.uses[0].op


def prune_params(module: Module) -> bool:
    """Drop parameter arrays no qir.param op refers to any more."""
    used = {op.attr("name") for fn in module.functions.values() for op in fn.ops
            if op.name == "qir.param"}
    dead = [k for k in module.params if k not in used]
    for k in dead:
        del module.params[k]
    return bool(dead)


def eliminate_dead_code(fn: Function) -> bool:
    """Remove ops that contribute to no function output (networkx reachability)."""
    from qir.graph import dead_ops

    dead = dead_ops(fn)
    for op in dead:
        op.drop_operands()
    for op in dead:
        fn.ops.remove(op)
        for r in op.results:
            fn.release_name(r.name)
        op.function = None
    return bool(dead)
