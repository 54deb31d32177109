"""Parameters, constants and data movement. These move stored values unchanged, so one
lowering serves float, integer and quantized tensors (the stored dtype, no upcast)."""

from __future__ import annotations

import numpy as np
from tvm import relax

from qir.quant import quantize_values
from backends.tvm.common import R, const, dtype_of, shape_of, to_float32, tuple_items, tvm_dtype
from backends.tvm.registry import relax_lowering, unsupported


@relax_lowering("qir.param", upcast=False)
def param(op, bb, args, params):
    name = op.attr("name")
    if name not in params:
        raise unsupported(op, f"parameter '{name}' has no data: load the module with "
                              "qir.load() so its .npz sidecar is read")
    return const(params[name], tvm_dtype(op.result.type))


@relax_lowering("qir.constant", upcast=False)
def constant(op, bb, args, params):
    return const(op.attr("value"), tvm_dtype(op.result.type))


@relax_lowering("qir.reshape", upcast=False)
def reshape(op, bb, args, params):
    return R.reshape(args[0], op.result.type.shape)


@relax_lowering("qir.permute", upcast=False)
def permute(op, bb, args, params):
    return R.permute_dims(args[0], op.attr("perm"))


@relax_lowering("qir.broadcast_to", upcast=False)
def broadcast_to(op, bb, args, params):
    return R.broadcast_to(args[0], op.result.type.shape)


@relax_lowering("qir.concat", upcast=False)
def concat(op, bb, args, params):
    if len(args) == 1:
        return args[0]
    return R.concat(args, axis=op.attr("axis") % op.result.type.rank)


@relax_lowering("qir.split", upcast=False)
def split(op, bb, args, params):
    sizes = op.attr("sizes")
    if len(sizes) == 1:
        return [args[0]]
    bounds = [int(b) for b in np.cumsum(sizes)[:-1]]
    axis = op.attr("axis") % op.operands[0].type.rank
    parts = bb.emit(R.split(args[0], bounds, axis=axis))
    return tuple_items(bb, parts, len(sizes))


def slice_axis(bb, x: relax.Expr, axis: int, start: int, end: int, step: int = 1):
    """x[start:end:step] along `axis` (already normalised, step >= 1)."""
    return bb.emit(R.strided_slice(x, axes=[axis], begin=[start], end=[end], strides=[step]))


@relax_lowering("qir.slice", upcast=False)
def slice_(op, bb, args, params):
    x = op.operands[0].type
    axis = op.attr("axis") % x.rank
    start, end, step = slice(op.attr("start"), op.attr("end"),
                             op.attr("step")).indices(x.shape[axis])
    if op.result.type.shape[axis] == 0:
        raise unsupported(op, "an empty slice is not supported by the TVM backend")
    return slice_axis(bb, args[0], axis, start, end, step)


@relax_lowering("qir.gather", upcast=False)
def gather(op, bb, args, params):
    """numpy take; "wrap" makes negative indices count from the end."""
    axis = op.attr("axis") % op.operands[0].type.rank
    return R.take(args[0], args[1], axis=axis, mode="wrap")


def pad_or_crop(bb, x: relax.Expr, before, after, fill) -> relax.Expr:
    """Constant padding per dim (negative amounts crop); `fill` a scalar."""
    shape = shape_of(x)
    if any(b < 0 or a < 0 for b, a in zip(before, after)):
        for axis, (b, a) in enumerate(zip(before, after)):
            if b < 0 or a < 0:
                x = slice_axis(bb, x, axis, max(0, -b), shape[axis] - max(0, -a))
        before = [max(0, b) for b in before]
        after = [max(0, a) for a in after]
    if not any(before) and not any(after):
        return x
    widths = [int(v) for pair in zip(before, after) for v in pair]
    return bb.emit(R.nn.pad(x, widths, pad_value=fill))


@relax_lowering("qir.pad", upcast=False)
def pad(op, bb, args, params):
    """Constant padding, all begins then all ends; a quantized tensor pads with
    quantize(value) (per channel for per-axis types: padded with 0, then the border is
    filled by a select)."""
    pads, rank = op.attr("pads"), op.result.type.rank
    before, after = pads[:rank], pads[rank:]
    out_ty = op.result.type
    if not out_ty.is_quantized:
        return pad_or_crop(bb, args[0], before, after, float(op.attr("value")))
    fill = np.broadcast_to(quantize_values(np.float32(op.attr("value")), out_ty),
                           out_ty.shape)
    x = args[0]
    if out_ty.quant.is_fp8:  # padded in float32, rounded back (exactly) by the driver
        fill = fill.astype(np.float32)
        x = to_float32(bb, x)
    flat = np.unique(fill)
    if flat.size == 1:
        return pad_or_crop(bb, x, before, after, flat[0].item())
    padded = pad_or_crop(bb, x, before, after, 0)
    inside = np.zeros(out_ty.shape, dtype=bool)
    cropped = [d - max(0, -b) - max(0, -a) for d, b, a in
               zip(op.operands[0].type.shape, before, after)]
    inside[tuple(slice(max(0, b), max(0, b) + n) for b, n in zip(before, cropped))] = True
    dtype = dtype_of(padded)
    return R.where(const(inside, "bool"), padded, const(fill, dtype))


@relax_lowering("qir.tril", upcast=False)
def tril(op, bb, args, params):
    return R.tril(args[0], op.attr("diagonal"))


@relax_lowering("qir.triu", upcast=False)
def triu(op, bb, args, params):
    return R.triu(args[0], op.attr("diagonal"))


@relax_lowering("qir.where", upcast=False)
def where(op, bb, args, params):
    return R.where(*args)


@relax_lowering("qir.observe", upcast=False)
def observe(op, bb, args, params):
    """Identity (calibration marks are no-ops in compiled code)."""
    return args[0]


@relax_lowering("qir.scatter")
def scatter(op, bb, args, params):
    """TVM's scatter_elements: one serial loop over the axis per position of the other
    dims, so each place sees its updates in row-major order, as the interpreter applies
    them. Indices are clipped to the axis first: an out-of-range index (an error in the
    interpreter) must not write outside the buffer."""
    axis = op.attr("axis") % op.result.type.rank
    n = op.result.type.shape[axis]
    idx = bb.emit(R.clip(args[1], -n, n - 1))
    reduce = {"none": "update"}.get(op.attr("reduce"), op.attr("reduce"))
    return R.scatter_elements(args[0], idx, args[2], axis=axis, reduction=reduce)
