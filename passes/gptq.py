"""Group-wise symmetric weight quantization: round-to-nearest and GPTQ (Frantar et al.
2023, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers"). Pure numpy, no IR; used by the weight-only pass.

Weights are [N, K] (output rows, input columns); groups are `group` consecutive columns
of one row (group = K: per output channel). Every group's scale is max|w| / qmax (1.0
for an all-zero group), rounded to float32, and q = clip(rint(w / scale), -qmax, qmax)
with the division in float32 — the qir.quantize rule, so a dequantize of the result
gives exactly what this module computed.

Weights can also round onto a codebook (`Grid` with levels, e.g. NF4): the scale is
max|w| over the largest |level|, and each weight takes the index of the level nearest
w / scale (qir.quant.codebook_indices, the codebook quantize rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """What weights round onto: the integers -qmax..qmax, or a codebook's `levels`."""

    qmax: int = 0
    levels: tuple[float, ...] | None = None

    @property
    def top(self) -> float:
        """The largest |value| on the grid: scale = max|w| / top."""
        if self.levels is None:
            return self.qmax
        return max(abs(self.levels[0]), abs(self.levels[-1]))

    def round(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(codes as int64, the grid values they stand for as float64) of float32 v."""
        if self.levels is None:
            q = np.clip(np.rint(v), -self.qmax, self.qmax)
            return q.astype(np.int64), q.astype(np.float64)
        from qir.quant import codebook_indices

        idx = codebook_indices(v, self.levels)
        return idx, self.values(idx)

    def values(self, codes: np.ndarray) -> np.ndarray:
        """The grid values (float64) codes stand for."""
        if self.levels is None:
            return codes.astype(np.float64)
        return np.asarray(self.levels, np.float64)[codes]


def as_grid(qmax) -> Grid:
    return qmax if isinstance(qmax, Grid) else Grid(int(qmax))


def group_scales(w: np.ndarray, group: int, qmax) -> np.ndarray:
    """[N, ceil(K/group)] float32 scales: max |w| of each group over qmax (a Grid: its
    top) (a shorter last group when `group` does not divide K: padded with zeros, which
    change no maximum)."""
    top = as_grid(qmax).top
    n, k = w.shape
    groups = -(-k // group)
    a = np.zeros((n, groups * group))
    a[:, :k] = np.abs(w.astype(np.float64))
    s = (a.reshape(n, groups, group).max(axis=2) / top).astype(np.float32)
    s[s == 0] = 1.0
    return s


def quantize_groups(w: np.ndarray, scales: np.ndarray, group: int, qmax) -> np.ndarray:
    """Codes of w [N, K] with per-group scales [N, ceil(K/group)]."""
    s = np.repeat(scales.astype(np.float32), group, axis=1)[:, :w.shape[1]]
    return as_grid(qmax).round(w.astype(np.float32) / s)[0]


def round_to_nearest(w: np.ndarray, group: int, qmax) -> tuple[np.ndarray, np.ndarray]:
    """(integers [N, K], scales [N, ceil(K/group)])."""
    s = group_scales(w, group, qmax)
    return quantize_groups(w, s, group, qmax), s


def gptq(w: np.ndarray, hessian: np.ndarray, group: int, qmax, *, damp: float = 0.01,
         block: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """GPTQ: quantize columns left to right, spreading each column's rounding error over
    the columns not yet quantized through the inverse Hessian H = 2 XᵀX / M of the
    layer's inputs X [M, K] (`hessian`), dampened by `damp` times its mean diagonal.
    A group's scale is taken from the error-updated weights when the first column of the
    group is reached. Returns (integers [N, K], scales [N, ceil(K/group)])."""
    grid = as_grid(qmax)
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
                scales[:, g] = group_scales(src, width, grid)[:, 0]
            s = np.float64(scales[:, col // group])
            q[:, col], qi = grid.round(w1[:, i].astype(np.float32) / s.astype(np.float32))
            e = (w1[:, i] - qi * s) / hb[i, i]
            w1[:, i:] -= np.outer(e, hb[i, i:])
            err[:, i] = e
        w[:, i2:] -= err @ hinv[i1:i2, i2:]
    return q, scales
