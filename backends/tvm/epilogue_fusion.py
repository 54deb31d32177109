"""Epilogue fusion: qir op chains that lower to one integer kernel call.

A qconv1d/qconv2d or qlinear with constant weights whose int32 result only a
single-rounding requantize reads (per tensor, or per output channel), optionally
followed by a qadd that alone reads the requantized result (a residual connection, its
other operand of the result's shape), lowers to one kernel call whose epilogue requantizes, adds and
clamps in registers (backends/tvm/kernels/epilogue.py): neither the int32 accumulator
nor the intermediate 8-bit tensor reaches memory.

`plan(fn)` finds the chains (by the IR's structure alone); `lower_chain` emits one, or
returns None when no kernel takes it (another target, a shape the kernel does not
cover), and the lowering then lowers its ops one by one, as if unfused. The integers are
the same either way: the epilogue is the separate kernels' arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import relax

from backends.tvm.common import tvm_dtype
from backends.tvm.kernels.epilogue import Epilogue
from backends.tvm.quant_ops import (add_spec, conv_kernel, linear_kernel, requantize_axis,
                                    single_rescale)
from qir.ops.core import constant_array
from qir.ir import Function, Op, Value

# the kernel behind each anchor op, and where the output channels are
KERNELS = {"qir.qconv1d": conv_kernel, "qir.qconv2d": conv_kernel,
           "qir.qlinear": linear_kernel}


def channel_axis(anchor: Op) -> int:
    """The anchor result's output-channel axis (per-channel requantize tables)."""
    return anchor.result.type.rank - 1 if anchor.name == "qir.qlinear" else 1


@dataclass(frozen=True)
class Chain:
    """anchor -> requantize [-> add]; `ops` in program order, the last one's result is
    the chain's."""

    anchor: Op
    requantize: Op
    add: Op | None = None

    @property
    def ops(self) -> tuple[Op, ...]:
        return (self.anchor, self.requantize) + ((self.add,) if self.add else ())

    @property
    def tail(self) -> Op:
        return self.ops[-1]

    def residual(self) -> Value | None:
        """The operand of the add that is not the requantized value."""
        if self.add is None:
            return None
        a, b = self.add.operands
        return b if a is self.requantize.result else a


def _only_user(value: Value, fn: Function) -> Op | None:
    """The one op reading `value`, unless it is also a function output."""
    if len(value.uses) != 1 or value in fn.outputs:
        return None
    return value.uses[0].op


def _fusable_requantize(op: Op | None, anchor: Op) -> bool:
    return (op is not None and op.name == "qir.requantize"
            and op.attr("rounding") == "single"
            and requantize_axis(op) in (None, channel_axis(anchor)))


def _fusable_add(op: Op | None) -> bool:
    if op is None or op.name != "qir.qadd":
        return False
    a, b = op.operands
    shape = op.result.type.shape
    return a is not b and a.type.shape == shape and b.type.shape == shape


def plan(fn: Function) -> dict[Op, Chain]:
    """The fusable chains of `fn`, keyed by their last op."""
    chains = {}
    for op in fn.ops:
        if op.name not in KERNELS or constant_array(op.operands[1]) is None:
            continue
        if len(op.operands) > 2 and constant_array(op.operands[2]) is None:
            continue  # a computed bias is added after the kernel
        rq = _only_user(op.result, fn)
        if not _fusable_requantize(rq, op):
            continue
        add = _only_user(rq.result, fn)
        chain = Chain(op, rq, add if _fusable_add(add) else None)
        chains[chain.tail] = chain
    return chains


def epilogue_of(chain: Chain) -> Epilogue:
    rescale = single_rescale(chain.requantize)
    if chain.add is None:
        return Epilogue(rescale)
    residual = chain.residual()
    return Epilogue(rescale, add_spec(chain.add), tvm_dtype(residual.type),
                    residual_lhs=chain.add.operands[0] is residual)


def lower_chain(bb: relax.BlockBuilder, chain: Chain, env: dict) -> relax.Expr | None:
    """The chain's result through one kernel, or None when no kernel takes it."""
    residual = chain.residual()
    kernel = KERNELS[chain.anchor.name]
    return kernel(bb, chain.anchor, env[chain.anchor.operands[0]], epilogue_of(chain),
                  None if residual is None else env[residual])
