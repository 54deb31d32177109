"""Models quantized in PyTorch (QAT or PTQ): fake-quant and quantize/dequantize ops become
qir.quantize / qir.dequantize with the scales and zero points torch learned, so that
`propagate-scales,lower-to-integer` can lower them without recalibration (docs/methods.md).

- eager QAT (`torch.ao.quantization.prepare_qat`, observers disabled) exports
  `aten.fused_moving_avg_obs_fake_quant` / `aten.fake_quantize_per_tensor_affine` /
  `aten.fake_quantize_per_channel_affine`;
- PT2E (`convert_pt2e`) and FX reference graphs (`_convert_to_reference_decomposed_fx`)
  carry `quantized_decomposed.quantize_per_tensor` / `dequantize_per_tensor` /
  `quantize_per_channel` / `dequantize_per_channel`.

On an activation these become qir.quantize + qir.dequantize (qir's own rounding, x / s
ties to even). On a weight (a parameter or constant) the integers are computed here, by
torch's own op, and stored as a quantized parameter followed by qir.dequantize: the
weights are exactly the ones torch trained with. The storage type follows the integer
range (`quant_min`..`quant_max`, e.g. x86's reduce_range activations are `u8<0:127>`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers quantized_decomposed)

from frontends.common import Const, ConversionError, LazyParam, converter
from frontends.context import Context
from qir import Value
from qir.diagnostics import QirError
from qir.types import QuantType, TensorType

aten = torch.ops.aten
qd = torch.ops.quantized_decomposed

_STORAGE = {torch.uint8: "u8", torch.int8: "i8", torch.int16: "i16", torch.int32: "i32"}


def _storage_for(qmin: int, qmax: int, dtype: torch.dtype | None) -> str:
    if dtype is not None:
        if dtype not in _STORAGE:
            raise ConversionError(f"quantized dtype {dtype} has no qir storage type")
        return _STORAGE[dtype]
    for name, (lo, hi) in (("u8", (0, 255)), ("i8", (-128, 127)), ("i16", (-32768, 32767)),
                           ("i32", (-(2**31), 2**31 - 1))):
        if lo <= qmin and qmax <= hi:
            return name
    raise ConversionError(f"quantization range [{qmin}, {qmax}] fits no qir storage type")


def _array(x: Any, what: str) -> np.ndarray:
    """The values of a scale / zero point argument (python number or known tensor)."""
    if isinstance(x, (LazyParam, Const)):
        return x.tensor.detach().cpu().reshape(-1).numpy()
    if isinstance(x, (int, float)):
        return np.array([x])
    raise ConversionError(f"{what} must be known when the model is imported (a number, "
                          f"parameter or buffer), got {type(x).__name__}")


def quant_type(scale: Any, zero_point: Any, qmin: int, qmax: int, axis: int | None = None,
               dtype: torch.dtype | None = None) -> QuantType:
    """The !quant.uniform type of torch's (scale, zero_point, quant_min, quant_max)."""
    scales = [float(s) for s in _array(scale, "scale")]
    zps = [int(z) for z in _array(zero_point, "zero point")]
    if axis is None and (len(scales) != 1 or len(zps) != 1):
        raise ConversionError("per-tensor quantization with several scales")
    storage = _storage_for(int(qmin), int(qmax), dtype)
    q = QuantType(storage, "f32", tuple(scales), tuple(zps), int(qmin), int(qmax), axis)
    try:
        q.validate()
    except QirError as e:
        raise ConversionError(f"invalid quantization parameters: {e}") from None
    return q


def _quantized_param(ctx: Context, src: LazyParam | Const, ints: torch.Tensor,
                     q: QuantType) -> Value:
    """A quantized qir.param holding integers computed by torch."""
    ty = TensorType(tuple(ints.shape), q)
    data = ints.detach().cpu().numpy().astype(ty.dtype)
    base = src.name or ctx.node.name
    name = ctx.lowering.module.add_param(f"{base}.q", data)
    return ctx.emit("qir.param", [], {"name": name}, [ty])


