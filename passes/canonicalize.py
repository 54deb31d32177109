"""canonicalize: constant folding, identity removal, dead-code and common-subexpression
elimination. Safe to run anywhere in a pipeline; it never changes what a module computes
(constant folding evaluates with the numpy interpreter's own implementations)."""

from __future__ import annotations

from typing import Annotated

import numpy as np

from qir.ir import Function, Module, Op

from passes.registry import register_pass
from passes.rewrite import Rewriter, apply_patterns, pattern
from passes.utils import constant_array, eliminate_dead_code, make_constant, prune_params

FOLD_LIMIT = 1 << 22  # elements: larger results stay computed at run time
# Never folded: sources, observers, and the QDQ boundary (dequantize(weight) must stay
# visible so lower-to-integer can match it).
NO_FOLD = ("qir.param", "qir.constant", "qir.observe", "qir.quantize", "qir.dequantize")


def _same_type(op: Op) -> bool:
    return op.result.type == op.operands[0].type


def _identity(op: Op) -> bool:
    """Ops that return their input unchanged."""
    n = op.name
    if n in ("qir.reshape", "qir.broadcast_to", "qir.cast"):
        return _same_type(op)
    if n == "qir.permute":
        return list(op.attr("perm")) == sorted(op.attr("perm")) and _same_type(op)
    if n == "qir.concat":
        return len(op.operands) == 1
    if n == "qir.slice":
        return _same_type(op) and op.attr("step") == 1
    if n == "qir.pad":
        return all(p == 0 for p in op.attr("pads"))
    if n == "qir.clamp":
        return op.attr("min") is None and op.attr("max") is None
    return False


IDENTITY_OPS = ("qir.reshape", "qir.broadcast_to", "qir.cast", "qir.permute", "qir.concat",
                "qir.slice", "qir.pad", "qir.clamp")


def _remove_identity(op: Op, rw: Rewriter) -> bool:
    if not _identity(op):
        return False
    rw.replace_op(op, [op.operands[0]])
    return True


def _reshape_of_reshape(op: Op, rw: Rewriter) -> bool:
    src = op.operands[0].owner
    if src is None or src.name != "qir.reshape":
        return False
    rw.set_operand(op, 0, src.operands[0])
    return True


def _fold(op: Op, rw: Rewriter) -> bool:
    """Evaluate an op whose operands are all constants or parameters."""
    if op.name in NO_FOLD or not op.operands:
        return False
    if any(r.type.numel > FOLD_LIMIT for r in op.results):
        return False
    arrays = [constant_array(v) for v in op.operands]
    if any(a is None for a in arrays):
        return False
    from backends.numpy.registry import get_impl

    impl = get_impl(op.name)
    if impl is None:
        return False
    out = impl(op, *arrays)
    outs = out if isinstance(out, (list, tuple)) else [out]
    fn = op.function
    new = []
    for r, arr in zip(op.results, outs):
        arr = np.asarray(arr, dtype=r.type.dtype)
        elem = r.type.elem if r.type.is_quantized else None
        v = make_constant(fn, op, arr, r.name, elem=elem)
        rw.touched.append(v.owner)
        new.append(v)
    old_names = [r.name for r in op.results]
    rw.replace_op(op, new)
    for v, name in zip(new, old_names):
        fn.rename(v, name)
    return True


def _cse_key(op: Op):
    def freeze(v):
        if isinstance(v, np.ndarray):
            return ("nd", v.dtype.str, v.shape, v.tobytes())
        if isinstance(v, (list, tuple)):
            return tuple(freeze(x) for x in v)
        return v

    return (op.name, tuple(id(v) for v in op.operands),
            tuple(sorted((k, freeze(v)) for k, v in op.attrs.items())),
            tuple(r.type for r in op.results))


def _cse(fn: Function) -> bool:
    seen: dict = {}
    changed = False
    for op in list(fn.ops):
        if op.name == "qir.observe":
            continue  # each observer records its own statistics
        key = _cse_key(op)
        prev = seen.get(key)
        if prev is None:
            seen[key] = op
            continue
        for old, new in zip(op.results, prev.results):
            fn.replace_all_uses(old, new)
        fn.erase(op)
        changed = True
    return changed


PATTERNS = ([pattern(n)(_remove_identity) for n in IDENTITY_OPS]
            + [pattern("qir.reshape")(_reshape_of_reshape)])


@register_pass("canonicalize")
def canonicalize(module: Module, *,
                 fold: Annotated[bool, "fold ops whose operands are all constant"] = True,
                 cse: Annotated[bool, "merge identical ops"] = True) -> bool:
    """Constant folding, identity removal, dead-code and common-subexpression elimination."""
    from qir.registry import all_ops

    patterns = list(PATTERNS)
    if fold:
        patterns += [pattern(name)(_fold) for name in all_ops()
                     if name not in NO_FOLD]
    changed = apply_patterns(module, patterns)
    for fn in module.functions.values():
        if cse:
            changed |= _cse(fn)
        changed |= eliminate_dead_code(fn)
    changed |= prune_params(module)
    return changed
