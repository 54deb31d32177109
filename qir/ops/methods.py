"""Ops introduced by the quantization methods beyond static int8 (docs/methods.md).

qir.dynamic_qlinear: a linear layer whose activations are quantized at run time, from
their own range (dynamic quantization), against int8 weights quantized ahead of time.
Exact semantics in docs/semantics.md ("Dynamic quantization").
"""

from __future__ import annotations

from qir.diagnostics import QirError
from qir.ops.common import t
from qir.ops.nn import linear_output_shape
from qir.registry import Attr, define_op
from qir.types import TensorType

DYNAMIC_GRANULARITY = ("per-tensor", "per-token")


def _verify_dynamic_qlinear(op) -> None:
    x, w = t(op, 0), t(op, 1)
    if x.elem != "f32":
        raise QirError(f"operand #0 must be f32, got {x}")
    if not w.is_quantized or w.quant.storage != "i8" or w.quant.is_per_group:
        raise QirError(f"operand #1 must be an i8 quantized weight (per tensor or per "
                       f"output channel), got {w}")
    if w.quant.axis not in (None, 0):
        raise QirError(f"weight scales must be per tensor or along axis 0, got {w}")
    if any(z != 0 for z in w.quant.zero_points):
        raise QirError(f"weights must be symmetric (zero point 0), got {w}")
    if len(op.operands) > 2 and t(op, 2).elem != "f32":
        raise QirError(f"bias must be f32, got {t(op, 2)}")


define_op("qir.dynamic_qlinear", ["input", "weight", "bias?"],
          {"granularity": Attr("str", "per-tensor", choices=DYNAMIC_GRANULARITY,
                               doc="one activation scale per tensor, or per token (row "
                                   "over the last axis)")},
          infer=lambda op: [TensorType(linear_output_shape(op), "f32")],
          verify=_verify_dynamic_qlinear, category="quant",
          doc="Dynamic int8 linear: s_x = max|x| / 127 at run time (per tensor or per "
              "token), q_x = round_half_even(x / s_x), i32 accumulate against i8 weights, "
              "y = acc * (s_x * s_w[n]) + bias in f32.")
