"""Shape and data-movement ops. They move stored values unchanged, so the same code
serves float, integer and quantized tensors (quantized pad fills with the quantized
padding value)."""

from __future__ import annotations

import numpy as np

from backends.numpy.common import result, upcast
from backends.numpy.registry import InterpreterError, numpy_impl
from qir.quant import quantize_values


@numpy_impl("qir.reshape")
def reshape(op, x: np.ndarray) -> np.ndarray:
    return x.reshape(op.result.type.shape)


@numpy_impl("qir.permute")
def permute(op, x: np.ndarray) -> np.ndarray:
    return np.transpose(x, op.attr("perm"))


@numpy_impl("qir.broadcast_to")
def broadcast_to(op, x: np.ndarray) -> np.ndarray:
    """A read-only broadcast view (implementations never write into operands)."""
    return np.broadcast_to(x, op.attr("shape"))


@numpy_impl("qir.concat")
def concat(op, *xs: np.ndarray) -> np.ndarray:
    return np.concatenate(xs, axis=op.attr("axis") % xs[0].ndim)


@numpy_impl("qir.split")
def split(op, x: np.ndarray) -> list[np.ndarray]:
    axis = op.attr("axis") % x.ndim
    bounds = np.cumsum(op.attr("sizes"))[:-1]
    return np.split(x, bounds, axis=axis)


@numpy_impl("qir.slice")
def slice_(op, x: np.ndarray) -> np.ndarray:
    """x[start:end:step] along one axis, Python semantics (negative bounds count from
    the end, out-of-range bounds clip)."""
    axis = op.attr("axis") % x.ndim
    index = [slice(None)] * x.ndim
    index[axis] = slice(op.attr("start"), op.attr("end"), op.attr("step"))
    return x[tuple(index)]


def check_indices(what: str, indices: np.ndarray, n: int, axis: int) -> None:
    """Indices into an axis of size n: in [-n, n), else an error naming the first bad
    one."""
    if indices.size and (indices.min() < -n or indices.max() >= n):
        bad = indices[(indices < -n) | (indices >= n)].flat[0]
        raise InterpreterError(f"{what} index {bad} is out of range for axis {axis} of "
                               f"size {n}")


@numpy_impl("qir.gather")
def gather(op, x: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """numpy take: negative indices count from the end; anything else outside the axis
    is an error."""
    axis = op.attr("axis") % x.ndim
    n = x.shape[axis]
    check_indices("gather", indices, n, axis)
    return np.take(x, indices, axis=axis)


@numpy_impl("qir.pad")
def pad(op, x: np.ndarray) -> np.ndarray:
    """Constant padding, all begins then all ends; negative pads crop. The value is
    real: a quantized tensor pads with quantize(value) (per channel for per-axis
    types)."""
    pads = op.attr("pads")
    rank = x.ndim
    crop = tuple(slice(max(0, -pads[i]), x.shape[i] - max(0, -pads[rank + i]))
                 for i in range(rank))
    x = x[crop]
    out_ty = op.result.type
    if out_ty.is_quantized:
        fill = np.broadcast_to(quantize_values(np.float32(op.attr("value")), out_ty),
                               out_ty.shape)
    else:
        fill = np.full(out_ty.shape, op.attr("value"), dtype=out_ty.dtype)
    out = np.array(fill, dtype=out_ty.dtype)
    place = tuple(slice(max(0, pads[i]), max(0, pads[i]) + x.shape[i]) for i in range(rank))
    out[place] = x
    return out


def _tri(fn):
    def impl(op, x: np.ndarray) -> np.ndarray:
        return result(op, fn(x, k=op.attr("diagonal")))

    return impl


numpy_impl("qir.tril")(_tri(np.tril))
numpy_impl("qir.triu")(_tri(np.triu))


_SCATTER_UFUNCS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


@numpy_impl("qir.scatter")
def scatter(op, x: np.ndarray, indices: np.ndarray, updates: np.ndarray) -> np.ndarray:
    """ScatterElements in row-major order of the indices: a reduction applies each update
    in turn (ufunc.at is unbuffered), a plain scatter keeps the last update to a place.
    Indices outside the axis are an error."""
    axis = op.attr("axis") % x.ndim
    n = x.shape[axis]
    check_indices("scatter", indices, n, axis)
    idx = np.where(indices < 0, indices + n, indices).astype(np.int64)
    where = list(np.indices(indices.shape, sparse=True))
    where[axis] = idx
    where = tuple(np.broadcast_arrays(*where))
    out = upcast(x).copy()
    updates = upcast(updates)
    reduce = op.attr("reduce")
    if reduce == "none":
        flat = np.ravel_multi_index(where, x.shape).ravel()
        # The last update to each place wins: keep each place's last occurrence.
        _, last = np.unique(flat[::-1], return_index=True)
        keep = flat.size - 1 - last
        out.reshape(-1)[flat[keep]] = updates.reshape(-1)[keep]
    else:
        _SCATTER_UFUNCS[reduce].at(out, where, updates)
    return result(op, out)
