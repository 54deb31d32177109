"""Pattern rewriting: match ops by name plus a predicate, change the IR only through a
Rewriter (so the driver sees every change), iterate a worklist to a fixpoint.

    @pattern("qir.relu")
    def relu_of_relu(op, rw):
        src = op.operands[0].owner
        if src is None or src.name != "qir.relu":
            return False
        rw.replace_op(op, src.results)
        return True

    apply_patterns(module, [relu_of_relu])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from qir.builder import make_op
from qir.diagnostics import QirError
from qir.ir import Function, Location, Module, Op, Value
from qir.types import TensorType


@dataclass(frozen=True)
class Pattern:
    op_name: str
    fn: Callable[[Op, "Rewriter"], bool]

    @property
    def name(self) -> str:
        return self.fn.__name__


def pattern(op_name: str):
    """Decorator turning `fn(op, rewriter) -> bool` into a Pattern keyed by op name."""

    def wrap(fn):
        return Pattern(op_name, fn)

    return wrap


class Rewriter:
    """Every IR change a pattern makes goes through here; the driver requeues what it
    touches."""

    def __init__(self, fn: Function):
        self.fn = fn
        self.changed = False
        self.touched: list[Op] = []
        self.erased: set[int] = set()

    def _touch_users(self, values: Iterable[Value]) -> None:
        for v in values:
            self.touched.extend(v.users)

    def create_before(self, anchor: Op, name: str, operands: Iterable[Value],
                      attrs: dict[str, Any] | None = None,
                      result_types: list[TensorType] | None = None,
                      names: list[str] | None = None, loc: Location | None = None) -> Op:
        op = make_op(name, operands, attrs, result_types, names,
                     loc if loc is not None else anchor.loc)
        self.fn.insert_before(anchor, op)
        self.touched.append(op)
        self.changed = True
        return op

    def replace_uses(self, old: Value, new: Value) -> None:
        self._touch_users([old])
        self.fn.replace_all_uses(old, new)
        self.touched.extend(new.users)
        self.changed = True

    def replace_op(self, op: Op, new_values: Iterable[Value], *,
                   keep_names: bool = False) -> None:
        """Redirect every use of op's results to new_values, then erase op. With
        keep_names, new values created for the replacement take the old names, so
        printed IR stays easy to follow across passes."""
        new_values = list(new_values)
        old_names = [r.name for r in op.results]
        if len(new_values) != len(op.results):
            raise QirError(f"replacing {op.name} with {len(new_values)} values, it has "
                           f"{len(op.results)} results")
        for old, new in zip(op.results, new_values):
            if old is not new:
                self.replace_uses(old, new)
        self.erase_op(op)
        if keep_names:
            for new, name in zip(new_values, old_names):
                self.fn.rename(new, name)

    def erase_op(self, op: Op) -> None:
        producers = [v.owner for v in op.operands if v.owner is not None]
        self.fn.erase(op)
        self.erased.add(id(op))
        self.touched.extend(producers)
        self.changed = True

    def set_attr(self, op: Op, key: str, value: Any) -> None:
        op.attrs[key] = op.opdef.normalize_attrs({key: value})[key]
        self.touched.append(op)
        self.changed = True

    def set_operand(self, op: Op, index: int, value: Value) -> None:
        old = op.operands[index]
        op.set_operand(index, value)
        self.touched.append(op)
        if old.owner is not None:
            self.touched.append(old.owner)
        self.changed = True


def apply_patterns(module: Module, patterns: Iterable[Pattern], *,
                   max_rewrites: int | None = None) -> bool:
    """Apply patterns greedily until none applies. Raises QirError when the number of
    successful rewrites passes `max_rewrites` (default 10 per op + 100): a pattern set
    that does not converge is a bug to report, not a loop to hang in."""
    by_name: dict[str, list[Pattern]] = {}
    for p in patterns:
        by_name.setdefault(p.op_name, []).append(p)
    changed_any = False
    for fn in module.functions.values():
        cap = max_rewrites if max_rewrites is not None else 10 * len(fn.ops) + 100
        worklist = list(fn.ops)
        queued = {id(op) for op in worklist}
        rewrites = 0
        while worklist:
            op = worklist.pop(0)
            queued.discard(id(op))
            if op.function is not fn:
                continue
            for p in by_name.get(op.name, ()):
                rw = Rewriter(fn)
                if not p.fn(op, rw):
                    continue
                if not rw.changed:
                    raise QirError(f"pattern {p.name} returned True without changing anything")
                rewrites += 1
                changed_any = True
                if rewrites > cap:
                    raise QirError(f"pattern rewriting did not converge after {cap} rewrites "
                                   f"(last: {p.name} on {op.name}); a pattern undoes another")
                if op.function is fn:
                    rw.touched.append(op)
                for t in rw.touched:
                    if id(t) not in queued and t.function is fn:
                        worklist.append(t)
                        queued.add(id(t))
                break  # op may be gone or changed: look at it again from the worklist
    return changed_any
