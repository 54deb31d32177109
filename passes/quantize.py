"""quantize: calibrated observers become quantize/dequantize pairs (QDQ form) and the
weights and biases of the ops between them become quantized constants.

Defaults follow the TFLite int8 spec: activations int8 per-tensor asymmetric; weights
int8 symmetric per output channel in [-127, 127]; bias int32 with scale s_in·s_w[c] and
zero point 0. Options: uint8 activations, per-tensor weights, int16 activations
(symmetric, zero point 0). A tensor whose calibration saw outlier channels (largest
channel over median channel above `outlier-threshold`) is quantized to int16 (or kept
float with `outliers=float`): trained transformers carry such channels and int8
per-tensor would crush every other channel to a few levels.

The QDQ module still computes in float (simulated quantization); lower-to-integer turns
the patterns into integer ops. An op whose int32 accumulator could overflow with the
actual weights (K · max|x − zp| · Σ|w|) is kept in float and reported in the notes.

A bias whose int32 value (b / (s_in·s_w)) plus the accumulator's bound leaves int32 —
a layer whose input range is tiny (a branch after BatchNorm folding, a near-dead channel)
— does not stop the pipeline. With `bias-overflow=widen` (the default, what ONNX
Runtime's quantizer does) the weight scale of exactly the channels that overflow is
widened until they fit with a 1% margin (per-tensor weights: the whole tensor), their
weights re-quantized, and the widening recorded in the weight's provenance (`qir
explain`) and in a note; `bias-overflow=float` keeps the op in float instead, with a note.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np

from qir.builder import Builder
from qir.diagnostics import QirError
from qir.ir import Function, Module, Op, Value
from qir.types import QuantType, TensorType

from passes.manager import PassContext
from passes.quant_math import (channel_bounds, pow2_ceil, quantize_array, quantize_bias,
                               storage_range)
from passes.registry import register_pass
from passes.utils import constant_array, param_name

COMPUTE = ("qir.conv1d", "qir.conv2d", "qir.linear", "qir.matmul")
INT32_MAX = 2**31 - 1


def activation_type(lo: float, hi: float, dtype: str, expressed: str = "f32",
                    pow2: bool = False) -> QuantType:
    """Per-tensor quant type for a calibrated range: asymmetric for i8/u8, symmetric
    (zero point 0) for i16. `pow2`: the scale rounded up to a power of two (the range
    still fits), the zero point chosen again for it."""
    from passes.observers import quant_params_from_range

    qmin, qmax = storage_range(dtype)
    symmetric = dtype == "i16"
    scale, zp = quant_params_from_range(lo, hi, qmin, qmax, symmetric=symmetric)
    if pow2:
        scale = pow2_ceil(scale)
        if not symmetric:
            zp = int(np.clip(np.rint(qmin - min(float(lo), 0.0) / scale), qmin, qmax))
    return QuantType(dtype, expressed, (scale,), (zp,), pow2=pow2)


def _qdq(fn: Function, value: Value, anchor: Op, q: QuantType, name: str,
         prov: str = "") -> Value:
    b = Builder(fn, after=anchor, loc=anchor.loc)
    qv = b.value("qir.quantize", [value], {"prov": prov},
                 result_types=[value.type.with_elem(q)], names=[f"{name}_q"])
    return b.value("qir.dequantize", [qv], names=[f"{name}_dq"])


def observer_prov(op: Op, dtype: str) -> str:
    """Provenance of an activation scale: the observer, its method and range."""
    kind = "symmetric" if dtype == "i16" else "asymmetric"
    return (f"observer '{op.attr('id')}' ({op.attr('method')}): range "
            f"[{op.attr('min'):.6g}, {op.attr('max'):.6g}] -> {dtype} {kind}")


def _dequantized_input(v: Value) -> QuantType | None:
    """The quant type of `v` when v = dequantize(quantize(...)) per-tensor."""
    op = v.owner
    if op is None or op.name != "qir.dequantize":
        return None
    q = op.operands[0].type.elem
    return q if isinstance(q, QuantType) and q.axis is None else None


def _quantized_param(fn: Function, anchor: Op, data: np.ndarray, q: QuantType, name: str,
                     loc, prov: str = "") -> Value:
    module = fn.module
    pname = module.add_param(name, data)
    b = Builder(fn, before=anchor, loc=loc)
    pv = b.value("qir.param", [], {"name": pname, "prov": prov},
                 result_types=[TensorType(data.shape, q)], names=[name])
    return b.value("qir.dequantize", [pv], names=[f"{name}_dq"])


def _weight_type(w: np.ndarray, per_channel: bool, pow2: bool = False) -> QuantType:
    from passes.observers import weight_scales

    def fit(s):
        return pow2_ceil(float(s)) if pow2 else float(s)

    if per_channel:
        scales = weight_scales(w, axis=0, qmax=127)
        return QuantType("i8", "f32", tuple(fit(s) for s in scales), (0,) * len(scales),
                         -127, 127, axis=0, pow2=pow2)
    scale = fit(weight_scales(w, axis=None, qmax=127).reshape(-1)[0])
    return QuantType("i8", "f32", (scale,), (0,), -127, 127, pow2=pow2)


def _accumulator_bound(xq: QuantType, wq_data: np.ndarray, op: Op) -> int:
    """Largest |int32 accumulator| any input could produce, given the actual weights."""
    if op.name == "qir.matmul":  # rhs [.., K, N]: sum over K per column
        zp = xq.zero_point
        max_x = max(xq.storage_max - zp, zp - xq.storage_min)
        return int(max_x) * int(np.abs(wq_data.astype(np.int64)).sum(axis=-2).max())
    return int(channel_bounds(xq, wq_data).max())


BIAS_MARGIN = 0.99  # a widened channel's bias and accumulator fill at most 99% of int32


def _fit_bias(w: np.ndarray, wtype: QuantType, b: np.ndarray, xq: QuantType, op: Op
              ) -> tuple[QuantType, np.ndarray, np.ndarray]:
    """Widen the weight scales of the channels whose int32 bias plus accumulator bound
    leaves int32 (all of them for per-tensor weights) by the least factor that fits;
    returns (weight type, widening factor per channel, the quantized weights)."""
    per_channel = wtype.axis is not None
    scales = np.asarray(wtype.scales, np.float64)
    factor = np.ones(b.shape[0])
    for _ in range(8):  # rounding can leave a channel a hair over: widen again
        s = scales * (factor if per_channel else factor.max())
        if wtype.pow2:
            s = np.array([pow2_ceil(float(v)) for v in s])
        trial = QuantType("i8", "f32", tuple(float(v) for v in s), (0,) * len(s), -127, 127,
                          axis=wtype.axis, pow2=wtype.pow2)
        wdata = quantize_array(w, trial)
        s_w = s if per_channel else np.full(b.shape[0], s[0])
        need = (np.abs(np.asarray(b, np.float64)) / (xq.scale * s_w)
                + channel_bounds(xq, wdata)) / (BIAS_MARGIN * INT32_MAX)
        if np.all(need <= 1):
            return trial, factor if per_channel else np.full_like(factor, factor.max()), wdata
        factor = np.where(need > 1, factor * need * 1.001, factor)
    raise QirError(f"{op.name} %{op.result.name} ({op.loc}): its bias does not fit int32 "
                   "even after widening the weight scales")


def _quantize_compute(fn: Function, op: Op, per_channel: bool, notes: list[str],
                      bias_overflow: str = "widen", pow2: bool = False) -> bool:
    """Give a conv/linear/matmul with dequantized activations quantized weights/bias."""
    xq = _dequantized_input(op.operands[0])
    if xq is None:
        return False
    if op.name == "qir.matmul":
        rhs_q = _dequantized_input(op.operands[1])
        if rhs_q is not None:
            return True  # activation x activation: nothing constant to quantize
        w = constant_array(op.operands[1])
        if w is None:
            return False
        wtype = _weight_type(w.reshape(1, -1), per_channel=False, pow2=pow2)
    else:
        w = constant_array(op.operands[1])
        if w is None:
            return False
        wtype = _weight_type(w, per_channel, pow2)
    wdata = quantize_array(w, wtype)
    bound = _accumulator_bound(xq, wdata, op)
    b_arr = constant_array(op.operands[2]) if len(op.operands) > 2 else None
    if bound > INT32_MAX:
        notes.append(f"kept {op.name} %{op.result.name} ({op.loc}) in float: its int32 "
                     f"accumulator could reach {bound} with {xq.storage} inputs")
        return False
    how = ("per-channel symmetric max|w|/127 (axis 0)" if wtype.axis is not None else
           "per-tensor symmetric max|w|/127") + (", rounded up to a power of two" if pow2
                                                 else "")
    if b_arr is not None:
        s_w = np.asarray(wtype.scales, np.float64)
        if len(s_w) == 1:
            s_w = np.full(b_arr.shape[0], s_w[0])
        bdata = quantize_bias(b_arr, xq.scale * s_w)
        over = np.abs(bdata.astype(np.int64)) + channel_bounds(xq, wdata) > INT32_MAX
        if np.any(over):
            where = f"{op.name} %{op.result.name} ({op.loc})"
            if bias_overflow == "float":
                notes.append(f"kept {where} in float: its bias leaves int32 with scale "
                             f"s_in·s_w on {int(over.sum())} channel(s) (bias-overflow=float)")
                return False
            wtype, factor, wdata = _fit_bias(w, wtype, b_arr, xq, op)
            widened = np.flatnonzero(factor > 1)
            shown = ", ".join(map(str, widened[:8])) + (", ..." if len(widened) > 8 else "")
            how += (f"; widened {factor.max():.3g}x at most on {len(widened)} channel(s) "
                    f"[{shown}] so that the bias fits int32 with scale s_in·s_w")
            notes.append(f"{where}: widened the weight scale of {len(widened)} channel(s) "
                         f"(up to {factor.max():.3g}x) so that its bias fits int32")
    wname = param_name(op.operands[1]) or op.operands[1].name
    wd = _quantized_param(fn, op, wdata, wtype, f"{wname}.q", op.loc, f"weight {how}")
    op.set_operand(1, wd)
    if b_arr is not None:
        s_w = np.asarray(wtype.scales, np.float64)
        if len(s_w) == 1:
            s_w = np.full(b_arr.shape[0], s_w[0])
        bscales = xq.scale * s_w
        bdata = quantize_bias(b_arr, bscales)
        btype = QuantType("i32", "f32", tuple(float(s) for s in bscales),
                          (0,) * len(bscales), axis=0, pow2=xq.pow2 and wtype.pow2)
        bname = param_name(op.operands[2]) or op.operands[2].name
        op.set_operand(2, _quantized_param(fn, op, bdata, btype, f"{bname}.q", op.loc,
                                           "bias: s_in·s_w (input scale times weight "
                                           "scale), int32, zero point 0"))
    return True


@register_pass("quantize")
def quantize(
    module: Module, ctx: PassContext, *,
    weights: Annotated[Literal["per-channel", "per-tensor"], "weight granularity"] =
        "per-channel",
    activations: Annotated[Literal["observer", "i8", "u8", "i16"],
                           "activation storage (observer: what insert-observers chose)"] =
        "observer",
    outliers: Annotated[Literal["int16", "float", "keep"],
                        "what to do with tensors that have outlier channels"] = "int16",
    outlier_threshold: Annotated[float, "max-channel / median-channel ratio that counts "
                                 "as outliers"] = 16.0,
    bias_overflow: Annotated[Literal["widen", "float"],
                             "a bias that leaves int32 with scale s_in·s_w: widen those "
                             "channels' weight scales, or keep the op float"] = "widen",
    scales: Annotated[Literal["any", "pow2"], "pow2: every scale rounded up to a power of "
                      "two (requantize becomes a shift)"] = "any",
) -> bool:
    """Turn calibrated observers into quantize/dequantize pairs and quantize weights and
    biases (TFLite int8 defaults)."""
    changed = False
    for fn in module.functions.values():
        for op in fn.walk("qir.observe"):
            lo, hi = op.attr("min"), op.attr("max")
            if lo is None or hi is None:
                where = "" if op.loc.is_unknown() else f" ({op.loc})"
                raise QirError(f"observer '{op.attr('id')}'{where} has no range: run "
                               "calibrate before quantize")
            dtype = op.attr("dtype") if activations == "observer" else activations
            ratio = op.attr("outlier_ratio")
            src = op.operands[0]
            why = ""
            if ratio is not None and ratio > outlier_threshold and outliers != "keep":
                if outliers == "float":
                    ctx.notes.append(f"kept %{src.name} float: outlier channels "
                                     f"({ratio:.0f}x the median)")
                    fn.replace_all_uses(op.result, src)
                    fn.erase(op)
                    changed = True
                    continue
                dtype = "i16"
                why = (f"; i16 because of outlier channels ({ratio:.0f}x the median, "
                       f"threshold {outlier_threshold:g})")
            q = activation_type(lo, hi, dtype, src.type.elem if src.type.elem in
                                ("f32", "f16", "bf16") else "f32", pow2=scales == "pow2")
            dq = _qdq(fn, src, op, q, src.name, observer_prov(op, dtype) + why)
            fn.replace_all_uses(op.result, dq)
            fn.erase(op)
            changed = True
        for op in fn.walk():
            if op.name in COMPUTE:
                changed |= _quantize_compute(fn, op, weights == "per-channel", ctx.notes,
                                             bias_overflow, scales == "pow2")
    if changed:
        from passes.utils import eliminate_dead_code, prune_params

        for fn in module.functions.values():
            eliminate_dead_code(fn)
        prune_params(module)
    return changed
