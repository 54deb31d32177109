"""Which qir ops each kernel of a compiled module computes.

`to_relax` lowers a function group by group (an op, or an epilogue-fusion chain of ops:
`lowering_groups`) and names every Relax binding a group emits after it:
`<result name>_<group index>_` (`binding_name`; the BlockBuilder appends digits to repeats).
TVM's FuseOps keeps those names inside the functions it fuses, except the name of each
fused function's output binding; `kernel_groups` reads the module just after FuseOps and
recovers that one (and the calls LegalizeOps left unnamed, made for nested calls) by
matching the call (callee and arguments) to the binding it came from before FuseOps. The result, kernel name -> group indices in call order, goes into the compiled
module's signature (`describe_kernels`), so `qir bench --profile` can say which IR op and
torch source line each kernel's time belongs to.
"""

from __future__ import annotations

import re

import tvm
from tvm import relax

from backends.tvm import epilogue_fusion
from backends.tvm.epilogue_fusion import Chain
from qir.ir import Function, Op

_INDEX = re.compile(r"_(\d+)_\d*$")
_CALL_TIR = tvm.ir.Op.get("relax.call_tir")


def lowering_groups(fn: Function) -> list[tuple[list[Op], Chain | None]]:
    """The ops of `fn` in the groups `to_relax` lowers together, in lowering order, each
    with its epilogue-fusion chain (backends/tvm/epilogue_fusion.py; lowered at its last
    op) or None for an op lowered alone."""
    chains = epilogue_fusion.plan(fn)
    deferred = {op for chain in chains.values() for op in chain.ops[:-1]}
    return [(list(chains[op].ops), chains[op]) if op in chains else ([op], None)
            for op in fn.ops if op not in deferred]


def binding_name(group: list[Op], index: int) -> str:
    """The name hint of every binding group `index` emits."""
    results = [v for op in group for v in op.results]
    stem = re.sub(r"\W", "_", results[-1].name)[:32] if results else "op"
    return f"{stem}_{index}_"


def group_of(name: str) -> int | None:
    """The group index a binding's name carries (None: a name `binding_name` did not
    make, such as a function parameter's or one FuseOps chose)."""
    m = _INDEX.search(name)
    return int(m.group(1)) if m else None


def kernel_groups(before: relax.Function, mod: tvm.IRModule, function: str = "main"
                  ) -> dict[str, list[int]]:
    """Each kernel `function` calls -> the groups it computes, in call order; `mod` is
    the module just after FuseOps (before FuseTIR, which keeps the fused functions'
    names for the kernels it makes), `before` the function just before it.

    Every call before FuseOps gets an id, (group, its place among the group's calls);
    a call after FuseOps is found by what it calls with what (the ids of its arguments),
    since FuseOps renames each fused function's output binding, LegalizeOps left nested
    calls unnamed, and one fused function serves every group that fused the same way
    (its names are the first group's); by its name when that fails."""
    made: dict[tuple, tuple] = {}  # (callee, argument keys) -> id
    by_name: dict[str, tuple] = {}  # variable name -> id
    keys: dict[relax.Var, tuple] = {}  # variable -> id (or what a tuple item is)
    counts: dict[int, int] = {}
    pending = []  # unnamed calls: LegalizeOps' bindings for a nested call, just before it
    for b in _bindings(before):
        if isinstance(b.value, relax.TupleGetItem):
            keys[b.var] = _item_key(b.value, keys)
        if not _is_call_tir(b.value):
            continue
        group = group_of(b.var.name)
        if group is None:
            pending.append(b)
            continue
        for call in [*pending, b]:
            ident = ("call", group, counts.setdefault(group, 0))
            counts[group] += 1
            made.setdefault(_call_key(call.value, keys), ident)
            keys[call.var] = by_name[call.var.name] = ident
        pending = []

    def ident_of(b, keys) -> tuple | None:
        found = made.get(_call_key(b.value, keys))
        return found if found is not None else by_name.get(b.var.name)

    kernels: dict[str, list[int]] = {}

    def record(kernel: str, idents: list[tuple]) -> None:
        into = kernels.setdefault(kernel, [])
        into.extend(g for g in dict.fromkeys(i[1] for i in idents) if g not in into)

    keys = {}  # now main's variables after FuseOps
    for b in _bindings(mod[function]):
        value = b.value
        if isinstance(value, relax.TupleGetItem):
            keys[b.var] = _item_key(value, keys)
        elif _is_call_tir(value):  # a kernel called directly
            ident = ident_of(b, keys)
            if ident is not None:
                keys[b.var] = ident
                record(value.args[0].name_hint, [ident])
        elif isinstance(value, relax.Call) and isinstance(value.op, relax.GlobalVar):
            fused = mod[value.op]
            if not isinstance(fused, relax.Function):
                continue
            inner = {p: _arg_key(a, keys) for p, a in zip(fused.params, value.args)}
            idents = []
            for ib in _bindings(fused):
                if isinstance(ib.value, relax.TupleGetItem):
                    inner[ib.var] = _item_key(ib.value, inner)
                ident = ident_of(ib, inner) if _is_call_tir(ib.value) else None
                if ident is not None:
                    inner[ib.var] = ident
                    idents.append(ident)
            output = fused.body.body
            if output in inner:
                keys[b.var] = inner[output]
            record(value.op.name_hint, idents)
    return kernels


def describe_kernels(kernels: dict[str, list[int]], fn: Function) -> dict[str, list[dict]]:
    """kernel -> the ops it computes, each as {"value", "op", "loc"} (loc: the torch
    module path and source line, "" when unknown), for the signature."""
    groups = [ops for ops, _ in lowering_groups(fn)]
    out = {}
    for kernel, indices in kernels.items():
        out[kernel] = [{"value": op.results[0].name if op.results else "", "op": op.name,
                        "loc": "" if op.loc.is_unknown() else str(op.loc)}
                       for i in indices if 0 <= i < len(groups) for op in groups[i]]
    return out


def _bindings(fn: relax.Function):
    for block in fn.body.blocks:
        yield from block.bindings


def _is_call_tir(value) -> bool:
    return isinstance(value, relax.Call) and value.op.same_as(_CALL_TIR)


def _arg_key(a, keys: dict) -> tuple:
    """What an argument is, the same before and after FuseOps: the id of the call that
    made it, an input's name, or a constant (the same object: FuseOps moves constants,
    it does not copy them; two calls of one kernel on one input differ by them)."""
    if isinstance(a, relax.Var):
        return keys.get(a, ("var", a.name))
    if isinstance(a, tvm.ir.expr.Constant):
        return ("Constant", hash(a))
    return (type(a).__name__,)  # another expression: its kind


def _item_key(item: relax.TupleGetItem, keys: dict) -> tuple:
    return ("item", _arg_key(item.tuple_value, keys), item.index)


def _call_key(call: relax.Call, keys: dict) -> tuple:
    """A call_tir as (callee, its arguments' keys); inside a fused function `keys` gives
    each parameter the key of what main passes it."""
    args = call.args[1]
    fields = args.fields if isinstance(args, relax.Tuple) else [args]
    return (call.args[0].name_hint, tuple(_arg_key(a, keys) for a in fields))
