"""quantize-bias: the float bias of a conv/linear whose input and weight are already
quantized (dequantize of integer types) becomes an int32 parameter with scale
s_x · s_w[c] and zero point 0 — what `quantize` does for biases, for modules that arrive
quantized: models quantized in PyTorch (QAT, PT2E) keep their biases in float, and
lower-to-integer needs them in int32. The rounding is half to even in double precision
(passes/quant_math.py `quantize_bias`), as `quantize` does it."""

from __future__ import annotations

import numpy as np

from qir.builder import Builder
from qir.ir import Module, Value
from qir.types import QuantType, TensorType

from passes.quant_math import quantize_bias as quantize_bias_array
from passes.registry import register_pass
from passes.utils import constant_array, eliminate_dead_code, param_name, prune_params

COMPUTE = ("qir.conv1d", "qir.conv2d", "qir.linear")


def _int_source(v: Value) -> QuantType | None:
    op = v.owner
    if op is None or op.name != "qir.dequantize":
        return None
    q = op.operands[0].type.elem
    if not isinstance(q, QuantType) or q.is_fp8 or q.is_per_group or q.storage == "i32":
        return None
    return q


@register_pass("quantize-bias")
def quantize_bias(module: Module) -> bool:
    """Quantize float conv/linear biases to int32 (scale s_x·s_w) where the input and the
    weight are already quantized."""
    changed = False
    for fn in module.functions.values():
        for op in fn.walk():
            if op.name not in COMPUTE or len(op.operands) < 3:
                continue
            xq, wq = _int_source(op.operands[0]), _int_source(op.operands[1])
            b = constant_array(op.operands[2])
            if xq is None or wq is None or xq.axis is not None or b is None \
                    or b.dtype.kind != "f" or any(z != 0 for z in wq.zero_points):
                continue
            if wq.axis not in (None, 0):
                continue
            s_w = np.asarray(wq.scales, np.float64)
            if s_w.size == 1:
                s_w = np.full(b.shape[0], s_w[0])
            scales = xq.scale * s_w
            data = quantize_bias_array(b, scales)
            btype = QuantType("i32", "f32", tuple(float(s) for s in scales),
                              (0,) * len(scales), axis=0)
            old = op.operands[2]
            name = f"{param_name(old) or old.name}.q"
            pname = module.add_param(name, data)
            bld = Builder(fn, before=op, loc=op.loc)
            pv = bld.value("qir.param", [], {"name": pname},
                           result_types=[TensorType(data.shape, btype)], names=[name])
            op.set_operand(2, bld.value("qir.dequantize", [pv], names=[f"{name}_dq"]))
            changed = True
    if changed:
        for fn in module.functions.values():
            eliminate_dead_code(fn)
        prune_params(module)
    return changed
