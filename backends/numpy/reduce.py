"""Reductions, argmax and cumsum. Integer sums keep the tensor's own element type (the
IR's result type), unlike numpy's default promotion to int64; float sums and means
accumulate in sequential order (backends/numpy/floatmath.py)."""

from __future__ import annotations

import numpy as np

from backends.numpy.common import result, storage_as_float, upcast
from backends.numpy.floatmath import seq_mean, seq_sum
from backends.numpy.registry import numpy_impl


def _axes(op, x: np.ndarray) -> tuple[int, ...] | None:
    axes = op.attr("axes")
    return tuple(a % x.ndim for a in axes) if axes else None


def _mean(x: np.ndarray, axis, keepdims: bool) -> np.ndarray:
    if x.dtype.kind != "f":
        return np.mean(x, axis=axis, keepdims=keepdims, dtype=x.dtype)
    return seq_mean(x, axis, keepdims)


_REDUCERS = {"qir.reduce_mean": _mean, "qir.reduce_sum": seq_sum,
             "qir.reduce_prod": lambda x, axis, keepdims: seq_sum(x, axis, keepdims,
                                                                  np.multiply),
             "qir.reduce_max": lambda x, axis, keepdims: np.max(x, axis, keepdims=keepdims),
             "qir.reduce_min": lambda x, axis, keepdims: np.min(x, axis, keepdims=keepdims)}


def _register_reduce(name: str, fn) -> None:
    @numpy_impl(name)
    def impl(op, x: np.ndarray) -> np.ndarray:
        x = upcast(x)
        return result(op, fn(x, _axes(op, x), op.attr("keepdims")))

    impl.__name__ = name.split(".")[-1]


for _name, _fn in _REDUCERS.items():
    _register_reduce(_name, _fn)


@numpy_impl("qir.argmax")
def argmax(op, x: np.ndarray) -> np.ndarray:
    """Index of the first maximum (NaN counts as the maximum, as in torch)."""
    x = upcast(x).reshape(x.shape or (1,))  # a rank-0 tensor is its own axis 0
    y = np.argmax(x, axis=op.attr("axis") % x.ndim, keepdims=op.attr("keepdims"))
    return result(op, np.reshape(y, op.result.type.shape))


@numpy_impl("qir.cumsum")
def cumsum(op, x: np.ndarray) -> np.ndarray:
    shape = x.shape
    x = upcast(x).reshape(shape or (1,))
    return result(op, np.cumsum(x, axis=op.attr("axis") % x.ndim, dtype=x.dtype).reshape(shape))


def stable_argsort(x: np.ndarray, axis: int, descending: bool) -> np.ndarray:
    """Stable argsort; descending keeps equal values in their order (a stable ascending
    sort of the reversed axis, reversed back). NaN sorts above every number."""
    if not descending:
        return np.argsort(x, axis=axis, kind="stable")
    n = x.shape[axis]
    rev = np.flip(x, axis=axis)
    return n - 1 - np.flip(np.argsort(rev, axis=axis, kind="stable"), axis=axis)


@numpy_impl("qir.sort")
def sort(op, x: np.ndarray) -> list[np.ndarray]:
    axis = op.attr("axis") % x.ndim
    idx = stable_argsort(storage_as_float(x), axis, op.attr("descending"))
    return [np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)]


@numpy_impl("qir.topk")
def topk(op, x: np.ndarray) -> list[np.ndarray]:
    axis = op.attr("axis") % x.ndim
    idx = stable_argsort(storage_as_float(x), axis, op.attr("largest"))
    idx = np.take(idx, np.arange(op.attr("k")), axis=axis)
    return [np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)]
