"""Quantization ops as explicit integer arithmetic, exactly docs/semantics.md (the numpy
interpreter's backends/numpy/quant.py): rescaling in int64 with arithmetic shifts, int32
accumulation for the integer compute ops, and the float -> integer step of quantize with
an exact, target-independent round-half-to-even."""

from __future__ import annotations

import numpy as np
from tvm import relax, te

from backends.tvm import fixed_point
from backends.tvm.common import (R, cast, channel_shape, clip, const, quant_consts,
                                 round_half_even, scalar, shape_of, tvm_dtype, uniform)
from backends.tvm.kernels import gpu
from backends.tvm.kernels.common import OP_PATTERN_OPAQUE
from backends.tvm.kernels.conv import conv2d
from backends.tvm.kernels.dense import batch_matmul, dense
from backends.tvm.nn_ops import conv
from backends.tvm.registry import relax_lowering
from backends.tvm.shape_ops import pad_or_crop
from qir.ops.core import constant_array
from qir.types import TensorType

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
I64 = "int64"
NARROW = ("i8", "u8", "i4", "u4")  # x - zp needs no more than int16 for these


def i64(value) -> relax.Constant:
    """An int64 constant (a scalar, or an array shaped to broadcast)."""
    a = np.asarray(value, dtype=np.int64)
    if a.size == 1 and a.ndim:
        a = a.reshape(())
    return const(a, I64)


# --- quantize / dequantize ------------------------------------------------------------------


@relax_lowering("qir.quantize")
def quantize(op, bb, args, params):
    """q = clip(round_half_even(x_f32 / s) + zp, lo, hi); the division is float32, the
    rounding exact, and the zero point added in int64 (after bounding the rounded value
    to +-2^40, beyond every storage range, so that the conversion is defined); a NaN
    stores the zero point."""
    ty = op.result.type
    x = cast(bb, args[0], "float32")
    scale, zp = quant_consts(ty)
    v = bb.emit(R.divide(x, const(_squeeze(scale), "float32")))
    if ty.quant.is_fp8:
        from backends.tvm.fp8 import encode_fp8

        limit = scalar(ty.quant.qmax, v)
        v = bb.emit(R.minimum(R.maximum(v, R.negative(limit)), limit))
        return encode_fp8(bb, v, tvm_dtype(ty))
    r = round_half_even(bb, v)
    # NaN stores the zero point (the real 0); +-Inf saturates (docs/semantics.md)
    r = bb.emit(R.where(R.isnan(r), scalar(0.0, r), r))
    r = clip(bb, r, -(2.0**40), 2.0**40)
    y = bb.emit(R.add(R.astype(r, I64), i64(_squeeze(zp))))
    y = clip(bb, y, ty.quant.storage_min, ty.quant.storage_max)
    return R.astype(y, tvm_dtype(ty))


def _squeeze(a: np.ndarray) -> np.ndarray:
    """A per-tensor or uniform parameter array as a scalar."""
    u = uniform(a)
    return np.asarray(a) if u is None else np.asarray(u).reshape(())


def dequantize_values(bb, q: relax.Expr, ty: TensorType) -> relax.Expr:
    """float32(q - zp) * float32(s), q - zp exact in integers; a codebook type:
    float32(levels[q]) * float32(s) (indices past the table read its last level)."""
    scale, zp = quant_consts(ty)
    if ty.quant.is_codebook:
        table = np.asarray(ty.quant.levels, np.float32)
        idx = bb.emit(R.clip(R.astype(q, "int32"), 0, len(table) - 1))
        vals = bb.emit(R.take(const(table, "float32"), idx, axis=0))
        return bb.emit(R.multiply(vals, const(_squeeze(scale), "float32")))
    if ty.quant.is_fp8:
        from backends.tvm.fp8 import decode_fp8

        return bb.emit(R.multiply(decode_fp8(bb, q), const(_squeeze(scale), "float32")))
    wide = I64 if ty.quant.storage == "i32" else "int32"
    diff = bb.emit(R.subtract(R.astype(q, wide), const(_squeeze(zp), wide)))
    return bb.emit(R.multiply(R.astype(diff, "float32"), const(_squeeze(scale), "float32")))


