"""fp8: calibrated observers and weights become fp8 quantize/dequantize pairs.

Used in place of `quantize` (after insert-observers and calibrate): every observer turns
into `qir.quantize` to `!quant.uniform<f8e4m3:f32, scale>` + `qir.dequantize`, with
scale = amax / 448 (E4M3) or amax / 57344 (E5M2), amax = max(|min|, |max|) of the
calibrated range, so the observed range maps onto the format's finite range; values
beyond it saturate (docs/semantics.md). The weights of conv/linear/matmul ops whose input
is fp8 are stored in fp8 (per tensor, or per output channel) and dequantized before the
op; biases stay float. The compute itself stays float: this is the QDQ form that fp8
GEMM backends (TensorRT, Transformer Engine, cuBLASLt) pattern-match. E4M3 (3 mantissa
bits) is the usual choice for inference; E5M2 trades precision for range.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np

from qir.builder import Builder
from qir.diagnostics import QirError
from qir.ir import Function, Module, Op, Value
from qir.types import FP8_MAX, QuantType, TensorType

from passes.capture import finish
from passes.manager import PassContext
from passes.registry import register_pass
from passes.utils import constant_array, param_name

COMPUTE = ("qir.conv1d", "qir.conv2d", "qir.linear", "qir.matmul")


def fp8_scale(amax: float, storage: str) -> float:
    """amax / format max, rounded to float32 (1.0 for an all-zero tensor)."""
    s = float(np.float32(amax / FP8_MAX[storage]))
    return s if s > 0 and np.isfinite(s) else 1.0


def _qdq_activation(fn: Function, obs: Op, storage: str) -> Value:
    lo, hi = obs.attr("min"), obs.attr("max")
    if lo is None or hi is None:
        where = "" if obs.loc.is_unknown() else f" ({obs.loc})"
        raise QirError(f"observer '{obs.attr('id')}'{where} has no range: run calibrate "
                       "before fp8")
    src = obs.operands[0]
    expressed = src.type.elem if src.type.elem in ("f32", "f16", "bf16") else "f32"
    q = QuantType(storage, expressed, (fp8_scale(max(abs(lo), abs(hi)), storage),), (0,))
    b = Builder(fn, after=obs, loc=obs.loc)
    qv = b.value("qir.quantize", [src], result_types=[src.type.with_elem(q)],
                 names=[f"{src.name}_q"])
    return b.value("qir.dequantize", [qv], names=[f"{src.name}_dq"])


def _is_fp8_dq(v: Value) -> bool:
    op = v.owner
    return (op is not None and op.name == "qir.dequantize"
            and op.operands[0].type.is_quantized and op.operands[0].type.quant.is_fp8)


def _quantize_weight(fn: Function, op: Op, storage: str, per_channel: bool) -> bool:
    from qir.quant import quantize_values

    w = constant_array(op.operands[1])
    if w is None or w.dtype.kind != "f":
        return False
    axis = None
    if per_channel:
        axis = 0 if op.name != "qir.matmul" else w.ndim - 1
    if axis is None:
        q = QuantType(storage, "f32", (fp8_scale(float(np.abs(w).max()), storage),), (0,))
    else:
        amax = np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).max(axis=1)
        q = QuantType(storage, "f32", tuple(fp8_scale(float(a), storage) for a in amax),
                      (0,) * len(amax), axis=axis)
    ty = TensorType(w.shape, q)
    data = quantize_values(w, ty)
    old = op.operands[1]
    name = f"{param_name(old) or old.name}.{storage}"
    pname = fn.module.add_param(name, data)
    b = Builder(fn, before=op, loc=op.loc)
    pv = b.value("qir.param", [], {"name": pname}, result_types=[ty], names=[name])
    op.set_operand(1, b.value("qir.dequantize", [pv], names=[f"{name}_dq"]))
    if op.name in ("qir.linear", "qir.matmul"):  # reproducible: docs/semantics.md
        op.attrs["accumulate"] = "sequential"
    return True


@register_pass("fp8")
def fp8(
    module: Module, ctx: PassContext, *,
    format: Annotated[Literal["e4m3", "e5m2"], "fp8 format (OCP E4M3FN or E5M2)"] = "e4m3",
    granularity: Annotated[Literal["per-tensor", "per-channel"],
                           "weight scales: one per tensor or one per output channel"] =
        "per-tensor",
) -> bool:
    """Turn calibrated observers into fp8 quantize/dequantize pairs (scale = amax / fp8
    max) and store the weights of the ops between them in fp8."""
    storage = f"f8{format}"
    changed = False
    weights = 0
    for fn in module.functions.values():
        for obs in fn.walk("qir.observe"):
            dq = _qdq_activation(fn, obs, storage)
            fn.replace_all_uses(obs.result, dq)
            fn.erase(obs)
            changed = True
        for op in fn.walk():
            if op.name in COMPUTE and _is_fp8_dq(op.operands[0]) and not _is_fp8_dq(
                    op.operands[1]):
                if _quantize_weight(fn, op, storage, granularity == "per-channel"):
                    weights += 1
                    changed = True
    if changed:
        ctx.notes.append(f"fp8: {storage} activations and {weights} weights "
                         f"({granularity})")
        finish(module)
    return changed
