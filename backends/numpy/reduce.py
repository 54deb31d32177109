"""Reductions, argmax and cumsum. Integer sums keep the tensor's own element type (the
IR's result type), unlike numpy's default promotion to int64."""

from __future__ import annotations

import numpy as np

from backends.numpy.common import result, upcast
from backends.numpy.registry import numpy_impl


def _axes(op, x: np.ndarray) -> tuple[int, ...] | None:
    axes = op.attr("axes")
    return tuple(a % x.ndim for a in axes) if axes else None


_REDUCERS = {"qir.reduce_mean": np.mean, "qir.reduce_sum": np.sum,
             "qir.reduce_max": np.max, "qir.reduce_min": np.min}


def _register_reduce(name: str, fn) -> None:
    @numpy_impl(name)
    def impl(op, x: np.ndarray) -> np.ndarray:
        x = upcast(x)
        kwargs = {"dtype": x.dtype} if fn in (np.sum, np.mean) else {}
        return result(op, fn(x, axis=_axes(op, x), keepdims=op.attr("keepdims"), **kwargs))

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
