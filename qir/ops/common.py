"""Shared type-inference and verification helpers for op declarations."""

from __future__ import annotations

from qir.diagnostics import QirError
from qir.types import FLOAT_TYPES, TensorType


def t(op, i: int = 0) -> TensorType:
    """Type of operand i."""
    return op.operands[i].type


def norm_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise QirError(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """numpy broadcasting of static shapes; QirError when they do not broadcast."""
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise QirError("shapes " + ", ".join(str(list(s)) for s in shapes)
                           + " do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def same_as_input(op) -> list[TensorType]:
    return [t(op)]


def require_float(op, i: int = 0) -> None:
    ty = t(op, i)
    if not (isinstance(ty.elem, str) and ty.elem in FLOAT_TYPES):
        raise QirError(f"operand #{i} must be a float tensor, got {ty}")


def require_same_elem(op, *idx: int) -> None:
    elems = {str(t(op, i).elem) for i in idx}
    if len(elems) > 1:
        raise QirError("operands must have the same element type, got "
                       + ", ".join(str(t(op, i)) for i in idx))


def require_rank(op, i: int, *ranks: int) -> None:
    if t(op, i).rank not in ranks:
        raise QirError(f"operand #{i} must have rank {' or '.join(map(str, ranks))}, "
                       f"got {t(op, i)}")


def conv_out_dim(size: int, k: int, stride: int, pad_lo: int, pad_hi: int, dil: int,
                 ceil_mode: bool = False) -> int:
    eff = dil * (k - 1) + 1
    span = size + pad_lo + pad_hi - eff
    if span < 0:
        raise QirError(f"window {eff} is larger than the padded input {size + pad_lo + pad_hi}")
    if ceil_mode:
        out = -(-span // stride) + 1
        # PyTorch: the last window must start inside the input or left padding.
        if (out - 1) * stride >= size + pad_lo:
            out -= 1
        return out
    return span // stride + 1
