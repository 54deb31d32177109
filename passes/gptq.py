"""Group-wise symmetric weight quantization: round-to-nearest and GPTQ (Frantar et al.
2023, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers"). Pure numpy, no IR; used by the weight-only pass.

Weights are [N, K] (output rows, input columns); groups are `group` consecutive columns
of one row (group = K: per output channel). Every group's scale is max|w| / qmax (1.0
for an all-zero group), rounded to float32, and q = clip(rint(w / scale), -qmax, qmax)
with the division in float32 — the qir.quantize rule, so a dequantize of the result
gives exactly what this module computed.
"""

from __future__ import annotations

import numpy as np


def group_scales(w: np.ndarray, group: int, qmax: int) -> np.ndarray:
    """[N, ceil(K/group)] float32 scales: max |w| of each group over qmax (a shorter last
    group when `group` does not divide K: padded with zeros, which change no maximum)."""
    n, k = w.shape
    groups = -(-k // group)
    a = np.zeros((n, groups * group))
    a[:, :k] = np.abs(w.astype(np.float64))
    s = (a.reshape(n, groups, group).max(axis=2) / qmax).astype(np.float32)
    s[s == 0] = 1.0
    return s


def quantize_groups(w: np.ndarray, scales: np.ndarray, group: int, qmax: int
                    ) -> np.ndarray:
    """Integers of w [N, K] with per-group scales [N, ceil(K/group)]."""
    s = np.repeat(scales.astype(np.float32), group, axis=1)[:, :w.shape[1]]
    return np.clip(np.rint(w.astype(np.float32) / s), -qmax, qmax).astype(np.int64)


def round_to_nearest(w: np.ndarray, group: int, qmax: int) -> tuple[np.ndarray, np.ndarray]:
    """(integers [N, K], scales [N, ceil(K/group)])."""
    s = group_scales(w, group, qmax)
    return quantize_groups(w, s, group, qmax), s


def gptq(w: np.ndarray, hessian: np.ndarray, group: int, qmax: int, *, damp: float = 0.01,
         block: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """GPTQ: quantize columns left to right, spreading each column's rounding error over
    the columns not yet quantized through the inverse Hessian H = 2 XᵀX / M of the
    layer's inputs X [M, K] (`hessian`), dampened by `damp` times its mean diagonal.
    A group's scale is taken from the error-updated weights when the first column of the
    group is reached. Returns (integers [N, K], scales [N, ceil(K/group)])."""
    w = w.astype(np.float64).copy()
    n, k = w.shape
    h = hessian.astype(np.float64).copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h[np.diag_indices(k)] += damp * float(np.mean(np.diag(h)))
    # Upper Cholesky factor of H^-1: row i holds the update weights of column i.
    hinv = np.linalg.cholesky(np.linalg.inv(h)).T
    block = group if group < k else min(block, k)
    q = np.zeros((n, k), dtype=np.int64)
    scales = np.zeros((n, -(-k // group)), dtype=np.float32)
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1 = w[:, i1:i2].copy()
        err = np.zeros_like(w1)
        hb = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if col % group == 0:
                g = col // group
                width = min(group, k - col)
                src = np.concatenate([w1[:, i:], w[:, i2:]], axis=1)[:, :width]
                scales[:, g] = group_scales(src, width, qmax)[:, 0]
            s = np.float64(scales[:, col // group])
            qi = np.clip(np.rint(w1[:, i].astype(np.float32) / s.astype(np.float32)),
                         -qmax, qmax)
            q[:, col] = qi.astype(np.int64)
            e = (w1[:, i] - qi * s) / hb[i, i]
            w1[:, i:] -= np.outer(e, hb[i, i:])
            err[:, i] = e
        w[:, i2:] -= err @ hinv[i1:i2, i2:]
    return q, scales
