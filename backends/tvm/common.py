"""Helpers shared by the lowerings: dtypes, constants, broadcastable quantization
parameters, exact rounding, fused clamps."""

from __future__ import annotations

import numpy as np
from tvm import relax

from qir.quant import quant_params
from qir.ir import Op
from qir.types import QuantType, TensorType, numpy_dtype

R = relax.op

# qir element type (storage type for quantized elements) -> TVM dtype.
_DTYPES = {"f64": "float64", "f32": "float32", "f16": "float16", "bf16": "bfloat16",
           "f8e4m3": "float8_e4m3fn", "f8e5m2": "float8_e5m2", "i64": "int64",
           "i32": "int32", "i16": "int16", "i8": "int8", "u8": "uint8", "i4": "int8",
           "u4": "uint8", "bool": "bool"}
# Computed in float32, as the interpreter does (fp8 through backends/tvm/fp8.py).
LOW_FLOATS = ("float16", "bfloat16")
FP8 = ("float8_e4m3fn", "float8_e5m2")


def tvm_dtype(ty: TensorType | str | QuantType) -> str:
    """The TVM dtype that stores values of a qir type or element type."""
    elem = ty.elem if isinstance(ty, TensorType) else ty
    name = elem.storage if isinstance(elem, QuantType) else elem
    return _DTYPES[name]


def dtype_of(x: relax.Expr) -> str:
    """The dtype of a tensor-typed Relax expression (TVM 0.27: `expr.ty`)."""
    return str(x.ty.dtype)


def shape_of(x: relax.Expr) -> tuple[int, ...]:
    return tuple(int(d) for d in x.ty.shape)


def is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat"))


_NUMPY = {"float64": np.float64, "float32": np.float32, "float16": np.float16,
          "int64": np.int64, "int32": np.int32, "int16": np.int16, "int8": np.int8,
          "uint8": np.uint8, "bool": np.bool_}


def const(value, dtype: str) -> relax.Constant:
    """A constant tensor of exactly `dtype` (relax.const alone narrows int64 to int32)."""
    np_dtype = _NUMPY.get(dtype)
    if np_dtype is None:  # bfloat16, float8: ml_dtypes
        np_dtype = numpy_dtype({v: k for k, v in _DTYPES.items()}[dtype])
    return relax.const(np.asarray(value).astype(np_dtype), dtype)


def scalar(value, like: relax.Expr | str) -> relax.Constant:
    """A rank-0 constant with the dtype of `like` (an expression or a dtype name)."""
    return const(value, like if isinstance(like, str) else dtype_of(like))


def cast(bb: relax.BlockBuilder, x: relax.Expr, dtype: str) -> relax.Expr:
    return x if dtype_of(x) == dtype else bb.emit(R.astype(x, dtype))


def to_float32(bb: relax.BlockBuilder, x: relax.Expr) -> relax.Expr:
    """Half floats (f16, bf16, fp8) as float32, exactly; anything else unchanged."""
    dtype = dtype_of(x)
    if dtype in LOW_FLOATS:
        return bb.emit(R.astype(x, "float32"))
    if dtype in FP8:
        from backends.tvm.fp8 import decode_fp8

        return decode_fp8(bb, x)
    return x


def channel_shape(rank: int, axis: int, size: int) -> tuple[int, ...]:
    shape = [1] * rank
    shape[axis] = size
    return tuple(shape)


def quant_consts(ty: TensorType) -> tuple[np.ndarray, np.ndarray]:
    """(scale as float32, zero point as int64) of a quantized type, shaped to broadcast
    against the tensor (the numpy interpreter's own rule)."""
    return quant_params(ty.quant, ty.shape)


def uniform(a: np.ndarray):
    """The single value of an array whose elements are all equal, else None."""
    flat = np.asarray(a).ravel()
    if flat.size and np.all(flat == flat[0]):
        return flat[0]
    return None


def round_half_even(bb: relax.BlockBuilder, v: relax.Expr) -> relax.Expr:
    """Round to the nearest integer, ties to even: `R.round`, which qir legalizes to
    llvm.roundeven on CPUs and nearbyintf (ties to even under the default rounding
    mode) in CUDA (backends/tvm/exact.py); tests/backends/tvm checks the ties."""
    return bb.emit(R.round(v))


def clip(bb: relax.BlockBuilder, x: relax.Expr, lo, hi) -> relax.Expr:
    """min(max(x, lo), hi) with scalar or array bounds in x's dtype (None: unbounded)."""
    if lo is not None:
        x = bb.emit(R.maximum(x, const(lo, dtype_of(x))))
    if hi is not None:
        x = bb.emit(R.minimum(x, const(hi, dtype_of(x))))
    return x


def fused_clamp(bb: relax.BlockBuilder, op: Op, y: relax.Expr) -> relax.Expr:
    """An op's fused activation (`clamp_min` / `clamp_max` attributes), if any."""
    return clip(bb, y, op.attrs.get("clamp_min"), op.attrs.get("clamp_max"))


def tuple_items(bb: relax.BlockBuilder, t: relax.Expr, n: int) -> list[relax.Expr]:
    return [bb.emit(relax.TupleGetItem(t, i)) for i in range(n)]

