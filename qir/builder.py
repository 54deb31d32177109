"""Creating ops with types inferred from their operands, at an insertion point."""

from __future__ import annotations

from typing import Any, Iterable

from qir.diagnostics import QirError
from qir.ir import UNKNOWN_LOC, Function, Location, Op, Value
from qir.registry import get_op
from qir.types import TensorType


def make_op(name: str, operands: Iterable[Value], attrs: dict[str, Any] | None = None,
            result_types: list[TensorType] | None = None, names: list[str] | None = None,
            loc: Location = UNKNOWN_LOC) -> Op:
    """A detached op; result types are inferred when not given. Inferred types whose
    element type is left open (quantized results) must be given explicitly."""
    opdef = get_op(name)
    operands = list(operands)
    attrs = opdef.normalize_attrs(dict(attrs or {}))
    op = Op(name, operands, attrs, [], None, loc)
    if result_types is None:
        if opdef.infer is None:
            op.drop_operands()
            raise QirError(f"{name} cannot infer its result type; pass result_types")
        try:
            inferred = opdef.infer(op)
        except QirError:
            op.drop_operands()
            raise
        if any(t.elem is None for t in inferred):
            op.drop_operands()
            raise QirError(f"{name} needs explicit result types (the element type is not "
                           "determined by the operands)")
        result_types = inferred
    from qir.ir import Value as _V

    op.results = [_V("", t, op, i) for i, t in enumerate(result_types)]
    if names:
        for r, n in zip(op.results, names):
            r.name = n
    return op


class Builder:
    """Appends (or inserts before/after an anchor op) into a function."""

    def __init__(self, fn: Function, before: Op | None = None, after: Op | None = None,
                 loc: Location = UNKNOWN_LOC):
        self.fn = fn
        self.before = before
        self.after = after
        self.loc = loc

    def create(self, name: str, operands: Iterable[Value] = (), attrs: dict | None = None,
               result_types: list[TensorType] | None = None, names: list[str] | None = None,
               loc: Location | None = None) -> Op:
        op = make_op(name, operands, attrs, result_types, names,
                     loc if loc is not None else self.loc)
        if self.before is not None:
            self.fn.insert_before(self.before, op)
        elif self.after is not None:
            self.fn.insert_after(self.after, op)
            self.after = op
        else:
            self.fn.append(op)
        return op

    def value(self, *args, **kwargs) -> Value:
        """Create a single-result op and return its result."""
        return self.create(*args, **kwargs).result
