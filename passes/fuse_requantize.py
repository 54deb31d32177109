"""fuse-requantize: clean up the integer graph.

- `quantize_B(dequantize_A(x))` → `requantize_{A→B}(x)` (or `x` when A == B);
- `requantize(requantize(x))` → one requantize with the product multiplier, when the
  inner one has no other use and does not clamp (saturation at the storage range only);
  this removes a rounding step, so results may differ from the unfused graph by one step;
- relu / relu6 / clamp on the integer output of a requantize, qadd or qmul folds into its
  clamp;
- an identity requantize (multiplier 1, same zero points and types, no clamp) is removed.
"""

from __future__ import annotations

import numpy as np

from qir.ir import Module, Op
from qir.types import QuantType

from passes.quant_math import multiplier_value, quantize_multiplier
from passes.registry import register_pass
from passes.rewrite import Rewriter, apply_patterns, pattern
from passes.utils import eliminate_dead_code, single_user

CLAMPING = ("qir.requantize", "qir.qadd", "qir.qmul")


def _dq_to_q(op: Op, rw: Rewriter) -> bool:
    src = op.operands[0].owner
    if src is None or src.name != "qir.dequantize":
        return False
    x = src.operands[0]
    a, b = x.type.elem, op.result.type.elem
    if not isinstance(a, QuantType) or not isinstance(b, QuantType):
        return False
    if a == b:
        rw.replace_op(op, [x])
        return True
    if a.axis is not None or b.axis is not None or a.is_fp8 or b.is_fp8:
        return False
    m, e = quantize_multiplier(a.scale / b.scale)
    rq = rw.create_before(op, "qir.requantize", [x], {
        "multiplier": [m], "shift": [e], "input_zp": a.zero_point, "output_zp": b.zero_point,
        "clamp_min": b.storage_min, "clamp_max": b.storage_max, "prov": op.attr("prov")},
        [op.result.type], loc=op.loc)
    rw.replace_op(op, rq.results, keep_names=True)
    return True


def _no_clamp(op: Op) -> bool:
    q = op.result.type.quant
    return (op.attr("clamp_min"), op.attr("clamp_max")) == (q.storage_min, q.storage_max)


def _rq_of_rq(op: Op, rw: Rewriter) -> bool:
    inner = op.operands[0].owner
    if inner is None or inner.name != "qir.requantize" or single_user(inner.result) is not op:
        return False
    if not _no_clamp(inner) or op.attr("axis") is not None:
        return False
    if inner.attr("rounding") != op.attr("rounding"):
        return False
    m2 = multiplier_value(op.attr("multiplier")[0], op.attr("shift")[0])
    mults, shifts = [], []
    for M, e in zip(inner.attr("multiplier"), inner.attr("shift")):
        m, s = quantize_multiplier(multiplier_value(M, e) * m2)
        mults.append(m)
        shifts.append(s)
    # the inner output zero point cancels against the outer input zero point
    attrs = dict(op.attrs)
    attrs.update(multiplier=mults, shift=shifts, axis=inner.attr("axis"),
                 input_zp=inner.attr("input_zp"))
    if inner.attr("prov"):
        outer = op.attr("prov")
        attrs["prov"] = (f"{outer}; " if outer else "") + \
            f"fused with the requantize before it ({inner.attr('prov')})"
    new = rw.create_before(op, "qir.requantize", list(inner.operands), attrs,
                           [op.result.type], loc=op.loc)
    rw.replace_op(op, new.results, keep_names=True)
    rw.erase_op(inner)
    return True


def _act_into_clamp(op: Op, rw: Rewriter) -> bool:
    src = op.operands[0].owner
    if src is None or src.name not in CLAMPING or single_user(src.result) is not op:
        return False
    q = src.result.type.quant
    if op.result.type != src.result.type:
        return False
    lo, hi = src.attr("clamp_min"), src.attr("clamp_max")
    if op.name == "qir.relu":
        lo = max(lo, q.zero_point)
    else:
        f32 = np.float32
        if op.attr("min") is not None:
            lo = max(lo, q.zero_point + int(np.rint(f32(op.attr("min")) / f32(q.scale))))
        if op.attr("max") is not None:
            hi = min(hi, q.zero_point + int(np.rint(f32(op.attr("max")) / f32(q.scale))))
    lo, hi = min(max(lo, q.storage_min), q.storage_max), max(min(hi, q.storage_max),
                                                              q.storage_min)
    if lo > hi:
        return False
    rw.set_attr(src, "clamp_min", lo)
    rw.set_attr(src, "clamp_max", hi)
    rw.replace_op(op, [src.result])
    return True


def _identity_rq(op: Op, rw: Rewriter) -> bool:
    x = op.operands[0]
    if x.type != op.result.type or op.attr("axis") is not None:
        return False
    if op.attr("multiplier") != [1 << 30] or op.attr("shift") != [1]:
        return False
    if op.attr("input_zp") != op.attr("output_zp") or not _no_clamp(op):
        return False
    rw.replace_op(op, [x])
    return True


@register_pass("fuse-requantize")
def fuse_requantize(module: Module) -> bool:
    """Fold dequantize→quantize, requantize chains, integer activations and identities."""
    changed = apply_patterns(module, [
        pattern("qir.quantize")(_dq_to_q),
        pattern("qir.requantize")(_rq_of_rq),
        pattern("qir.requantize")(_identity_rq),
        pattern("qir.relu")(_act_into_clamp),
        pattern("qir.clamp")(_act_into_clamp),
    ])
    for fn in module.functions.values():
        changed |= eliminate_dead_code(fn)
    return changed
