"""qir's reproducible float32 arithmetic for TVM (qir/floatmath.py): the shared formulas
for exp, tanh, erf and friends, emitted as TIR.

The formulas are written with Python operators; here they run on `Value`, an element of
a tensor as a function of its index. Products go through backends/tvm/exact.py's
`rounded_product`, so that no target fuses a multiply into the add that follows it
(which would round once where the interpreter rounds twice). Values a formula uses more
than once (`keep`) are computed into a tensor of their own (a TE stage): inlined, the
expression tree of gelu grows exponentially and TVM and nvcc take minutes over it. On
CUDA, whose dlight schedules would inline those stages again, they are local variables
(TIR Lets) instead.
tests/backends/tvm/test_tvm_float_bits.py compares the bits with the numpy interpreter.
"""

from __future__ import annotations

import operator

from tvm import te
from tvm import tirx as tir

from backends.tvm.common import dtype_of
from backends.tvm import exact
from backends.tvm.exact import rounded_product, target_kind as _target_kind
from qir import floatmath


class Value:
    """An element of a float32 (or bool) tensor of `shape`: `at(index)` is its TIR
    expression; `shape` is None for a scalar constant."""

    def __init__(self, at, shape=None):
        self.at, self.shape = at, shape

    @staticmethod
    def const(value: float) -> Value:
        c = tir.const(value, "float32")
        return Value(lambda i: c)

    def map(self, fn) -> Value:
        return Value(lambda i: fn(self.at(i)), self.shape)

    def _binary(self, other, fn, reverse: bool = False) -> Value:
        other = other if isinstance(other, Value) else Value.const(other)
        a, b = (other, self) if reverse else (self, other)
        return Value(lambda i: fn(a.at(i), b.at(i)), a.shape or b.shape)

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

    c = staticmethod(Value.const)

    @staticmethod
    def floor(x: Value) -> Value:
        return x.map(tir.floor)

    @staticmethod
    def where(cond: Value, a: Value, b: Value) -> Value:
        return Value(lambda i: tir.Select(cond.at(i), a.at(i), b.at(i)),
                     cond.shape or a.shape or b.shape)

    @staticmethod
    def isnan(x: Value) -> Value:
        return x.map(exact.isnan)

    @staticmethod
    def abs(x: Value) -> Value:
        return x.map(tir.abs)

    @staticmethod
    def pow2(k: Value) -> Value:
        return k.map(lambda e: tir.reinterpret("float32",
                                               floatmath.pow2_bits(e.astype("int32"))))

    @staticmethod
    def keep(x: Value) -> Value:
        if getattr(x, "stored", False) or x.shape is None:
            return x
        if _LETS is not None:  # CUDA: a local variable (see unary)
            var = []

            def bound(i):
                if not var:
                    expr = x.at(i)
                    var.append(tir.Var(f"v{len(_LETS)}", str(expr.ty)))
                    _LETS.append((var[0], expr))
                return var[0]

            kept = Value(bound, x.shape)
        else:
            t = te.compute(x.shape, lambda *i: x.at(i), name="keep")
            kept = Value(lambda i: t(*i), x.shape)
        kept.stored = True
        return kept


# The Let bindings of the CUDA formula being built; None: build TE stages.
_LETS: list | None = None


ARITH = TeArith()


def unary(bb, x, formula, fallback, name: str, **kwargs):
    """`formula` applied to each element of float32 `x` (one TIR function); other dtypes
    go to `fallback(x)`, a Relax expression."""
    if dtype_of(x) != "float32":
        return bb.emit(fallback(x))

    def compute(t):
        arg = Value(lambda i: t(*i), tuple(t.shape))
        arg.stored = True
        if _target_kind() != "cuda":
            y = formula(arg, ARITH, **kwargs)
            return te.compute(t.shape, lambda *i: y.at(i), name=name)
        return te.compute(
            t.shape, lambda *i: _with_lets(lambda: formula(arg, ARITH, **kwargs).at(i)),
            name=name)

    return bb.emit_te(compute, x, primfunc_name_hint=name)


def _with_lets(build) -> tir.PrimExpr:
    """`build()` with the kept values bound by Lets: dlight's CUDA schedules inline TE
    stages, which would rebuild the exponential tree, so on CUDA a formula is one
    expression with local variables."""
    global _LETS
    _LETS = []
    try:
        body = build()
        for var, expr in reversed(_LETS):
            body = tir.Let(var, expr, body)
        return body
    finally:
        _LETS = None