def _ints_from_fake_quant(t: torch.Tensor, fq: torch.Tensor, q: QuantType) -> torch.Tensor:
    """The integers behind torch's fake-quantized values (exact: |q - zp| < 2^16)."""
    shape = [1] * t.dim()
    if q.axis is not None:
        shape[q.axis] = -1
    s = torch.tensor(q.scales, dtype=torch.float32).reshape(shape)
    z = torch.tensor(q.zero_points, dtype=torch.int64).reshape(shape)
    return torch.round(fq.double() / s.double()).to(torch.int64) + z


def _axis(axis: int, rank: int) -> int:
    return axis % rank if rank else 0


def fake_quant(ctx: Context, x: Any, q: QuantType) -> Value:
    """x quantized and dequantized with q: QDQ on an activation, a quantized parameter
    (integers from torch's own fake-quant op) on a weight."""
    if isinstance(x, (LazyParam, Const)):
        t = x.tensor.detach().float()
        s = torch.tensor(q.scales, dtype=torch.float32)
        z = torch.tensor(q.zero_points, dtype=torch.int32)
        if q.axis is None:
            fq = torch.fake_quantize_per_tensor_affine(t, s[0], z[0], q.storage_min,
                                                       q.storage_max)
        else:
            fq = torch.fake_quantize_per_channel_affine(t, s, z, q.axis, q.storage_min,
                                                        q.storage_max)
        return ctx.emit("qir.dequantize", [_quantized_param(ctx, x, _ints_from_fake_quant(
            t, fq, q), q)])
    v = ctx.value(x)
    if v.type.elem != "f32":
        raise ConversionError(f"fake quantization of a {v.type.elem} tensor (f32 expected)")
    qv = ctx.emit("qir.quantize", [v], result_types=[v.type.with_elem(q)])
    return ctx.emit("qir.dequantize", [qv])


# --- eager QAT: fake quantization ---------------------------------------------------------------


@converter(aten.fake_quantize_per_tensor_affine.default,
           aten.fake_quantize_per_tensor_affine.tensor_qparams,
           emits=("qir.quantize", "qir.dequantize", "qir.param"))
def fake_quantize_per_tensor(ctx: Context, input: Any, scale: Any, zero_point: Any,
                             quant_min: int, quant_max: int) -> Value:
    return fake_quant(ctx, input, quant_type(scale, zero_point, quant_min, quant_max))


@converter(aten.fake_quantize_per_channel_affine.default,
           emits=("qir.quantize", "qir.dequantize", "qir.param"))
def fake_quantize_per_channel(ctx: Context, input: Any, scale: Any, zero_point: Any, axis: int,
                              quant_min: int, quant_max: int) -> Value:
    rank = ctx.value(input).type.rank if isinstance(input, Value) else input.tensor.dim()
    return fake_quant(ctx, input, quant_type(scale, zero_point, quant_min, quant_max,
                                             _axis(axis, rank)))


def _flag(x: Any, what: str) -> bool:
    return bool(_array(x, what)[0])


@converter(aten.fused_moving_avg_obs_fake_quant.default,
           emits=("qir.quantize", "qir.dequantize", "qir.param"))
def fused_fake_quant(ctx: Context, input: Any, observer_on: Any, fake_quant_on: Any,
                     running_min: Any, running_max: Any, scale: Any, zero_point: Any,
                     averaging_const: float, quant_min: int, quant_max: int, ch_axis: int,
                     per_row_fake_quant: bool = False, symmetric_quant: bool = False) -> Any:
    """FusedMovingAvgObsFakeQuantize (PyTorch's default QAT fake-quant module)."""
    if _flag(observer_on, "observer_enabled"):
        raise ConversionError("the fake-quant observer is still enabled, so its scale would "
                              "change at run time: call model.apply(torch.ao.quantization."
                              "disable_observer) before exporting")
    if not _flag(fake_quant_on, "fake_quant_enabled"):
        return input if isinstance(input, Value) else ctx.value(input)
    axis = None
    if per_row_fake_quant:
        rank = input.type.rank if isinstance(input, Value) else input.tensor.dim()
        axis = _axis(ch_axis, rank)
    return fake_quant(ctx, input, quant_type(scale, zero_point, quant_min, quant_max, axis))


