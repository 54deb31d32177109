"""Structural diff of two modules: ops matched across them, then added / removed /
changed ops with what changed (op name, operands, attributes, result types, quantization
with the relative change of each scale).

Text diffs of IR drown in renumbered names and re-hoisted type aliases; this one matches
ops by what they are. Matching, per function, in rounds (each round also maps the
matched ops' results, so later rounds compare operands through that map):

1. same first result name and same location;
2. same op name, same location and the same operands (through the value map), or for
   parameters the same parameter name — robust to renamed values (`conv2d_q_1` vs
   `conv2d_q`);
3. same op name, same location and the same name once `_N` suffixes are stripped;
4. same op name and same location, in order;
5. same result name and op name at another location (reported as moved).

Value names alone are not a difference: a module that only renames values compares equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qir.ir import Function, Module, Op, Value
from qir.pretty import (is_default_attr, relative_change, short_attr, type_short,
                         values_equal)
from qir.printer import format_attr, format_loc
from qir.types import QuantType, TensorType

_SUFFIX = re.compile(r"(_\d+)+$")


@dataclass
class OpDiff:
    """One entry of a function diff: kind is 'added', 'removed' or 'changed'."""

    kind: str
    a: Op | None
    b: Op | None
    details: list[str] = field(default_factory=list)

    @property
    def op(self) -> Op:
        return self.b if self.b is not None else self.a

    @property
    def op_name(self) -> str:
        return self.op.name


@dataclass
class FunctionDiff:
    name: str
    entries: list[OpDiff] = field(default_factory=list)
    signature: list[str] = field(default_factory=list)
    renamed: int = 0  # matched values whose names differ (not a difference by itself)

    @property
    def empty(self) -> bool:
        return not self.entries and not self.signature


@dataclass
class ModuleDiff:
    a_name: str
    b_name: str
    functions: list[FunctionDiff] = field(default_factory=list)
    added_functions: list[str] = field(default_factory=list)
    removed_functions: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return (not self.added_functions and not self.removed_functions
                and all(f.empty for f in self.functions))

    def counts(self) -> dict[str, dict[str, int]]:
        """Per op name: how many added, removed, changed."""
        out: dict[str, dict[str, int]] = {}
        for f in self.functions:
            for e in f.entries:
                row = out.setdefault(e.op_name, {"added": 0, "removed": 0, "changed": 0})
                row[e.kind] += 1
        return dict(sorted(out.items()))


# ---- matching -----------------------------------------------------------------------------


def _base(name: str) -> str:
    return _SUFFIX.sub("", name)


class _Matcher:
    def __init__(self, fa: Function, fb: Function):
        self.fa, self.fb = fa, fb
        self.pairs: dict[int, Op] = {}      # id(op in A) -> op in B
        self.taken: set[int] = set()        # id(op in B)
        self.vmap: dict[int, Value] = {}    # id(value in A) -> value in B
        names_b = {a.name: a for a in fb.args}
        for i, arg in enumerate(fa.args):
            other = names_b.get(arg.name) or (fb.args[i] if i < len(fb.args) else None)
            if other is not None:
                self.vmap[id(arg)] = other

    def pair(self, a: Op, b: Op) -> None:
        self.pairs[id(a)] = b
        self.taken.add(id(b))
        for ra, rb in zip(a.results, b.results):
            self.vmap[id(ra)] = rb

    def free_a(self) -> list[Op]:
        return [op for op in self.fa.ops if id(op) not in self.pairs]

    def free_b(self) -> list[Op]:
        return [op for op in self.fb.ops if id(op) not in self.taken]

    def same_operands(self, a: Op, b: Op) -> bool:
        if len(a.operands) != len(b.operands):
            return False
        if not a.operands:
            if a.name == "qir.param":
                return a.attrs.get("name") == b.attrs.get("name")
            return _attrs_equal(a, b)
        return all(self.vmap.get(id(x)) is y for x, y in zip(a.operands, b.operands))

    def by_key(self, key) -> bool:
        """Pair free ops with equal keys (None: no key), in order; whether any paired."""
        groups: dict[Any, list[Op]] = {}
        for op in self.free_b():
            k = key(op)
            if k is not None:
                groups.setdefault(k, []).append(op)
        found = False
        for op in self.free_a():
            k = key(op)
            cands = groups.get(k) if k is not None else None
            if cands:
                self.pair(op, cands.pop(0))
                found = True
        return found

    def by_operands(self) -> bool:
        found = False
        groups: dict[Any, list[Op]] = {}
        for op in self.free_b():
            groups.setdefault((op.name, op.loc), []).append(op)
        for op in self.free_a():
            for cand in groups.get((op.name, op.loc), ()):
                if id(cand) not in self.taken and self.same_operands(op, cand):
                    self.pair(op, cand)
                    found = True
                    break
        return found

    def settle(self) -> None:
        while self.by_operands():
            pass

    def run(self) -> None:
        def first_name(op: Op) -> str | None:
            return op.results[0].name if op.results else None

        self.by_key(lambda op: (first_name(op), op.loc) if op.results else None)
        self.settle()
        self.by_key(lambda op: (op.name, op.loc, _base(first_name(op) or "")))
        self.settle()
        self.by_key(lambda op: (op.name, op.loc))
        self.settle()
        self.by_key(lambda op: (op.name, first_name(op)) if op.results else None)
        self.settle()


# ---- comparing matched ops -------------------------------------------------------------


def _attr_value(op: Op, key: str) -> Any:
    if key in op.attrs:
        return op.attrs[key]
    try:
        spec = op.opdef.attrs.get(key)
    except Exception:  # noqa: BLE001  (an op unknown to the registry)
        spec = None
    return None if spec is None or spec.required else spec.default


def _attrs_equal(a: Op, b: Op) -> bool:
    keys = set(a.attrs) | set(b.attrs)
    return all(values_equal(_attr_value(a, k), _attr_value(b, k)) for k in keys)


def _attr_change(key: str, x: Any, y: Any) -> str:
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)) and len(x) == len(y) \
            and len(x) > 6:
        diff = [i for i, (p, q) in enumerate(zip(x, y)) if not values_equal(p, q)]
        i = diff[0]
        return (f"{key}: {len(diff)} of {len(x)} elements changed (first [{i}]: "
                f"{format_attr(x[i])} → {format_attr(y[i])})")
    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and \
            not isinstance(x, bool) and not isinstance(y, bool) and x is not None:
        extra = f" ({relative_change(x, y)})" if isinstance(x, float) or \
            isinstance(y, float) else ""
        return f"{key}: {format_attr(x)} → {format_attr(y)}{extra}"
    return f"{key}: {short_attr(x)} → {short_attr(y)}"


def _quant_changes(qa: QuantType, qb: QuantType) -> list[str]:
    out = []
    sa = qa.storage if qa.has_default_range() else f"{qa.storage}<{qa.storage_min}:" \
        f"{qa.storage_max}>"
    sb = qb.storage if qb.has_default_range() else f"{qb.storage}<{qb.storage_min}:" \
        f"{qb.storage_max}>"
    if sa != sb:
        out.append(f"storage {sa} → {sb}")
    if qa.expressed != qb.expressed:
        out.append(f"expressed type {qa.expressed} → {qb.expressed}")
    if qa.levels != qb.levels:
        def table(q):
            return ("uniform" if q.levels is None
                    else q.codebook_name or f"a codebook of {len(q.levels)} levels")
        same = qa.levels is not None and qb.levels is not None and \
            len(qa.levels) == len(qb.levels)
        out.append(f"codebook: {table(qa)} → {table(qb)}" + (
            f" (largest level change {max(abs(x - y) for x, y in zip(qa.levels, qb.levels)):.4g})"
            if same else ""))
    if qa.pow2 != qb.pow2:
        out.append("power-of-two scales " + ("dropped" if qa.pow2 else "taken"))
    if (qa.axis, qa.block_size) != (qb.axis, qb.block_size) or \
            len(qa.scales) != len(qb.scales):
        out.append(f"granularity: {_granularity(qa)} → {_granularity(qb)}")
        return out
    if qa.is_per_tensor:
        if qa.scale != qb.scale:
            x, y = nums(qa.scale, qb.scale)
            out.append(f"scale {x} → {y} ({relative_change(qa.scale, qb.scale)})")
        if qa.zero_point != qb.zero_point:
            out.append(f"zero point {qa.zero_point} → {qb.zero_point}")
        return out
    changed = [i for i, (x, y) in enumerate(zip(qa.scales, qb.scales)) if x != y]
    if changed:
        rel = [(qb.scales[i] - qa.scales[i]) / qa.scales[i] for i in changed]
        worst = int(np.argmax(np.abs(rel)))
        i = changed[worst]
        x, y = nums(qa.scales[i], qb.scales[i])
        out.append(f"scales: {len(changed)} of {len(qa.scales)} changed along axis "
                   f"{qa.axis}, largest at [{i}]: {x} → {y} "
                   f"({relative_change(qa.scales[i], qb.scales[i])})")
    zchanged = sum(1 for x, y in zip(qa.zero_points, qb.zero_points) if x != y)
    if zchanged:
        out.append(f"zero points: {zchanged} of {len(qa.zero_points)} changed")
    return out


def nums(x: float, y: float) -> tuple[str, str]:
    """Two different numbers with just enough digits to tell them apart (4 at least)."""
    for digits in range(4, 18):
        a, b = f"{x:.{digits}g}", f"{y:.{digits}g}"
        if a != b:
            return a, b
    return repr(x), repr(y)


def _granularity(q: QuantType) -> str:
    if q.is_per_tensor:
        return "per-tensor"
    if q.block_size is None:
        return f"per-axis {q.axis} ({len(q.scales)} scales)"
    return f"per-group {q.axis}:{q.block_size} ({len(q.scales)} scales)"


def type_changes(ta: TensorType, tb: TensorType, what: str = "") -> list[str]:
    """Readable differences between two tensor types (empty when equal)."""
    if ta == tb:
        return []
    head = f"{what}: " if what else ""
    out = []
    if ta.shape != tb.shape:
        sa = "x".join(map(str, ta.shape)) or "scalar"
        sb = "x".join(map(str, tb.shape)) or "scalar"
        out.append(f"{head}shape {sa} → {sb}")
    qa, qb = ta.elem, tb.elem
    if isinstance(qa, QuantType) and isinstance(qb, QuantType):
        out.extend(head + c for c in _quant_changes(qa, qb))
    elif qa != qb:
        ea = type_short(TensorType((), qa)).split(" ", 1)[1]
        eb = type_short(TensorType((), qb)).split(" ", 1)[1]
        out.append(f"{head}type {ea} → {eb}")
    return out


def _compare(a: Op, b: Op, vmap: dict[int, Value]) -> list[str]:
    details = []
    if a.name != b.name:
        details.append(f"op {a.name} → {b.name}")
    same_operands = len(a.operands) == len(b.operands) and all(
        vmap.get(id(x)) is y for x, y in zip(a.operands, b.operands))
    if not same_operands:
        details.append("operands " + (", ".join(f"%{v.name}" for v in a.operands) or "none")
                       + " → " + (", ".join(f"%{v.name}" for v in b.operands) or "none"))
    keys = [k for k in dict.fromkeys(list(a.attrs) + list(b.attrs))]
    dropped, added = [], []
    for k in keys:
        in_a, in_b = _declares(a, k), _declares(b, k)
        x, y = _attr_value(a, k), _attr_value(b, k)
        if in_a and not in_b:
            if not is_default_attr(a, k, x):
                dropped.append(f"{k} = {short_attr(x)}")
        elif in_b and not in_a:
            if not is_default_attr(b, k, y):
                added.append(f"{k} = {short_attr(y)}")
        elif not values_equal(x, y):
            details.append(_attr_change(k, x, y))
    if dropped:
        details.append(f"attributes of {a.name} gone: " + ", ".join(dropped))
    if added:
        details.append(f"attributes of {b.name}: " + ", ".join(added))
    if len(a.results) != len(b.results):
        details.append(f"{len(a.results)} results → {len(b.results)}")
    multi = len(b.results) > 1
    for ra, rb in zip(a.results, b.results):
        details.extend(type_changes(ra.type, rb.type, f"%{rb.name}" if multi else ""))
    if a.loc != b.loc:
        details.append(f"loc {format_loc(a.loc) or 'unknown'} → {format_loc(b.loc) or 'unknown'}")
    return details


def diff_functions(fa: Function, fb: Function) -> FunctionDiff:
    m = _Matcher(fa, fb)
    m.run()
    out = FunctionDiff(fa.name)
    for x, y in zip(fa.args, fb.args):
        if m.vmap.get(id(x)) is y:
            out.signature.extend(type_changes(x.type, y.type, f"argument %{y.name}"))
    if len(fa.args) != len(fb.args):
        out.signature.append(f"{len(fa.args)} arguments → {len(fb.args)}")
    if len(fa.outputs) != len(fb.outputs):
        out.signature.append(f"{len(fa.outputs)} results → {len(fb.outputs)}")
    for i, (x, y) in enumerate(zip(fa.outputs, fb.outputs)):
        if m.vmap.get(id(x)) is not y:
            out.signature.append(f"result #{i}: returns %{x.name} → %{y.name}")
        else:
            out.signature.extend(type_changes(x.type, y.type, f"result #{i}"))
    # order: B's ops, with each removed op after the match of the A op before it
    removed_after: dict[int, list[Op]] = {}
    anchor = -1
    index_b = {id(op): i for i, op in enumerate(fb.ops)}
    for op in fa.ops:
        match = m.pairs.get(id(op))
        if match is None:
            removed_after.setdefault(anchor, []).append(op)
        else:
            anchor = index_b[id(match)]
    reverse = {id(b): a for a in fa.ops if (b := m.pairs.get(id(a))) is not None}
    out.entries.extend(OpDiff("removed", op, None) for op in removed_after.get(-1, []))
    for i, op in enumerate(fb.ops):
        a = reverse.get(id(op))
        if a is None:
            out.entries.append(OpDiff("added", None, op))
        else:
            details = _compare(a, op, m.vmap)
            if details:
                out.entries.append(OpDiff("changed", a, op, details))
            out.renamed += sum(1 for x, y in zip(a.results, op.results) if x.name != y.name)
        out.entries.extend(OpDiff("removed", r, None) for r in removed_after.get(i, []))
    return out


def diff_modules(a: Module, b: Module, a_name: str = "a", b_name: str = "b") -> ModuleDiff:
    """The structural difference from module `a` to module `b`."""
    out = ModuleDiff(a_name, b_name)
    out.removed_functions = [n for n in a.functions if n not in b.functions]
    out.added_functions = [n for n in b.functions if n not in a.functions]
    for name, fa in a.functions.items():
        if name in b.functions:
            out.functions.append(diff_functions(fa, b.functions[name]))
    return out


# ---- printing ------------------------------------------------------------------------------

_COLORS = {"-": "31", "+": "32", "~": "33", "@": "36", "h": "1"}


def format_op_short(op: Op) -> str:
    """`%r = qir.op %a, %b {k = v} : 1x8 i8 s=0.02 zp=-3` (long lists cut, short types)."""
    lhs = ", ".join(f"%{r.name}" for r in op.results)
    text = (f"{lhs} = " if lhs else "") + op.name
    if op.operands:
        text += " " + ", ".join(f"%{v.name}" for v in op.operands)
    attrs = {k: v for k, v in op.attrs.items() if not is_default_attr(op, k, v)}
    if attrs:
        text += " {" + ", ".join(f"{k} = {short_attr(v)}" for k, v in attrs.items()) + "}"
    if op.results:
        text += " : " + ", ".join(type_short(r.type) for r in op.results)
    return text


def _declares(op: Op, key: str) -> bool:
    """Whether op's declaration has attribute `key` (unknown ops: when it is set)."""
    try:
        return key in op.opdef.attrs
    except Exception:  # noqa: BLE001  (an op unknown to the registry)
        return key in op.attrs


