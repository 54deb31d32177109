"""Kernel epilogues: what an integer kernel does with each int32 accumulator (bias
added) before storing it, so that the accumulator never round-trips through memory.

An `Epilogue` requantizes the accumulator (per tensor or per output channel,
fixed_point.Rescale) and, optionally, adds a residual tensor of the output's shape with
qadd's arithmetic (fixed_point.Add), the requantized value as its left or right operand.
The arithmetic is exactly the separate requantize and qadd kernels' (the same
expression builders), so a fused build stays bit-exact with the numpy interpreter.

Which qir op chains become a kernel with an epilogue is decided in
backends/tvm/epilogue_fusion.py; the kernels (conv.py, dense.py) take the Epilogue, its
placeholders and its Relax arguments.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tvm import relax, te, tirx

from backends.tvm.fixed_point import Add, Rescale


@dataclass(frozen=True)
class Epilogue:
    """y = rq(acc), or with a residual r: y = add(rq(acc), r), or add(r, rq(acc)) when
    `residual_lhs` (the residual is qadd's left operand)."""

    rescale: Rescale
    add: Add | None = None
    residual_dtype: str | None = None
    residual_lhs: bool = False

    @property
    def out_dtype(self) -> str:
        return self.add.out_dtype if self.add is not None else self.rescale.out_dtype

    @property
    def tag(self) -> str:
        """A short name part telling kernels with different epilogues apart."""
        digest = hashlib.sha1(repr(self).encode()).hexdigest()[:8]
        return f"{'rqadd' if self.add is not None else 'rq'}{digest}"

    def placeholders(self, out_shape: tuple[int, ...]) -> list[te.Tensor]:
        """The kernel's extra inputs: the rescale tables, then the residual."""
        tensors = self.rescale.placeholders()
        if self.add is not None:
            tensors.append(te.placeholder(out_shape, self.residual_dtype, name="residual"))
        return tensors

    def relax_args(self, residual: relax.Expr | None) -> list[relax.Expr]:
        """The Relax arguments for `placeholders`, in the same order."""
        return self.rescale.relax_args() + ([residual] if self.add is not None else [])

    def compute(self, y: te.Tensor, channel_axis: int, tensors: list[te.Tensor]
                ) -> te.Tensor:
        """The epilogue as a TE stage of its own over the biased accumulators `y`: in
        one expression with the bias add, TVM's simplifier would widen acc + bias to an
        int64 sum, and an int64 multiply by the multiplier has no AVX2 instruction
        (int32 x int32 -> int64 has vpmuldq)."""
        return te.compute(y.shape, lambda *i: self.apply(y(*i), i[channel_axis], i, tensors),
                          name="epilogue")

    def apply(self, acc: tirx.PrimExpr, channel: tirx.PrimExpr, index: tuple,
              tensors: list[te.Tensor]) -> tirx.PrimExpr:
        """The stored value for accumulator `acc` at output `index` (channel
        `channel`)."""
        tables = tensors[:-1] if self.add is not None else tensors
        y = self.rescale.apply(acc, channel, list(tables))
        if self.add is None:
            return y
        r = tensors[-1][index]
        return self.add.apply(r, y) if self.residual_lhs else self.add.apply(y, r)
