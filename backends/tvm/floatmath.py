"""qir's reproducible float32 arithmetic for TVM (qir/floatmath.py): the shared formulas
for exp, tanh, erf and friends, emitted as one elementwise TIR function each.

The formulas are written with Python operators; here they run on `Value`, a TIR
expression whose products go through backends/tvm/exact.py's `rounded_product`, so
that no target fuses a multiply into the add that follows it (which would round once
where the interpreter rounds twice). tests/backends/tvm/test_tvm_float_bits.py compares
the bits with the numpy interpreter.
"""

from __future__ import annotations

import operator

from tvm import te
from tvm import tirx as tir

from backends.tvm.common import dtype_of
from backends.tvm.exact import rounded_product
from qir import floatmath


class Value:
    """A float32 (or bool) TIR expression with the operators the formulas use."""

    def __init__(self, expr: tir.PrimExpr):
        self.expr = expr

    def _binary(self, other, fn, reverse: bool = False) -> Value:
        other = other.expr if isinstance(other, Value) else other
        a, b = (other, self.expr) if reverse else (self.expr, other)
        return Value(fn(a, b))

    def __add__(self, o): return self._binary(o, operator.add)
    def __radd__(self, o): return self._binary(o, operator.add, reverse=True)
    def __sub__(self, o): return self._binary(o, operator.sub)
    def __rsub__(self, o): return self._binary(o, operator.sub, reverse=True)
    def __mul__(self, o): return self._binary(o, rounded_product)
    def __rmul__(self, o): return self._binary(o, rounded_product, reverse=True)
    def __truediv__(self, o): return self._binary(o, tir.div)
    def __rtruediv__(self, o): return self._binary(o, tir.div, reverse=True)
    def __lt__(self, o): return self._binary(o, operator.lt)
    def __gt__(self, o): return self._binary(o, operator.gt)


class TeArith:
    """floatmath.Arith on Values."""

    @staticmethod
    def c(value: float) -> Value:
        return Value(tir.const(value, "float32"))

    @staticmethod
    def floor(x: Value) -> Value:
        return Value(tir.floor(x.expr))

    @staticmethod
    def where(cond: Value, a: Value, b: Value) -> Value:
        return Value(tir.Select(cond.expr, a.expr, b.expr))

    @staticmethod
    def isnan(x: Value) -> Value:
        return Value(tir.isnan(x.expr))

    @staticmethod
    def abs(x: Value) -> Value:
        return Value(tir.abs(x.expr))

    @staticmethod
    def pow2(k: Value) -> Value:
        bits = floatmath.pow2_bits(k.expr.astype("int32"))
        return Value(tir.reinterpret("float32", bits))


ARITH = TeArith()


def unary(bb, x, formula, fallback, name: str, **kwargs):
    """`formula` applied to each element of float32 `x` (one TIR function); other dtypes
    go to `fallback(x)`, a Relax expression."""
    if dtype_of(x) != "float32":
        return bb.emit(fallback(x))

    def compute(t):
        return te.compute(t.shape, lambda *i: formula(Value(t(*i)), ARITH, **kwargs).expr,
                          name=name)

    return bb.emit_te(compute, x, primfunc_name_hint=name)