def _group(op: Op) -> str:
    return format_loc(op.loc) or "unknown location"


def format_diff(d: ModuleDiff, color: bool = False) -> str:
    """Unified-diff-like text: `-` removed, `+` added, `~` changed, grouped by location."""
    def paint(kind: str, text: str) -> str:
        return f"\x1b[{_COLORS[kind]}m{text}\x1b[0m" if color else text

    if d.empty:
        return ""
    lines = [paint("h", f"--- {d.a_name}"), paint("h", f"+++ {d.b_name}")]
    for name in d.removed_functions:
        lines.append(paint("-", f"- func @{name}"))
    for name in d.added_functions:
        lines.append(paint("+", f"+ func @{name}"))
    for f in d.functions:
        if f.signature:
            lines.append(paint("@", f"@@ @{f.name} signature @@"))
            lines.extend(paint("~", f"~ {s}") for s in f.signature)
        group = None
        for e in f.entries:
            g = _group(e.op)
            if g != group:
                lines.append(paint("@", f"@@ @{f.name} {g} @@"))
                group = g
            if e.kind == "added":
                lines.append(paint("+", f"+ {format_op_short(e.b)}"))
            elif e.kind == "removed":
                lines.append(paint("-", f"- {format_op_short(e.a)}"))
            else:
                names = ", ".join(f"%{r.name}" for r in e.b.results)
                was = ", ".join(f"%{r.name}" for r in e.a.results)
                head = f"~ {names} = {e.b.name}" if names else f"~ {e.b.name}"
                if was != names:
                    head += f"  (was {was})"
                lines.append(paint("~", head))
                lines.extend(paint("~", f"~     {x}") for x in e.details)
    return "\n".join(lines) + "\n"


def format_stat(d: ModuleDiff) -> str:
    """`--stat`: per op kind added / removed / changed, then the totals."""
    counts = d.counts()
    lines = []
    if counts:
        width = max(len(k) for k in counts)
        lines.append(f"{'op':<{width}}  {'added':>5}  {'removed':>7}  {'changed':>7}")
        for k, c in counts.items():
            lines.append(f"{k:<{width}}  {c['added']:>5}  {c['removed']:>7}  "
                         f"{c['changed']:>7}")
    tot = {k: sum(c[k] for c in counts.values()) for k in ("added", "removed", "changed")}
    sig = sum(len(f.signature) for f in d.functions)
    summary = f"{tot['added']} added, {tot['removed']} removed, {tot['changed']} changed"
    if sig:
        summary += f", {sig} signature change{'s' if sig != 1 else ''}"
    if d.added_functions or d.removed_functions:
        summary += (f", {len(d.added_functions)} function(s) added, "
                    f"{len(d.removed_functions)} removed")
    lines.append(summary)
    return "\n".join(lines) + "\n"
