"""lower-to-integer: QDQ patterns become integer ops.

    quantize_Y(conv2d(dequantize(x), dequantize(w), dequantize(b)))
      → requantize(qconv2d(x, w, b_i32)) : Y

and likewise linear/matmul (int8 × int8 → int32, int32 bias), add → qadd, mul → qmul.
Every requantize carries its integer multipliers and shifts, computed here once in
double precision (m_c = s_x · s_w[c] / s_y); a fused activation clamp on the float op
becomes the requantize's integer clamp. Backends never see a float scale.

A bias quantized with an input scale that a later pass changed (propagate-scales, when a
calibration method clipped the producer's range differently) is re-scaled to s_x · s_w
(rounded to nearest even a second time; noted). Nothing stays float silently: a
conv/linear/matmul between quantized values that cannot become integer is named in a
note with the reason.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np

from qir.ir import Module, Op, Value
from qir.types import QuantType, TensorType

from passes.manager import PassContext
from passes.quant_math import (channel_bounds, quantize_bias, quantize_multiplier,
                               shift_multiplier)
from passes.registry import register_pass
from passes.rewrite import Rewriter, apply_patterns, pattern
from passes.utils import single_user

INT_COMPUTE = {"qir.conv1d": "qir.qconv1d", "qir.conv2d": "qir.qconv2d",
               "qir.linear": "qir.qlinear", "qir.matmul": "qir.qmatmul"}


def _dq_input(v: Value) -> Value | None:
    op = v.owner
    if op is None or op.name != "qir.dequantize":
        return None
    src = op.operands[0]
    q = src.type.elem
    if not isinstance(q, QuantType) or q.is_fp8 or q.is_per_group:
        return None
    return src


def _int_clamp(op: Op, out: QuantType) -> tuple[int, int]:
    """The fused float clamp of `op` expressed in the output's integers."""
    lo, hi = out.storage_min, out.storage_max
    cmin, cmax = op.attr("clamp_min"), op.attr("clamp_max")
    # quantize is monotonic, so quantize(clamp(y)) == clamp(quantize(y), quantize(bounds))
    if cmin is not None:
        lo = max(lo, min(hi, out.zero_point + int(np.rint(np.float32(cmin) /
                                                           np.float32(out.scale)))))
    if cmax is not None:
        hi = min(hi, max(lo, out.zero_point + int(np.rint(np.float32(cmax) /
                                                           np.float32(out.scale)))))
    return lo, hi


def _quantize_user(op: Op) -> Op | None:
    user = single_user(op.result)
    if user is None or user.name != "qir.quantize":
        return None
    q = user.result.type.elem
    if not isinstance(q, QuantType) or q.axis is not None or q.is_fp8:
        return None
    return user


INT32_MAX = 2**31 - 1


def _blocker(op: Op) -> str | None:
    """Why a compute op between QDQ pairs cannot become integer (None: it can)."""
    if _quantize_user(op) is None:
        return "its result is not quantized (read by a float op, or returned in float)"
    x, w = _dq_input(op.operands[0]), _dq_input(op.operands[1])
    if x is None or w is None:
        return "an operand is not quantized to integers"
    if x.type.quant.axis is not None:
        return "its input is quantized per channel"
    wq = w.type.quant
    if op.name != "qir.matmul" and any(z != 0 for z in wq.zero_points):
        return "its weights have non-zero zero points"
    if op.name == "qir.matmul" and wq.axis is not None:
        return "its right operand is quantized per channel"
    if len(op.operands) > 2:
        b = _dq_input(op.operands[2])
        if b is None or b.type.quant.storage != "i32":
            return "its bias is not an int32 quantized constant"
        if b.owner is None or b.owner.name != "qir.param":
            return "its bias is computed, not a constant"
    return None


def _bias_scales(xq: QuantType, wq: QuantType, n: int) -> list[float]:
    sw = wq.scales if len(wq.scales) == n else wq.scales * n
    return [xq.scale * s for s in sw]


def _lower_compute(op: Op, rw: Rewriter, rounding: str, notes: list[str]) -> bool:
    if _blocker(op) is not None:
        return False
    qout = _quantize_user(op)
    x, w = _dq_input(op.operands[0]), _dq_input(op.operands[1])
    xq, wq = x.type.quant, w.type.quant
    out_q: QuantType = qout.result.type.quant
    bias = None
    if len(op.operands) > 2:
        b = _dq_input(op.operands[2])
        want = _bias_scales(xq, wq, len(b.type.quant.scales))
        name, prov = b.owner.attr("name"), b.owner.attr("prov")
        if not np.allclose(b.type.quant.scales, want, rtol=1e-12, atol=0):
            name, prov = _rescale_bias(op, b, want, xq, w, notes)
            if name is None:
                return False
        braw = rw.create_before(op, "qir.param", [], {"name": name, "prov": prov},
                                [TensorType(b.type.shape, "i32")], loc=b.owner.loc,
                                names=[f"{b.name}_i32"])
        bias = braw.result
    attrs = {k: v for k, v in op.attrs.items() if k not in ("clamp_min", "clamp_max")}
    operands = [x, w] + ([bias] if bias is not None else [])
    acc = rw.create_before(op, INT_COMPUTE[op.name], operands, attrs, loc=op.loc,
                           names=[f"{op.result.name}_acc"])
    channels = acc.result.type.shape[1] if op.name.startswith("qir.conv") else \
        acc.result.type.shape[-1]
    sw = list(wq.scales) if wq.axis is not None else [wq.scales[0]]
    mults, shifts = [], []
    for s in sw:
        m, e = shift_multiplier(xq.scale * s / out_q.scale,
                                xq.pow2 and wq.pow2 and out_q.pow2, rounding)
        mults.append(m)
        shifts.append(e)
    axis = None
    if len(set(zip(mults, shifts))) > 1:
        axis = 1 if op.name.startswith("qir.conv") else acc.result.type.rank - 1
        assert len(mults) == channels
    else:
        mults, shifts = mults[:1], shifts[:1]
    lo, hi = _int_clamp(op, out_q)
    rq = rw.create_before(op, "qir.requantize", [acc.result], {
        "multiplier": mults, "shift": shifts, "axis": axis, "input_zp": 0,
        "output_zp": out_q.zero_point, "clamp_min": lo, "clamp_max": hi,
        "rounding": rounding, "prov": qout.attr("prov")}, [qout.result.type], loc=op.loc)
    rw.replace_op(qout, rq.results, keep_names=True)
    rw.erase_op(op)
    return True


