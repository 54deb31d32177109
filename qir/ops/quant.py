"""Quantization ops: the QDQ boundary (quantize / dequantize), requantize with its
integer multiplier and shift, and integer compute ops with int32 accumulation.

Exact semantics, shared by every backend, are in docs/semantics.md. Backends never
recompute scales from floats: every integer op carries the integers it needs.
"""

from __future__ import annotations

from qir.diagnostics import QirError
from qir.ops.common import broadcast_shapes, require_float, t
from qir.ops.nn import conv_attrs, conv_output_shape, linear_output_shape, matmul_output_shape
from qir.registry import Attr, define_op
from qir.types import TensorType

ROUNDING_MODES = ("single", "gemmlowp")

# Scale provenance: where the quantization of the result came from (observer, method and
# range; weight/bias rules; propagation). Set by the passes, printed by `qir explain`.
PROV = Attr("str", "", doc="where the result's scale came from (set by the passes; "
            "`qir explain` prints it)")


def _verify_quantize(op) -> None:
    require_float(op)
    r = op.result.type
    if not r.is_quantized:
        raise QirError(f"quantize must produce a quantized type, got {r}")
    if r.quant.expressed != t(op).elem and not (t(op).elem == "f32"):
        raise QirError(f"quantize input {t(op)} does not match expressed type "
                       f"{r.quant.expressed}")


define_op("qir.quantize", ["input"], {"prov": PROV},
          infer=lambda op: [TensorType(t(op).shape, None)], verify=_verify_quantize,
          category="quant",
          doc="q = clamp(round_half_even(x / scale) + zero_point, qmin, qmax); params from "
              "the result type.")


def _infer_dequantize(op):
    x = t(op)
    if not x.is_quantized:
        raise QirError(f"dequantize takes a quantized tensor, got {x}")
    return [TensorType(x.shape, x.quant.expressed)]


define_op("qir.dequantize", ["input"], infer=_infer_dequantize, category="quant",
          doc="x = scale * (q - zero_point), in the expressed float type.")


def _verify_requantize(op) -> None:
    x, r = t(op), op.result.type
    if not r.is_quantized or r.quant.is_fp8:
        raise QirError(f"requantize must produce an integer quantized type, got {r}")
    if x.is_quantized:
        if x.quant.axis is not None:
            raise QirError("requantize input must be per-tensor quantized or i32")
        if op.attr("input_zp") != x.quant.zero_point:
            raise QirError(f"input_zp={op.attr('input_zp')} but the input type has zero "
                           f"point {x.quant.zero_point}")
    elif x.elem != "i32":
        raise QirError(f"requantize takes i32 or an integer quantized tensor, got {x}")
    mult, shift = op.attr("multiplier"), op.attr("shift")
    axis = op.attr("axis")
    n = 1 if axis is None else x.shape[axis] if 0 <= axis < x.rank else -1
    if n < 0:
        raise QirError(f"axis {axis} out of range for {x}")
    if len(mult) != n or len(shift) != n:
        raise QirError(f"requantize needs {n} multiplier(s) and shift(s), got {len(mult)} and "
                       f"{len(shift)}")
    for m in mult:
        if not 0 <= m < 2**31:
            raise QirError(f"multiplier {m} is outside [0, 2^31)")
    for s in shift:
        if not -31 <= s <= 30:
            raise QirError(f"shift {s} is outside [-31, 30]")
    q = r.quant
    if q.axis is not None:
        raise QirError("requantize output must be per-tensor quantized")
    if op.attr("output_zp") != q.zero_point:
        raise QirError(f"output_zp={op.attr('output_zp')} but the result type has zero point "
                       f"{q.zero_point}")
    lo, hi = op.attr("clamp_min"), op.attr("clamp_max")
    if lo is None or hi is None or not (q.storage_min <= lo <= hi <= q.storage_max):
        raise QirError(f"clamp [{lo}, {hi}] must lie inside the storage range "
                       f"[{q.storage_min}, {q.storage_max}]")


_rq_attrs = {
    "multiplier": Attr("ints", doc="Q31 fixed-point multipliers M (one, or one per channel)"),
    "shift": Attr("ints", doc="exponents e: real multiplier = M * 2^(e - 31)"),
    "axis": Attr("int?", None, doc="channel axis of per-channel multipliers"),
    "input_zp": Attr("int", 0),
    "output_zp": Attr("int", 0),
    "clamp_min": Attr("int?", None, doc="saturation bounds (a fused relu tightens them)"),
    "clamp_max": Attr("int?", None),
    "rounding": Attr("str", "single", choices=ROUNDING_MODES),
    "prov": PROV,
}

define_op("qir.requantize", ["input"], _rq_attrs,
          infer=lambda op: [TensorType(t(op).shape, None)], verify=_verify_requantize,
          category="quant",
          doc="y = clamp(output_zp + rescale(x - input_zp, M, e), clamp_min, clamp_max).")


def _verify_lut(op) -> None:
    x, table = t(op, 0), t(op, 1)
    if not x.is_quantized or x.quant.is_fp8 or x.quant.storage not in ("i8", "u8"):
        raise QirError(f"lut takes an 8-bit integer quantized input (i8 or u8), got {x}")
    if table.shape != (256,):
        raise QirError(f"the table must have 256 entries, one per stored value of the input, "
                       f"got {table}")
    if not table.is_quantized or table.quant.is_fp8 or table.quant.axis is not None:
        raise QirError(f"the table must hold per-tensor integer quantized values (the "
                       f"result's), got {table}")