@relax_lowering("qir.dequantize", upcast=False)
def dequantize(op, bb, args, params):
    return dequantize_values(bb, args[0], op.operands[0].type)


# --- integer rescaling ------------------------------------------------------------------------


def rescale(bb, x: relax.Expr, multiplier, shift, rounding: str) -> relax.Expr:
    """round(x * M * 2^(e - 31)) in int64 (x int64; M, e int64 arrays broadcasting against
    x, or scalars), per docs/semantics.md. Every shift amount is a constant."""
    m = np.asarray(multiplier, dtype=np.int64)
    e = np.asarray(shift, dtype=np.int64)
    if rounding == "single":
        y = bb.emit(R.add(R.multiply(x, i64(m)), i64(np.left_shift(1, 30 - e))))
        return bb.emit(R.right_shift(y, i64(31 - e)))
    left, right = np.maximum(e, 0), np.maximum(-e, 0)
    a = clip(bb, x, INT32_MIN, INT32_MAX)
    if np.any(left):
        a = clip(bb, bb.emit(R.left_shift(a, i64(left))), INT32_MIN, INT32_MAX)
    ab = bb.emit(R.multiply(a, i64(m)))
    nudge = bb.emit(R.where(R.greater_equal(ab, i64(0)), i64(1 << 30), i64(1 - (1 << 30))))
    v = bb.emit(R.add(ab, nudge))
    # Divide by 2^31 rounding toward zero. M >= 0 (the verifier's range), so SRDHM's
    # INT32_MIN * INT32_MIN saturation cannot occur.
    high = bb.emit(R.where(R.greater_equal(v, i64(0)), R.right_shift(v, i64(31)),
                           R.negative(R.right_shift(R.negative(v), i64(31)))))
    if not np.any(right):
        return high
    mask = np.left_shift(1, right) - 1
    threshold = bb.emit(R.add(i64(mask >> 1), R.astype(R.less(high, i64(0)), I64)))
    up = bb.emit(R.greater(R.bitwise_and(high, i64(mask)), threshold))
    return bb.emit(R.add(R.right_shift(high, i64(right)), R.astype(up, I64)))


def _clamp_range(op) -> tuple[int, int]:
    """[clamp_min, clamp_max] of a rescaling op (default: the result's storage range)."""
    q = op.result.type.quant
    lo, hi = op.attr("clamp_min"), op.attr("clamp_max")
    return (q.storage_min if lo is None else lo), (q.storage_max if hi is None else hi)


def finish(bb, op, y: relax.Expr) -> relax.Expr:
    """y + output_zp clipped to [clamp_min, clamp_max] (default: the storage range), then
    stored in the result's dtype."""
    lo, hi = _clamp_range(op)
    y = bb.emit(R.add(y, i64(op.attr("output_zp"))))
    y = clip(bb, y, lo, hi)
    return R.astype(y, tvm_dtype(op.result.type))


def _zero_point(ty: TensorType) -> int:
    return ty.quant.zero_point if ty.is_quantized else 0


def centered(bb, x: relax.Expr, zp: int) -> relax.Expr:
    """x - zp in int64."""
    x = bb.emit(R.astype(x, I64))
    return bb.emit(R.subtract(x, i64(zp))) if zp else x


def single_rescale(op) -> fixed_point.Rescale:
    """A single-rounding requantize op's arithmetic."""
    lo, hi = _clamp_range(op)
    return fixed_point.Rescale.of(op.attr("input_zp"), op.attr("multiplier"),
                                  op.attr("shift"), op.attr("output_zp"), lo, hi,
                                  tvm_dtype(op.result.type))


