"""Small helpers converters share: argument normalisation and torch type promotion."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from frontends.common import Const, ConversionError, LazyParam, qir_elem, torch_dtype
from frontends.context import Context
from qir import Value
from qir.types import FLOAT_TYPES


def is_tensor(x: Any) -> bool:
    """True for anything that is a tensor in the torch program (value, param, constant)."""
    return isinstance(x, (Value, Const, LazyParam))


def rank_of(x: Any) -> int:
    if isinstance(x, Value):
        return x.type.rank
    if isinstance(x, (Const, LazyParam)):
        return x.tensor.dim()
    return 0


def elem_of(x: Any) -> str:
    if isinstance(x, Value):
        return str(x.type.elem)
    if isinstance(x, (Const, LazyParam)):
        return qir_elem(x.tensor.dtype)
    raise ConversionError(f"expected a tensor, got {x!r}")


def is_float_elem(elem: str) -> bool:
    return elem in FLOAT_TYPES


def _dummy(x: Any) -> Any:
    """A stand-in with the same dtype and zero-dim-ness, for torch.result_type."""
    if isinstance(x, Value):
        return torch.empty(() if x.type.rank == 0 else (1,), dtype=torch_dtype(str(x.type.elem)))
    if isinstance(x, (Const, LazyParam)):
        return torch.empty(() if x.tensor.dim() == 0 else (1,), dtype=x.tensor.dtype)
    if isinstance(x, (bool, int, float)):
        return x
    raise ConversionError(f"expected a tensor or a number, got {x!r}")


def promoted_elem(*xs: Any) -> str:
    """The element type torch computes in for these operands (type promotion: an int tensor
    times a float scalar is float, a 0-d tensor does not widen a dimensioned one...)."""
    acc = None
    for x in xs:
        d = _dummy(x)
        if acc is None:
            acc = d
            continue
        dtype = torch.result_type(acc, d)
        dims = any(isinstance(v, torch.Tensor) and v.dim() > 0 for v in (acc, d))
        both_scalars = not isinstance(acc, torch.Tensor) and not isinstance(d, torch.Tensor)
        if both_scalars:
            acc = torch.tensor(0, dtype=dtype).item()
        else:
            acc = torch.empty((1,) if dims else (), dtype=dtype)
    if isinstance(acc, torch.Tensor):
        return qir_elem(acc.dtype)
    return "bool" if isinstance(acc, bool) else "i64" if isinstance(acc, int) else "f32"


def binary(ctx: Context, op: str, a: Any, b: Any, elem: str | None = None) -> Value:
    """`op(a, b)` after torch type promotion; python scalars become 0-d constants."""
    elem = elem or promoted_elem(a, b)
    return ctx.emit(op, [ctx.value(a, elem), ctx.value(b, elem)])


def float_input(ctx: Context, x: Any) -> Value:
    """x as a float value: integer tensors are cast to the float type torch returns."""
    v = ctx.value(x)
    if is_float_elem(str(v.type.elem)):
        return v
    try:
        out = str(ctx.out_type.elem)
    except ConversionError:
        out = "f32"
    return ctx.cast(v, out if is_float_elem(out) else "f32")


def int_list(x: Any, n: int | None = None, what: str = "argument") -> list[int]:
    """An int or a sequence of ints as a list; a single int is repeated n times."""
    if isinstance(x, int) and not isinstance(x, bool):
        return [x] * (n or 1)
    if isinstance(x, (list, tuple, torch.Size)):
        vals = [int(v) for v in x]
        if n is not None and len(vals) == 1:
            return vals * n
        if n is not None and len(vals) != n:
            raise ConversionError(f"{what} {list(x)} should have {n} entries")
        return vals
    raise ConversionError(f"{what} must be static integers, got {x!r}")


def varargs(args: Sequence[Any]) -> list[Any]:
    """`x.permute(0, 2, 1)` and `x.permute((0, 2, 1))` alike."""
    if len(args) == 1 and isinstance(args[0], (list, tuple, torch.Size)):
        return list(args[0])
    return list(args)


def norm_dim(dim: int, rank: int) -> int:
    if not -max(rank, 1) <= dim < max(rank, 1):
        raise ConversionError(f"dimension {dim} is out of range for rank {rank}")
    return dim % rank if rank else 0


def dims_arg(dim: Any, rank: int) -> list[int]:
    """A reduction's dim argument as sorted axes; None or [] mean all axes."""
    if dim is None:
        return list(range(rank))
    if isinstance(dim, int):
        dim = [dim]
    dims = sorted({norm_dim(int(d), rank) for d in dim})
    return dims or list(range(rank))


def reshape(ctx: Context, v: Value, shape: Sequence[int]) -> Value:
    if tuple(v.type.shape) == tuple(shape):
        return v
    return ctx.emit("qir.reshape", [v], {"shape": list(shape)})


def scalar_value(x: Any, what: str) -> float | int | bool:
    """A python number from an argument that must be known at import time."""
    if isinstance(x, Const) and x.tensor.numel() == 1:
        return x.tensor.item()
    if isinstance(x, (bool, int, float)):
        return x
    raise ConversionError(f"{what} must be a constant number, got {type(x).__name__}")