# --- PT2E / FX reference: quantized_decomposed -------------------------------------------------


def _quantize(ctx: Context, input: Any, q: QuantType, torch_op, *args) -> Value:
    if isinstance(input, (LazyParam, Const)):
        ints = torch_op(input.tensor.detach().float(), *args)
        return _quantized_param(ctx, input, ints.to(torch.int64), q)
    v = ctx.value(input)
    if v.type.elem != "f32":
        raise ConversionError(f"quantize of a {v.type.elem} tensor (f32 expected)")
    return ctx.emit("qir.quantize", [v], result_types=[v.type.with_elem(q)])


def _dequantize(ctx: Context, input: Any, q: QuantType, out_dtype) -> Value:
    if isinstance(input, (LazyParam, Const)):  # frozen integer weights (convert_pt2e)
        if input.tensor.is_floating_point():
            raise ConversionError("dequantize of a float tensor")
        qv = _quantized_param(ctx, input, input.tensor.to(torch.int64), q)
    else:
        qv = ctx.value(input)
        if not qv.type.is_quantized:
            raise ConversionError("dequantize of a tensor that was not quantized by a "
                                  "matching quantize op")
        if qv.type.quant != q:
            raise ConversionError(f"dequantize parameters {q} differ from the quantize's "
                                  f"{qv.type.quant}")
    out = ctx.emit("qir.dequantize", [qv])
    if out_dtype not in (None, torch.float32):
        from frontends.common import qir_elem

        out = ctx.cast(out, qir_elem(out_dtype))
    return out


@converter(qd.quantize_per_tensor.default, qd.quantize_per_tensor.tensor,
           emits=("qir.quantize", "qir.param"))
def quantize_per_tensor(ctx: Context, input: Any, scale: Any, zero_point: Any, quant_min: int,
                        quant_max: int, dtype: torch.dtype) -> Value:
    q = quant_type(scale, zero_point, quant_min, quant_max, None, dtype)
    return _quantize(ctx, input, q, qd.quantize_per_tensor.default, q.scales[0],
                     q.zero_points[0], quant_min, quant_max, dtype)


@converter(qd.dequantize_per_tensor.default, qd.dequantize_per_tensor.tensor,
           emits=("qir.dequantize", "qir.param"))
def dequantize_per_tensor(ctx: Context, input: Any, scale: Any, zero_point: Any,
                          quant_min: int, quant_max: int, dtype: torch.dtype, *,
                          out_dtype: torch.dtype | None = None) -> Value:
    q = quant_type(scale, zero_point, quant_min, quant_max, None, dtype)
    return _dequantize(ctx, input, q, out_dtype)


def _rank(x: Any) -> int:
    return x.type.rank if isinstance(x, Value) else x.tensor.dim()


@converter(qd.quantize_per_channel.default, emits=("qir.quantize", "qir.param"))
def quantize_per_channel(ctx: Context, input: Any, scales: Any, zero_points: Any, axis: int,
                         quant_min: int, quant_max: int, dtype: torch.dtype) -> Value:
    ax = _axis(axis, _rank(input))
    q = quant_type(scales, zero_points, quant_min, quant_max, ax, dtype)
    s = torch.tensor(q.scales, dtype=torch.float32)
    z = torch.tensor(q.zero_points, dtype=torch.int64)
    return _quantize(ctx, input, q, qd.quantize_per_channel.default, s, z, axis, quant_min,
                     quant_max, dtype)


@converter(qd.dequantize_per_channel.default, emits=("qir.dequantize", "qir.param"))
def dequantize_per_channel(ctx: Context, input: Any, scales: Any, zero_points: Any, axis: int,
                           quant_min: int, quant_max: int, dtype: torch.dtype, *,
                           out_dtype: torch.dtype | None = None) -> Value:
    q = quant_type(scales, zero_points, quant_min, quant_max, _axis(axis, _rank(input)), dtype)
    return _dequantize(ctx, input, q, out_dtype)