def requantize_axis(op) -> int | None:
    """The axis a requantize's per-channel tables run along (None: per tensor)."""
    axis = op.attr("axis")
    return None if axis is None else axis % op.operands[0].type.rank


@relax_lowering("qir.lut", upcast=False)
def lut(op, bb, args, params):
    """A gather from the 256-entry table, indexed by x minus its storage minimum (always
    in [0, 256); "clip" mode only keeps TVM from warning that "fast" mode trusts it)."""
    lo = int(np.iinfo(op.operands[0].type.dtype).min)
    index = R.astype(args[0], "int32")
    if lo:
        index = R.subtract(index, const(lo, "int32"))
    return R.take(args[1], bb.emit(index), axis=0, mode="clip")


@relax_lowering("qir.requantize", upcast=False)
def requantize(op, bb, args, params):
    if op.attr("rounding") == "single":
        return fixed_point.requantize(bb, args[0], single_rescale(op), requantize_axis(op))
    m, e = np.asarray(op.attr("multiplier")), np.asarray(op.attr("shift"))
    axis = op.attr("axis")
    rank = op.operands[0].type.rank
    x = centered(bb, args[0], op.attr("input_zp"))
    if axis is not None:
        shape = channel_shape(rank, axis % rank, -1)
        m, e = m.reshape(shape), e.reshape(shape)
    return finish(bb, op, rescale(bb, x, m, e, op.attr("rounding")))


@relax_lowering("qir.qmul", upcast=False)
def qmul(op, bb, args, params):
    a = centered(bb, args[0], _zero_point(op.operands[0].type))
    b = centered(bb, args[1], _zero_point(op.operands[1].type))
    p = bb.emit(R.multiply(a, b))
    return finish(bb, op, rescale(bb, p, op.attr("multiplier"), op.attr("shift"),
                                  op.attr("rounding")))


def add_spec(op) -> fixed_point.Add:
    """A qadd op's arithmetic."""
    lo, hi = _clamp_range(op)
    a, b = (v.type for v in op.operands)
    span = max(max(abs(t.quant.storage_min - z), abs(t.quant.storage_max - z))
               for t, z in ((a, _zero_point(a)), (b, _zero_point(b))))
    return fixed_point.Add(
        _zero_point(a), _zero_point(b), op.attr("lhs_multiplier"), op.attr("rhs_multiplier"),
        31 - op.attr("lhs_shift"), 31 - op.attr("rhs_shift"), op.attr("output_zp"), lo, hi,
        tvm_dtype(op.result.type), span)


@relax_lowering("qir.qadd", upcast=False)
def qadd(op, bb, args, params):
    """One rounding of (a - z_a) m_a + (b - z_b) m_b: both terms aligned to the larger
    shift n, summed, then (s + 2^(n-1)) >> n (backends/tvm/fixed_point.py)."""
    shape = tuple(op.result.type.shape)
    a, b = (x if shape_of(x) == shape else bb.emit(R.broadcast_to(x, shape)) for x in args)
    return fixed_point.add(bb, a, b, add_spec(op))


# --- integer compute ops ----------------------------------------------------------------------