def _rescale_bias(op: Op, b: Value, want: list[float], xq: QuantType, w: Value,
                  notes: list[str]) -> tuple[str | None, str]:
    """The bias re-quantized to scales `want` (s_x · s_w) from its stored integers, as a
    new parameter: (its name, its provenance), or (None, "") with a note when it leaves
    int32 with the accumulator."""
    fn = op.function
    data = fn.module.params[b.owner.attr("name")]
    real = data.astype(np.float64) * np.asarray(b.type.quant.scales, np.float64)
    new = quantize_bias(real, np.asarray(want, np.float64))
    wdata = fn.module.params.get(w.owner.attr("name")) if w.owner is not None else None
    if wdata is not None and op.name != "qir.matmul":
        if np.any(np.abs(new.astype(np.int64)) + channel_bounds(xq, wdata) > INT32_MAX):
            notes.append(f"kept {op.name} %{op.result.name} ({op.loc}) in float: its input "
                         "scale changed after its bias was quantized, and the re-scaled "
                         "bias leaves int32")
            return None, ""
    name = fn.module.add_param(f"{b.owner.attr('name')}.rescaled", new)
    notes.append(f"{op.name} %{op.result.name} ({op.loc}): re-scaled its int32 bias to the "
                 "input scale a later pass chose (rounded twice)")
    return name, (f"{b.owner.attr('prov') or 'bias'}; re-scaled to s_in·s_w after the "
                  "input scale changed (propagate-scales)")


def _lower_elementwise(op: Op, rw: Rewriter, rounding: str) -> bool:
    qout = _quantize_user(op)
    if qout is None:
        return False
    a, b = _dq_input(op.operands[0]), _dq_input(op.operands[1])
    if a is None or b is None or a.type.quant.axis is not None or b.type.quant.axis is not None:
        return False
    aq, bq, oq = a.type.quant, b.type.quant, qout.result.type.quant
    lo, hi = _int_clamp(op, oq) if op.name == "qir.add" else (oq.storage_min, oq.storage_max)
    common = {"output_zp": oq.zero_point, "clamp_min": lo, "clamp_max": hi,
              "prov": qout.attr("prov")}
    if op.name == "qir.add":
        ma, ea = quantize_multiplier(aq.scale / oq.scale)
        mb, eb = quantize_multiplier(bq.scale / oq.scale)
        # keep the two exponents within 15 of each other (docs/semantics.md): the much
        # smaller term loses low bits of its multiplier
        while ea - eb > 15:
            mb, eb = (mb + 1) >> 1, eb + 1
        while eb - ea > 15:
            ma, ea = (ma + 1) >> 1, ea + 1
        attrs = {"lhs_multiplier": ma, "lhs_shift": ea, "rhs_multiplier": mb,
                 "rhs_shift": eb, **common}
        name = "qir.qadd"
    else:
        m, e = shift_multiplier(aq.scale * bq.scale / oq.scale,
                                aq.pow2 and bq.pow2 and oq.pow2, rounding)
        attrs = {"multiplier": m, "shift": e, "rounding": rounding, **common}
        name = "qir.qmul"
    new = rw.create_before(op, name, [a, b], attrs, [qout.result.type], loc=op.loc)
    rw.replace_op(qout, new.results, keep_names=True)
    rw.erase_op(op)
    return True


@register_pass("lower-to-integer")
def lower_to_integer(
    module: Module, ctx: PassContext, *,
    rounding: Annotated[Literal["single", "gemmlowp"], "requantize rounding mode "
                        "(docs/semantics.md)"] = "single",
) -> bool:
    """Turn QDQ patterns around conv/linear/matmul/add/mul into integer ops with
    requantize; note every compute op between quantized values left in float."""
    patterns = [pattern(n)(lambda op, rw: _lower_compute(op, rw, rounding, ctx.notes))
                for n in INT_COMPUTE]
    patterns += [pattern(n)(lambda op, rw: _lower_elementwise(op, rw, rounding))
                 for n in ("qir.add", "qir.mul")]
    changed = apply_patterns(module, patterns)
    for fn in module.functions.values():
        for op in fn.ops:
            if op.name in INT_COMPUTE and _dq_input(op.operands[0]) is not None:
                why = _blocker(op) or "its bias could not be re-scaled"
                if not any(f"%{op.result.name} " in n for n in ctx.notes):
                    ctx.notes.append(f"kept {op.name} %{op.result.name} ({op.loc}) in float: "
                                     f"{why}")
    if changed:
        from passes.utils import eliminate_dead_code, prune_params

        for fn in module.functions.values():
            eliminate_dead_code(fn)
        prune_params(module)
    return changed
