"""Numpy implementations of the ops of qir/ops/methods.py (docs/methods.md), following
docs/semantics.md exactly.

qir.dynamic_qlinear  x_f32 = float32(x); a = max|x_f32| over the whole tensor
                     (per-tensor) or over the last axis (per-token), in float32;
                     s_x = a / 127 (float32 division), 1 where a == 0;
                     q = clip(rint(x_f32 / s_x), -127, 127) (float32 division, ties to
                     even); acc[..., n] = sum_k q[..., k] * w[n, k], exact integers, must
                     fit int32; y = float32(acc) * float32(s_x * s_w[n]) (the product of
                     the two float32 scales rounded to float32), + bias, all float32.
"""

from __future__ import annotations

import numpy as np

from backends.numpy.registry import InterpreterError, numpy_impl
from qir.quant import quant_params

F32 = np.float32


def dynamic_scale(x32: np.ndarray, per_token: bool) -> np.ndarray:
    """float32 activation scales: max|x| / 127 per tensor (shape ()) or per row
    (shape [..., 1]); 1 where the maximum is 0."""
    a = np.abs(x32)
    amax = (np.max(a, axis=-1, keepdims=True, initial=F32(0)) if per_token
            else np.max(a, initial=F32(0)).reshape(()))
    s = (amax.astype(F32) / F32(127)).astype(F32)
    return np.where(s == 0, F32(1), s).astype(F32)


@numpy_impl("qir.dynamic_qlinear")
def dynamic_qlinear(op, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None):
    x32 = np.asarray(x).astype(F32, copy=False)
    k = x32.shape[-1]
    if k * 127 * 127 > 2**31 - 1:
        raise InterpreterError(f"dynamic_qlinear: K={k} can overflow the int32 accumulator")
    s_x = dynamic_scale(x32, op.attr("granularity") == "per-token")
    with np.errstate(invalid="ignore"):
        q = np.clip(np.rint(x32 / s_x), -127, 127)
    acc = np.rint(q.astype(np.float64) @ w.astype(np.float64).T)  # exact: < 2^53
    wt = op.operands[1].type
    s_w, _ = quant_params(wt.quant, wt.shape)
    m = (s_x * s_w.reshape(-1)).astype(F32)
    y = acc.astype(F32) * m
    if b is not None:
        y = y + b.astype(F32)
    return y.astype(F32)
