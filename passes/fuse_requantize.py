"""fuse-requantize: clean up the integer graph.

- `quantize_B(dequantize_A(x))` → `requantize_{A→B}(x)` (or `x` when A == B);
- `requantize(requantize(x))` → one requantize with the product multiplier, when the
  inner one has no other use and does not clamp (saturation at the storage range only);
  this removes a rounding step, so results may differ from the unfused graph by one step;
- relu / relu6 / clamp on the integer output of a requantize, qadd or qmul folds into its
  clamp;
- an identity requantize (multiplier 1, same zero points and types, no clamp) is removed;
- `quantize(f(dequantize(x)))` with x 8-bit (i8/u8, per tensor) and f any elementwise
  float computation of x alone (gelu, silu, sigmoid, tanh, hardswish, exp, ..., and
  arithmetic with scalar constants, x used more than once included) → `lut(x, table)`,
  the table holding the 256 results, computed by the numpy interpreter running f's own
  ops on every stored value of x: the same integers as the float island, by
  construction, with one gather per element instead of the float math
  (`lookup-tables=false` keeps the islands).
"""

from __future__ import annotations

import numpy as np

from typing import Annotated

from qir.builder import make_op
from qir.ir import Function, Module, Op
from qir.ops.core import constant_array
from qir.types import QuantType, TensorType

from passes.quant_math import multiplier_value, shift_multiplier
from passes.registry import register_pass
from passes.rewrite import Rewriter, apply_patterns, pattern
from passes.utils import eliminate_dead_code, make_constant, single_user

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
    m, e = shift_multiplier(a.scale / b.scale, a.pow2 and b.pow2)
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
    # two rounding shifts make one when both are (power-of-two scales)
    pure = op.attr("multiplier")[0] == 1 and set(inner.attr("multiplier")) == {1}
    mults, shifts = [], []
    for M, e in zip(inner.attr("multiplier"), inner.attr("shift")):
        m, s = shift_multiplier(multiplier_value(M, e) * m2, pure, op.attr("rounding"))
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


# Elementwise float ops a lookup table may replace: each operand a value of the island
# (of the same shape) or a scalar constant (every element sees the same value, so
# evaluating on the 256 stored values is evaluating each element).
LUT_UNARY = frozenset(f"qir.{n}" for n in (
    "relu clamp leaky_relu gelu silu sigmoid tanh hardswish hardsigmoid elu exp log sqrt "
    "rsqrt erf reciprocal sin cos floor ceil trunc round sign tan asin acos atan sinh cosh "
    "asinh acosh atanh expm1 log1p log2 log10 neg abs").split())
LUT_BINARY = frozenset(f"qir.{n}" for n in "add sub mul div pow maximum minimum".split())


def _scalar_constant(value) -> bool:
    array = constant_array(value)
    return array is not None and array.size == 1


def _lut_region(q: Op) -> tuple[Op, list[Op]] | None:
    """(the dequantize, the elementwise ops between it and `q` in program order) when
    `q` computes quantize(f(dequantize(x))) of one 8-bit x and nothing else reads f's
    intermediate values; else None."""
    shape = q.result.type.shape
    source, region, seen = None, [], set()
    stack = [q.operands[0]]
    while stack:
        op = stack.pop().owner
        if op is None:  # a function argument: not a function of the one dequantize
            return None
        if id(op) in seen:
            continue
        seen.add(id(op))
        if op.name == "qir.dequantize":
            if source is not None:
                return None
            source = op
            continue
        if op.name in LUT_BINARY:
            stack.extend(v for v in op.operands if not _scalar_constant(v))
        elif op.name in LUT_UNARY:
            stack.append(op.operands[0])
        else:
            return None
        if op.result.type.shape != shape or not op.result.type.is_float:
            return None
        region.append(op)
    if source is None or not region:
        return None
    x = source.operands[0].type
    if (not x.is_quantized or x.quant.is_fp8 or x.quant.storage not in ("i8", "u8")
            or x.quant.axis is not None or x.shape != shape):
        return None
    inside = {id(op) for op in region} | {id(q)}
    outputs = {id(v) for v in q.function.outputs}
    if any(id(u) not in inside for op in region for u in op.result.users) or any(
            id(op.result) in outputs for op in region):
        return None
    position = {id(op): i for i, op in enumerate(q.function.ops)}
    return source, sorted(region, key=lambda op: position[id(op)])


def lookup_table(source: Op, region: list[Op], q: Op) -> np.ndarray:
    """The stored results of quantize(f(dequantize(x))) for the 256 stored values of x,
    by the numpy interpreter running a copy of the ops on them."""
    from backends.numpy import run

    x_type = source.operands[0].type
    fn = Function("lut", [("x", TensorType((256,), x_type.elem))])
    module = Module()
    module.add_function(fn)
    mapped = {}

    def emit(op: Op, operands, result_type=None) -> None:
        new = make_op(op.name, operands, dict(op.attrs),
                      None if result_type is None else [result_type])
        fn.append(new)
        mapped[id(op.result)] = new.result

    def operand(v):
        if id(v) in mapped:
            return mapped[id(v)]
        const = make_op("qir.constant", [], {"value": constant_array(v)},
                        [v.type])  # a scalar constant of f
        fn.append(const)
        return const.result

    emit(source, fn.args)
    for op in region:
        emit(op, [operand(v) for v in op.operands])
    emit(q, [mapped[id(q.operands[0])]], TensorType((256,), q.result.type.elem))
    fn.set_outputs([mapped[id(q.result)]])
    lo = np.iinfo(x_type.dtype).min
    stored = np.arange(lo, lo + 256).astype(x_type.dtype)
    return next(iter(run(module, [stored]).values()))


def _to_lookup_table(q: Op, rw: Rewriter) -> bool:
    out = q.result.type
    if not out.is_quantized or out.quant.is_fp8 or out.quant.axis is not None:
        return False
    found = _lut_region(q)
    if found is None:
        return False
    source, region = found
    table = lookup_table(source, region, q)
    names = ", ".join(op.name.removeprefix("qir.") for op in region)
    prov = (f"a 256-entry table: quantize(f(dequantize(x))), f: {names}"
            + (f"; the result's scale: {q.attr('prov')}" if q.attr("prov") else ""))
    entries = make_constant(rw.fn, q, table, f"{q.result.name or 'lut'}.table",
                            elem=out.elem, loc=q.loc)
    rw.set_attr(entries.owner, "prov", prov)
    lut = rw.create_before(q, "qir.lut", [source.operands[0], entries], {"prov": prov},
                           result_types=[out])
    rw.replace_op(q, [lut.result], keep_names=True)
    return True


@register_pass("fuse-requantize")
def fuse_requantize(module: Module, *,
                    lookup_tables: Annotated[bool, "replace quantize(f(dequantize(x))) of "
                                             "8-bit x by a 256-entry table"] = True) -> bool:
    """Fold dequantize→quantize, requantize chains, integer activations and identities;
    elementwise float islands on 8-bit inputs become lookup tables."""
    patterns = [
        pattern("qir.quantize")(_dq_to_q),
        pattern("qir.requantize")(_rq_of_rq),
        pattern("qir.requantize")(_identity_rq),
        pattern("qir.relu")(_act_into_clamp),
        pattern("qir.clamp")(_act_into_clamp),
    ]
    if lookup_tables:
        patterns.append(pattern("qir.quantize")(_to_lookup_table))
    changed = apply_patterns(module, patterns)
    for fn in module.functions.values():
        changed |= eliminate_dead_code(fn)
    return changed
