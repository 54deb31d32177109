"""Single-rounding rescales (requantize, qadd) as one TE stage each, in the cheapest
exact form for SIMD units without 64-bit vector shifts and multiplies (AVX2).

The semantics (docs/semantics.md, backends/numpy/quant.py): y = (p + 2^(s-1)) >> s in
int64, p = (x - zp_x) * M, then zp_y added and clamped. Written as Relax ops, every step
is a separate int64 tensor; worse, a per-channel M and s loaded from int64 buffers leave
LLVM a full 64 x 64-bit multiply and a variable 64-bit arithmetic shift, neither of
which AVX2 has. Here:

- M (0 <= M < 2^31) is an int32 table widened at use: with x an int32, the product is a
  32 x 32 -> 64-bit signed multiply (`vpmuldq`);
- when every shift s is at least 32, (p + r) >> s = ((p + r) >> 32) >> (s - 32): the
  first is taking the high halves, the second an int32 shift by a per-lane amount
  (`vpsravd`). Both are floor divisions by powers of two, so their composition is exact;
- the clamp comes before adding zp_y (to [lo - zp_y, hi - zp_y]), so the rest stays in
  int32 without overflowing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import relax, te
from tvm import tirx as tir

from backends.tvm.common import const, shape_of

I32, I64 = "int32", "int64"


class _Table:
    """A per-channel int constant (a te tensor indexed by the channel axis), or a scalar
    immediate when it has one value."""

    def __init__(self, values: np.ndarray, dtype: str):
        values = np.asarray(values).reshape(-1)
        self.dtype = dtype
        self.scalar = int(values[0]) if np.all(values == values[0]) else None
        self.values = values

    def relax_arg(self) -> list[relax.Expr]:
        return [] if self.scalar is not None else [const(self.values, self.dtype)]

    def at(self, tensor, channel) -> tir.PrimExpr:
        """The value for `channel` (read from `tensor` unless it is a scalar)."""
        if self.scalar is not None:
            return tir.const(self.scalar, self.dtype)
        return tensor[channel]


def _narrow(s: np.ndarray) -> bool:
    """Whether every shift is at least 32: the shift then finishes in int32."""
    return int(np.min(s)) >= 32


def _round_shift_clamp(v: tir.PrimExpr, narrow: bool, shift: tir.PrimExpr, zp_out: int,
                       lo: int, hi: int, out_dtype: str) -> tir.PrimExpr:
    """clamp((v >> s) + zp_out, lo, hi) as out_dtype, for int64 v (the rounding term
    already added); `shift` is s, or s - 32 when `narrow`."""
    if narrow:
        y = tir.shift_right(tir.Cast(I32, tir.shift_right(v, tir.const(32, I64))), shift)
    else:
        y = tir.shift_right(v, shift)
    dtype = I32 if narrow else I64
    if narrow:  # y is an int32 already: bounds beyond int32 change nothing
        lo, hi = max(lo, -(2**31) + zp_out), min(hi, 2**31 - 1 + zp_out)
    y = tir.min(tir.max(y, tir.const(lo - zp_out, dtype)), tir.const(hi - zp_out, dtype))
    if zp_out:
        y = y + tir.const(zp_out, dtype)
    return tir.Cast(out_dtype, y)


@dataclass(frozen=True)
class Rescale:
    """One requantize's arithmetic as a TE expression builder, shared by the requantize
    kernel below and the epilogues of the integer kernels (backends/tvm/kernels):
    clamp(zp_out + round((x - zp_in) * M * 2^(e - 31)), lo, hi) with single rounding, M
    and e scalars or one per channel."""

    zp_in: int
    multiplier: tuple[int, ...]
    shift: tuple[int, ...]
    zp_out: int
    lo: int
    hi: int
    out_dtype: str

    @staticmethod
    def of(zp_in: int, multiplier, shift, zp_out: int, lo: int, hi: int,
           out_dtype: str) -> Rescale:
        m = tuple(int(v) for v in np.asarray(multiplier, dtype=np.int64).reshape(-1))
        e = tuple(int(v) for v in np.asarray(shift, dtype=np.int64).reshape(-1))
        return Rescale(int(zp_in), m, e, int(zp_out), int(lo), int(hi), out_dtype)

    @property
    def narrow(self) -> bool:
        """Whether every shift is at least 32 (the shift then finishes in int32)."""
        return _narrow(31 - np.asarray(self.shift, dtype=np.int64))

    def _tables(self) -> list[_Table]:
        s = 31 - np.asarray(self.shift, dtype=np.int64)
        narrow = self.narrow
        return [_Table(np.asarray(self.multiplier, np.int64), I32),
                _Table(np.left_shift(np.int64(1), s - 1), I64),
                _Table(s - 32 if narrow else s, I32 if narrow else I64)]

    def relax_args(self) -> list[relax.Expr]:
        """The per-channel tables a kernel takes as arguments (none when per-tensor)."""
        return [a for t in self._tables() for a in t.relax_arg()]

    def placeholders(self, prefix: str = "rq") -> list[te.Tensor]:
        """TE placeholders for `relax_args`, in the same order."""
        return [te.placeholder((t.values.size,), t.dtype, name=f"{prefix}_{i}")
                for i, t in enumerate(self._tables()) if t.scalar is None]

    def apply(self, x: tir.PrimExpr, channel: tir.PrimExpr | None,
              tensors: list[te.Tensor]) -> tir.PrimExpr:
        """The rescaled value of integer x (its tables read at `channel`)."""
        tables = self._tables()
        it = iter(tensors)
        m_c, r_c, s_c = (t.at(next(it) if t.scalar is None else None, channel)
                         for t in tables)
        xv = x.astype(I64)
        if self.zp_in:
            xv = xv - tir.const(self.zp_in, I64)
        return _round_shift_clamp(xv * m_c.astype(I64) + r_c, self.narrow, s_c,
                                  self.zp_out, self.lo, self.hi, self.out_dtype)


@dataclass(frozen=True)
class Add:
    """qadd's arithmetic as a TE expression builder: ((a - zp_a) m_a 2^(n - n_a) +
    (b - zp_b) m_b 2^(n - n_b) + 2^(n-1)) >> n, n = max(n_a, n_b), then zp_out and the
    clamp."""

    zp_a: int
    zp_b: int
    m_a: int
    m_b: int
    n_a: int
    n_b: int
    zp_out: int
    lo: int
    hi: int
    out_dtype: str
    span: int = 2**32  # a bound on |a - zp_a| and |b - zp_b|

    def apply(self, a: tir.PrimExpr, b: tir.PrimExpr) -> tir.PrimExpr:
        n = self.shift()
        narrow = _narrow(np.asarray([n]))
        shift = tir.const(n - 32, I32) if narrow else tir.const(n, I64)

        def term(v, zp, m, k):
            v = v.astype(I64)
            if zp:
                v = v - tir.const(zp, I64)
            v = v * tir.const(m, I64)
            return tir.shift_left(v, tir.const(n - k, I64)) if n - k else v

        v = term(a, self.zp_a, self.m_a, self.n_a) + term(b, self.zp_b, self.m_b, self.n_b)
        return _round_shift_clamp(v + tir.const(1 << (n - 1), I64), narrow, shift,
                                  self.zp_out, self.lo, self.hi, self.out_dtype)

    def shift(self) -> int:
        """The shift n of the one rounding. The terms' n is max(n_a, n_b); below 32 it is
        raised to 32, both terms shifted left by the difference, when no term can then
        leave int64: floor((v + 2^(n-1)) / 2^n) is unchanged by scaling v and 2^n alike,
        and from 32 on the shift finishes in int32 (no 64-bit vector shift or clamp,
        which AVX2 lacks)."""
        n = max(self.n_a, self.n_b)
        if n >= 32:
            return n
        reach = self.span * (self.m_a * 2 ** (32 - self.n_a) + self.m_b * 2 ** (32 - self.n_b))
        return 32 if reach + 2**31 < 2**62 else n


def requantize(bb: relax.BlockBuilder, x: relax.Expr, rescale: Rescale,
               axis: int | None) -> relax.Expr:
    """The requantize kernel: `rescale` elementwise, its tables along `axis`."""

    def compute(xt, *tensors):
        return te.compute(shape_of(x), lambda *i: rescale.apply(
            xt(*i), i[axis] if axis is not None else None, list(tensors)),
            name="requantize")

    return bb.emit_te(compute, x, *rescale.relax_args(), primfunc_name_hint="requantize")


def add(bb: relax.BlockBuilder, a: relax.Expr, b: relax.Expr, spec: Add) -> relax.Expr:
    """The qadd kernel (a and b of one shape: the lowering broadcasts first)."""
    return bb.emit_te(lambda at, bt: te.compute(
        shape_of(a), lambda *i: spec.apply(at(*i), bt(*i)), name="qadd"), a, b,
        primfunc_name_hint="qadd")