define_op("qir.lut", ["input", "table"], {"prov": PROV},
          infer=lambda op: [TensorType(t(op).shape, t(op, 1).elem)], verify=_verify_lut,
          category="quant",
          doc="y = table[x - m], m = the storage type's minimum (-128 for i8, 0 for u8): "
              "a function of an 8-bit input given by its 256 results, e.g. "
              "quantize(gelu(dequantize(x))) (fuse-requantize builds them).")


def _verify_int_compute(op, weight_symmetric: bool = True) -> None:
    x, w = t(op, 0), t(op, 1)
    for i, ty in ((0, x), (1, w)):
        if not ty.is_quantized or ty.quant.is_fp8 or ty.quant.storage not in ("i8", "u8",
                                                                             "i16", "i4", "u4"):
            raise QirError(f"operand #{i} must be an integer quantized tensor (i4/u4/i8/u8/"
                           f"i16), got {ty}")
    if x.quant.axis is not None:
        raise QirError(f"operand #0 must be per-tensor quantized, got {x}")
    if weight_symmetric and any(z != 0 for z in w.quant.zero_points):
        raise QirError(f"weights must be symmetric (zero point 0), got {w}")
    if len(op.operands) > 2 and t(op, 2).elem != "i32":
        raise QirError(f"bias must be i32, got {t(op, 2)}")
    if op.result.type.elem != "i32":
        raise QirError(f"integer compute accumulates in i32, result is {op.result.type}")


def _int_conv(nd: int) -> None:
    define_op(f"qir.qconv{nd}d", ["input", "weight", "bias?"], conv_attrs(nd),
              infer=lambda op: [TensorType(conv_output_shape(op, nd), "i32")],
              verify=_verify_int_compute, category="quant",
              doc=f"Integer conv{nd}d: sum((x - zp_x) * w) + bias in i32; padding is zp_x.")


_int_conv(1)
_int_conv(2)

define_op("qir.qlinear", ["input", "weight", "bias?"],
          infer=lambda op: [TensorType(linear_output_shape(op), "i32")],
          verify=_verify_int_compute, category="quant",
          doc="Integer linear: sum_k (x - zp_x) * w[n, k] + bias[n] in i32.")


def _verify_qmatmul(op) -> None:
    _verify_int_compute(op, weight_symmetric=False)
    if t(op, 1).quant.axis is not None:
        raise QirError("qmatmul operands must be per-tensor quantized")


define_op("qir.qmatmul", ["lhs", "rhs"],
          infer=lambda op: [TensorType(matmul_output_shape(op), "i32")],
          verify=_verify_qmatmul, category="quant",
          doc="Integer matmul: (a - zp_a) @ (b - zp_b) in i32, batch broadcasting.")


def _verify_qbinary(op) -> None:
    for i in range(2):
        ty = t(op, i)
        if not ty.is_quantized or ty.quant.axis is not None or ty.quant.is_fp8:
            raise QirError(f"operand #{i} must be per-tensor integer quantized, got {ty}")
    r = op.result.type
    if not r.is_quantized or r.quant.axis is not None:
        raise QirError(f"result must be per-tensor quantized, got {r}")
    if op.attr("output_zp") != r.quant.zero_point:
        raise QirError(f"output_zp={op.attr('output_zp')} but the result type has zero point "
                       f"{r.quant.zero_point}")
    lo, hi = op.attr("clamp_min"), op.attr("clamp_max")
    if not (r.quant.storage_min <= lo <= hi <= r.quant.storage_max):
        raise QirError(f"clamp [{lo}, {hi}] must lie inside the storage range")


def _infer_qbinary(op):
    return [TensorType(broadcast_shapes(t(op, 0).shape, t(op, 1).shape), None)]


def _verify_qadd(op) -> None:
    _verify_qbinary(op)
    for side in ("lhs", "rhs"):
        m, e = op.attr(f"{side}_multiplier"), op.attr(f"{side}_shift")
        if not 0 <= m < 2**31 or not -31 <= e <= 30:
            raise QirError(f"{side} multiplier {m} / shift {e} out of range")
    if abs(op.attr("lhs_shift") - op.attr("rhs_shift")) > 15:
        raise QirError("lhs and rhs shifts differ by more than 15: the smaller term must be "
                       "folded into a lower multiplier (see docs/semantics.md)")


_qbin_common = {"output_zp": Attr("int", 0), "clamp_min": Attr("int"),
                "clamp_max": Attr("int")}
define_op("qir.qadd", ["lhs", "rhs"],
          {"lhs_multiplier": Attr("int"), "lhs_shift": Attr("int"),
           "rhs_multiplier": Attr("int"), "rhs_shift": Attr("int"), **_qbin_common,
           "prov": PROV},
          infer=_infer_qbinary, verify=_verify_qadd, category="quant",
          doc="Integer add: y = clamp(zp_y + round((a - zp_a) m_a + (b - zp_b) m_b)), one "
              "rounding, m = M 2^(e - 31).")
define_op("qir.qmul", ["lhs", "rhs"],
          {"multiplier": Attr("int"), "shift": Attr("int"), **_qbin_common,
           "rounding": Attr("str", "single", choices=ROUNDING_MODES), "prov": PROV},
          infer=_infer_qbinary, verify=_verify_qbinary, category="quant",
          doc="Integer mul: y = clamp(zp_y + rescale((a - zp_a)(b - zp_b), M, e)).")