def _input_and_correction(bb, op, x: relax.Expr, w: relax.Expr, reduce_axes: list[int],
                          spatial_pad: list[int] | None):
    """The integer input the accumulation runs on, the padding left to the op, and the
    int32 correction to subtract per output channel (None: nothing to subtract).

    8-bit inputs stay 8-bit: padded with their zero point, and zp_x * sum_k w[c, k] is
    subtracted from the accumulator afterwards (exact in wrapping int32). 16-bit inputs
    are widened to int32 and centred first, so no partial sum can leave int32."""
    tx = op.operands[0].type
    zp = tx.quant.zero_point
    if zp == 0:
        return x, spatial_pad, None
    if tx.quant.storage not in NARROW:
        xi = bb.emit(R.subtract(R.astype(x, "int32"), const(zp, "int32")))
        return xi, spatial_pad, None
    if spatial_pad is not None and any(spatial_pad):
        nd = len(spatial_pad) // 2
        x = pad_or_crop(bb, x, [0, 0] + spatial_pad[:nd], [0, 0] + spatial_pad[nd:], zp)
        spatial_pad = [0] * len(spatial_pad)
    w_const = constant_array(op.operands[1])
    if w_const is not None:
        corr = zp * np.sum(w_const.astype(np.int64), axis=tuple(reduce_axes))
        return x, spatial_pad, const(corr.astype(np.int64).astype(np.int32), "int32")
    wsum = bb.emit(R.sum(R.astype(w, "int32"), axis=reduce_axes))
    return x, spatial_pad, bb.emit(R.multiply(wsum, const(zp, "int32")))


def _qconv(op, bb, args, params):
    """acc = sum (x - zp_x) * w + bias in int32; padding reads zp_x."""
    x, w = args[0], args[1]
    nd = len(shape_of(w)) - 2
    acc = conv_kernel(bb, op, x)
    if acc is not None:
        return _add_runtime_bias(bb, op, args, acc, 1)
    x, pad, corr = _input_and_correction(bb, op, x, w, list(range(1, nd + 2)),
                                         list(op.attr("padding")))
    acc = conv(bb, op, x, w, out_dtype="int32", padding=pad)
    channel = (1, -1) + (1,) * nd
    if corr is not None:
        acc = bb.emit(R.subtract(acc, R.reshape(corr, channel)))
    if len(args) > 2:
        acc = bb.emit(R.add(acc, R.reshape(args[2], channel)))
    return acc


def conv_kernel(bb, op, x: relax.Expr, epilogue=None,
                residual: relax.Expr | None = None) -> relax.Expr | None:
    """The accumulator of a qconv1d/2d op through backends/tvm/kernels/conv.py (conv1d
    as conv2d over one row), or with `epilogue` (kernels/epilogue.py) the epilogue's
    output; None when the weights are not constant or no kernel applies."""
    w = constant_array(op.operands[1])
    if w is None:
        return None
    nd = w.ndim - 2
    stride, dilation = list(op.attr("stride")), list(op.attr("dilation"))
    padding = list(op.attr("padding"))
    if nd == 1:
        n, c, width = shape_of(x)
        x = bb.emit(R.reshape(x, (n, c, 1, width)))
        w = w.reshape(w.shape[0], w.shape[1], 1, w.shape[2])
        stride, dilation = [1] + stride, [1] + dilation
        padding = [0, padding[0], 0, padding[1]]
        if residual is not None:
            rn, rc, rw = shape_of(residual)
            residual = bb.emit(R.reshape(residual, (rn, rc, 1, rw)))
    tx = op.operands[0].type
    acc = conv2d(bb, x, _storage_range(tx), _zero_point(tx), w, _constant_operand(op, 2),
                 stride, padding, dilation, op.attr("groups"), epilogue, residual)
    if acc is None or nd == 2:
        return acc
    shape = shape_of(acc)
    return bb.emit(R.reshape(acc, (shape[0], shape[1], shape[3])))


relax_lowering("qir.qconv1d", upcast=False)(_qconv)
relax_lowering("qir.qconv2d", upcast=False)(_qconv)


@relax_lowering("qir.qlinear", upcast=False)
def qlinear(op, bb, args, params):
    """acc[..., n] = sum_k (x[..., k] - zp_x) * w[n, k] + bias[n] in int32 (through the
    dense kernel when the weights are constant and the target takes it)."""
    x, w = args[0], args[1]
    acc = linear_kernel(bb, op, x)
    if acc is not None:
        return _add_runtime_bias(bb, op, args, acc, -1)
    x, _, corr = _input_and_correction(bb, op, x, w, [1], None)
    acc = bb.emit(R.matmul(x, R.permute_dims(w), out_dtype="int32"))
    if corr is not None:
        acc = bb.emit(R.subtract(acc, corr))
    if len(args) > 2:
        acc = bb.emit(R.add(acc, args[2]))
    return acc


