"""qir's reproducible float32 arithmetic on numpy arrays (qir/floatmath.py): the shared
formulas for exp, tanh, erf and friends, and sums in the sequential order every backend
uses. float64 tensors keep numpy's own functions (see docs/semantics.md)."""

from __future__ import annotations

import numpy as np

from qir import floatmath


class NumpyArith:
    """floatmath.Arith on float32 arrays."""

    @staticmethod
    def c(value: float) -> np.float32:
        return np.float32(value)

    floor = staticmethod(np.floor)
    where = staticmethod(np.where)
    isnan = staticmethod(np.isnan)
    abs = staticmethod(np.abs)

    @staticmethod
    def keep(x: np.ndarray) -> np.ndarray:
        return x

    @staticmethod
    def pow2(k: np.ndarray) -> np.ndarray:
        bits = floatmath.pow2_bits(np.asarray(k).astype(np.int32))
        return np.asarray(bits, dtype=np.int32).view(np.float32)


ARITH = NumpyArith()


def unary(formula, x: np.ndarray, fallback, **kwargs) -> np.ndarray:
    """`formula(x)` for float32 `x`; float64 goes to numpy's `fallback`."""
    if x.dtype != np.float32:
        return fallback(x)
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        return np.asarray(formula(x, ARITH, **kwargs), dtype=np.float32)


def seq_sum(x: np.ndarray, axes, keepdims: bool = False, op=np.add) -> np.ndarray:
    """The sum over `axes` (None: all) accumulated one element at a time, in row-major
    order over the reduced axes: what TVM's reduction loops compute. np.sum's pairwise
    order is more accurate but no other backend follows it. `op=np.multiply`: the
    product, likewise."""
    axes = tuple(range(x.ndim)) if axes is None else tuple(a % x.ndim for a in axes)
    if not axes:
        return x.copy()
    kept = [a for a in range(x.ndim) if a not in axes]
    moved = np.transpose(x, kept + list(axes))
    n = int(np.prod([x.shape[a] for a in axes]))
    flat = moved.reshape([x.shape[a] for a in kept] + [n])
    if n == 0:
        total = np.full(flat.shape[:-1], op.identity, dtype=x.dtype)
    elif x.dtype.kind == "f":
        total = op.accumulate(flat, axis=-1, dtype=x.dtype)[..., -1]
    else:  # integers: any order gives the same (wrapping) result
        total = op.reduce(flat, axis=-1, dtype=x.dtype)
    if keepdims:
        total = np.expand_dims(total, axes)
    return np.asarray(total, dtype=x.dtype)


def seq_mean(x: np.ndarray, axes, keepdims: bool = False) -> np.ndarray:
    """seq_sum / the number of elements summed."""
    axes_t = tuple(range(x.ndim)) if axes is None else tuple(a % x.ndim for a in axes)
    n = int(np.prod([x.shape[a] for a in axes_t]))
    return np.asarray(seq_sum(x, axes_t, keepdims) / x.dtype.type(n), dtype=x.dtype)


def seq_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b (broadcast over leading axes) with each dot product accumulated in order
    k = 0, 1, ...: acc = acc + a[..., i, k] * b[..., k, j], every product rounded. Rows
    go in chunks whose accumulator stays in cache."""
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    acc = np.zeros(shape, dtype=np.result_type(a, b))
    per_row = max(1, int(np.prod(shape[:-2], dtype=np.int64)) * shape[-1])
    chunk = max(1, (1 << 16) // per_row)
    for i in range(0, shape[-2], chunk):
        part = acc[..., i:i + chunk, :]
        rows = a[..., i:i + chunk, :]
        product = np.empty_like(part)
        for k in range(a.shape[-1]):
            np.multiply(rows[..., k:k + 1], b[..., k:k + 1, :], out=product)
            part += product
    return acc
