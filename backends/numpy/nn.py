"""Normalisation (batch, layer, group norm; biased variance), embedding and scaled
dot-product attention, in float with PyTorch's formulas. Means and attention's dot
products accumulate in sequential order (backends/numpy/floatmath.py), so that every
backend gets the same bits."""

from __future__ import annotations

import math

import numpy as np

from backends.numpy.common import result, upcast
from backends.numpy.elementwise import softmax
from backends.numpy.floatmath import seq_matmul, seq_mean
from backends.numpy.registry import InterpreterError, numpy_impl


def _channel_shape(rank: int, axis: int) -> tuple[int, ...]:
    """Shape that broadcasts a per-channel vector along `axis` of a rank-`rank` tensor."""
    shape = [1] * rank
    shape[axis] = -1
    return tuple(shape)


@numpy_impl("qir.batch_norm")
def batch_norm(op, x, mean, var, weight=None, bias=None) -> np.ndarray:
    """Inference batch norm as torch's CPU kernel computes it: x * alpha + beta with
    alpha = weight / sqrt(var + eps), beta = bias - mean * alpha."""
    x, mean, var = upcast(x), upcast(mean), upcast(var)
    alpha = 1 / np.sqrt(var + x.dtype.type(op.attr("eps")))
    if weight is not None:
        alpha = alpha * upcast(weight)
    beta = -mean * alpha
    if bias is not None:
        beta = beta + upcast(bias)
    shape = _channel_shape(x.ndim, op.attr("axis") % x.ndim)
    return result(op, x * alpha.reshape(shape) + beta.reshape(shape))


def _normalize(x: np.ndarray, axes: tuple[int, ...], eps: float) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) over `axes`, biased variance."""
    mean = seq_mean(x, axes, keepdims=True)
    centered = x - mean
    var = seq_mean(centered * centered, axes, keepdims=True)
    return centered * (1 / np.sqrt(var + x.dtype.type(eps)))


@numpy_impl("qir.layer_norm")
def layer_norm(op, x, weight=None, bias=None) -> np.ndarray:
    x = upcast(x)
    n = op.attr("normalized_ndim")
    y = _normalize(x, tuple(range(x.ndim - n, x.ndim)), op.attr("eps"))
    if weight is not None:
        y = y * upcast(weight)
    if bias is not None:
        y = y + upcast(bias)
    return result(op, y)


@numpy_impl("qir.group_norm")
def group_norm(op, x, weight=None, bias=None) -> np.ndarray:
    x = upcast(x)
    g = op.attr("groups")
    grouped = x.reshape((x.shape[0], g, -1))
    y = _normalize(grouped, (2,), op.attr("eps")).reshape(x.shape)
    shape = _channel_shape(x.ndim, 1)
    if weight is not None:
        y = y * upcast(weight).reshape(shape)
    if bias is not None:
        y = y + upcast(bias).reshape(shape)
    return result(op, y)


@numpy_impl("qir.embedding")
def embedding(op, weight: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Rows of the table; an index outside [0, rows) is an error, as in torch."""
    rows = weight.shape[0]
    if indices.size and (indices.min() < 0 or indices.max() >= rows):
        bad = indices[(indices < 0) | (indices >= rows)].flat[0]
        raise InterpreterError(f"embedding index {bad} is out of range for a table of "
                               f"{rows} rows")
    return result(op, np.take(weight, indices, axis=0))


@numpy_impl("qir.scaled_dot_product_attention")
def sdpa(op, q, k, v, mask=None) -> np.ndarray:
    """softmax(q @ k^T * scale + mask) @ v. A bool mask keeps True positions (the others
    get -inf before the softmax); a float mask is added; is_causal keeps the lower
    triangle (top-left aligned, like torch). Rows with nothing kept give 0, as torch's
    safe softmax does."""
    q, k, v = upcast(q), upcast(k), upcast(v)
    scale = op.attr("scale")
    if scale is None:
        scale = 1 / math.sqrt(q.shape[-1])
    scores = seq_matmul(q, np.swapaxes(k, -1, -2)) * q.dtype.type(scale)
    neg_inf = q.dtype.type(-np.inf)
    if mask is not None:
        if mask.dtype == np.bool_:
            scores = np.where(mask, scores, neg_inf)
        else:
            scores = scores + upcast(mask)
    if op.attr("is_causal"):
        keep = np.tril(np.ones(scores.shape[-2:], dtype=bool))
        scores = np.where(keep, scores, neg_inf)
    with np.errstate(invalid="ignore", over="ignore"):
        return result(op, seq_matmul(softmax(scores, -1), v))