def linear_kernel(bb, op, x: relax.Expr, epilogue=None,
                  residual: relax.Expr | None = None) -> relax.Expr | None:
    """The accumulator of a qlinear op through backends/tvm/kernels/dense.py, or with
    `epilogue` (kernels/epilogue.py) the epilogue's output; None when the weights are
    not constant or the kernel does not apply."""
    w = constant_array(op.operands[1])
    if w is None:
        return None
    tx = op.operands[0].type
    return dense(bb, x, _storage_range(tx), _zero_point(tx), w, _constant_operand(op, 2),
                 epilogue, residual)


def _storage_range(ty: TensorType) -> tuple[int, int]:
    return ty.quant.storage_min, ty.quant.storage_max


def _constant_operand(op, i: int) -> np.ndarray | None:
    """Operand i when it is a constant (None when absent or computed)."""
    return constant_array(op.operands[i]) if len(op.operands) > i else None


def _add_runtime_bias(bb, op, args, acc: relax.Expr, axis: int) -> relax.Expr:
    """acc plus the bias operand when a kernel could not take it as a constant."""
    if len(args) < 3 or _constant_operand(op, 2) is not None:
        return acc
    rank = len(shape_of(acc))
    return bb.emit(R.add(acc, R.reshape(args[2], channel_shape(rank, axis % rank, -1))))


@relax_lowering("qir.qmatmul", upcast=False)
def qmatmul(op, bb, args, params):
    """(a - zp_a) @ (b - zp_b) in int32: the dense kernel when b is a constant matrix, the
    batched matmul kernel for two activations, else the operands centred in int32 when a
    zero point is not 0."""
    a, b = args
    ta, tb = (v.type for v in op.operands)
    za, zb = _zero_point(ta), _zero_point(tb)
    b_const = constant_array(op.operands[1])
    if b_const is not None and b_const.ndim == 2:
        w = (b_const.astype(np.int64) - zb).T
        acc = dense(bb, a, _storage_range(ta), za, w, None)
    else:
        acc = batch_matmul(bb, a, _storage_range(ta), za, b, _storage_range(tb), zb)
    if acc is not None:
        return acc
    if za or zb:
        a = bb.emit(R.subtract(R.astype(a, "int32"), const(za, "int32")))
        b = bb.emit(R.subtract(R.astype(b, "int32"), const(zb, "int32")))
    a_shape, b_shape = shape_of(a), shape_of(b)
    if (gpu.target_arch() is not None and len(a_shape) >= 2
            and a_shape[:-2] == b_shape[:-2] and a_shape[-1] == b_shape[-2]):
        return _unfused_int_matmul(bb, a, b)
    return R.matmul(a, b, out_dtype="int32")


def _unfused_int_matmul(bb, a: relax.Expr, b: relax.Expr) -> relax.Expr:
    """a @ b in int32 (equal batch dimensions) as a kernel of its own on CUDA: fused
    with its epilogue (requantize, dequantize, scale, a causal mask's where), dlight's
    matmul schedule gave wrong integers on an H200 (a GPT-style model's attention, 57%
    of the outputs), while the same chain split after the matmul was exact."""
    def compute(x, y):
        *batch, _, k = x.shape
        r = te.reduce_axis((0, k), name="k")
        return te.compute((*batch, x.shape[-2], y.shape[-1]), lambda *i: te.sum(
            x[(*i[:-1], r)].astype("int32") * y[(*i[:-2], r, i[-1])].astype("int32"),
            axis=r), name="matmul")

    return bb.emit_te(compute, a, b, primfunc_name_hint="int_matmul",
                      primfunc_attrs={"op_pattern": OP_PATTERN_OPAQUE})
