"""propagate-scales: data-movement ops work on the quantized integers and share one
scale instead of requantizing.

- `D(dequantize(q))` → `dequantize(D(q))` for ops that only move or select values
  (reshape, permute, max_pool2d, pad, slice, split, gather, broadcast_to, relu, clamp):
  the op runs on integers, keeping q's quantization.
- `quantize_B(dequantize_A(x))` → `x` when A and B are both per-tensor with the same
  storage type: the tensor keeps A rather than being rounded twice.
- `quantize_C(concat(dequantize_A(a), dequantize_B(b), ...))` → `concat(requantize_C(a),
  requantize_C(b), ...)`: concat inputs are aligned to the output's quantization (an
  input already in C is used as it is).
Add and mul are not scale-preserving: lower-to-integer rescales their inputs explicitly.
"""

from __future__ import annotations

import re

from qir.builder import make_op
from qir.diagnostics import QirError
from qir.ir import Module, Op
from qir.types import QuantType

from passes.quant_math import shift_multiplier
from passes.registry import register_pass
from passes.rewrite import Rewriter, apply_patterns, pattern
from passes.utils import eliminate_dead_code

SINKABLE = ("qir.reshape", "qir.permute", "qir.max_pool2d", "qir.pad", "qir.slice",
            "qir.split", "qir.gather", "qir.broadcast_to", "qir.relu", "qir.clamp")


def _dq_source(op: Op | None):
    if op is None or op.name != "qir.dequantize":
        return None
    return op.operands[0]


def _sink_dequantize(op: Op, rw: Rewriter) -> bool:
    q = _dq_source(op.operands[0].owner)
    if q is None or not q.type.is_quantized:
        return False
    qt: QuantType = q.type.quant
    if qt.is_fp8 or qt.is_per_group:
        return False
    if qt.axis is not None and op.name not in ("qir.reshape", "qir.permute"):
        return False
    # Build the integer op detached first: if its types do not work out, nothing changed.
    try:
        new = make_op(op.name, [q] + list(op.operands[1:]), dict(op.attrs), loc=op.loc)
    except QirError:
        return False
    dqs = []
    for r, nr in zip(op.results, new.results):
        d = make_op("qir.dequantize", [nr], loc=op.loc)
        if d.result.type != r.type:
            for x in dqs + [d, new]:
                x.drop_operands()
            return False
        dqs.append(d)
    fn = op.function
    fn.insert_before(op, new)
    for d in dqs:
        fn.insert_before(op, d)
    rw.touched.extend([new] + dqs)
    rw.changed = True
    for r, nr in zip(op.results, new.results):
        fn.rename(nr, f"{r.name}_q")
    rw.replace_op(op, [d.result for d in dqs], keep_names=True)
    return True


def _share_scale(op: Op, rw: Rewriter) -> bool:
    x = _dq_source(op.operands[0].owner)
    if x is None or not x.type.is_quantized:
        return False
    a, b = x.type.quant, op.result.type.quant
    if a.axis is not None or b.axis is not None or a.storage != b.storage or a.is_fp8:
        return False
    if (a.storage_min, a.storage_max) != (b.storage_min, b.storage_max):
        return False
    origin = scale_origin(x)
    if origin is not None:
        m = re.match(r"observer '([^']*)'", op.attr("prov"))
        who = f"observer '{m.group(1)}'" if m else f"%{op.result.name}"
        note = f"also serves {who}" + (" (whose own scale differed)" if a != b else "")
        prov = origin.attr("prov")
        rw.set_attr(origin, "prov", f"{prov}; {note}" if prov else note)
    rw.replace_op(op, [x])
    return True


def scale_origin(v) -> Op | None:
    """The op that decided `v`'s quantization: walk back through ops that keep their
    input's quant type (data movement) to one that carries a `prov` attribute."""
    seen = 0
    while v.owner is not None and seen < 10_000:
        op = v.owner
        if "prov" in op.opdef.attrs:
            return op
        if not op.operands or op.operands[0].type.elem != v.type.elem:
            return None
        v, seen = op.operands[0], seen + 1
    return None


def _align_concat(op: Op, rw: Rewriter) -> bool:
    cat = op.operands[0].owner
    if cat is None or cat.name != "qir.concat" or len(cat.result.uses) != 1:
        return False
    sources = [_dq_source(v.owner) for v in cat.operands]
    if any(s is None or not s.type.is_quantized or s.type.quant.axis is not None
           for s in sources):
        return False
    out_q: QuantType = op.result.type.quant
    if out_q.axis is not None or out_q.is_fp8:
        return False
    why = op.attr("prov")
    prov = f"aligned to the concat %{op.result.name}'s scale" + (f" ({why})" if why else "")
    aligned = []
    for s in sources:
        sq: QuantType = s.type.quant
        if sq == out_q:
            aligned.append(s)
            continue
        m, e = shift_multiplier(sq.scale / out_q.scale, sq.pow2 and out_q.pow2)
        rq = rw.create_before(cat, "qir.requantize", [s], {
            "multiplier": [m], "shift": [e], "input_zp": sq.zero_point,
            "output_zp": out_q.zero_point, "clamp_min": out_q.storage_min,
            "clamp_max": out_q.storage_max, "prov": prov}, [s.type.with_elem(out_q)],
            loc=cat.loc)
        aligned.append(rq.result)
    new = rw.create_before(cat, "qir.concat", aligned, dict(cat.attrs), loc=cat.loc)
    rw.replace_op(op, new.results, keep_names=True)
    rw.erase_op(cat)
    return True


@register_pass("propagate-scales")
def propagate_scales(module: Module) -> bool:
    """Run data movement on integers sharing one scale; align concat inputs."""
    patterns = [pattern(n)(_sink_dequantize) for n in SINKABLE]
    patterns += [pattern("qir.quantize")(_align_concat), pattern("qir.quantize")(_share_scale)]
    changed = apply_patterns(module, patterns)
    for fn in module.functions.values():
        changed |= eliminate_dead_code(fn)
    return changed
