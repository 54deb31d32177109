"""Static tensor facts (size, shape, dtype, dim), dtype conversions, runtime asserts, and
tensor factories: `zeros_like(x)` & co. become constants of x's static shape; arange/zeros/
ones/full with static arguments never reach a converter, the walker folds them."""

from __future__ import annotations

import builtins
from typing import Any

import torch

from frontends.common import Const, ConversionError, LazyParam, converter, torch_dtype
from frontends.context import Context
from frontends.converters.arith import fill_like
from frontends.converters.shape import swap
from frontends.converters.util import norm_dim
from qir import Value

aten = torch.ops.aten
M = "call_method"


def _shape_dtype(x: Any) -> tuple[tuple[int, ...], torch.dtype]:
    if isinstance(x, Value):
        return tuple(x.type.shape), torch_dtype(str(x.type.elem))
    if isinstance(x, (LazyParam, Const)):
        return tuple(x.tensor.shape), x.tensor.dtype
    raise ConversionError(f"expected a tensor, got {x!r}")


@converter((M, "size"), emits=())
def size(ctx: Context, x: Any, dim: int | None = None) -> Any:
    shape, _ = _shape_dtype(x)
    return torch.Size(shape) if dim is None else shape[norm_dim(dim, len(shape))]


@converter(aten.sym_size.int, emits=())
def sym_size(ctx: Context, x: Any, dim: int) -> int:
    shape, _ = _shape_dtype(x)
    return shape[norm_dim(dim, len(shape))]


@converter((M, "dim"), (M, "ndimension"), emits=())
def dim(ctx: Context, x: Any) -> int:
    return len(_shape_dtype(x)[0])


@converter((M, "numel"), torch.numel, emits=())
def numel(ctx: Context, x: Any) -> int:
    n = 1
    for d in _shape_dtype(x)[0]:
        n *= d
    return n


@converter(builtins.len, emits=())
def len_(ctx: Context, x: Any) -> int:
    shape, _ = _shape_dtype(x)
    if not shape:
        raise ConversionError("len() of a 0-d tensor")
    return shape[0]


@converter(builtins.getattr, emits=("qir.permute",))
def getattr_(ctx: Context, x: Any, name: str, *default: Any) -> Any:
    """Tensor attributes in fx graphs: static facts fold to python values."""
    shape, dtype = _shape_dtype(x)
    facts = {"shape": torch.Size(shape), "dtype": dtype, "ndim": len(shape),
             "device": torch.device("cpu"), "is_cuda": False, "requires_grad": False,
             "is_quantized": False}
    if name in facts:
        return facts[name]
    if name == "data":
        return ctx.value(x)
    if name in ("T", "mT", "mH", "H"):
        v = ctx.value(x)
        if name in ("T", "H") and v.type.rank != 2:
            return ctx.emit("qir.permute", [v], {"perm": list(range(v.type.rank))[::-1]})
        return swap(ctx, v, -2, -1)
    raise ConversionError(f"tensor attribute {name!r} is not supported")


@converter(aten.mT.default, aten.mH.default, aten.adjoint.default, aten.numpy_T.default,
           aten.matrix_H.default, torch.adjoint, (M, "adjoint"), emits=("qir.permute",))
def transposed(ctx: Context, x: Any) -> Value:
    """x.mT / x.mH / x.T (real tensors: conjugation is a no-op)."""
    v = ctx.value(x)
    if ctx.node.target is aten.numpy_T.default:
        return ctx.emit("qir.permute", [v], {"perm": list(range(v.type.rank))[::-1]})
    return swap(ctx, v, -2, -1)


# --- dtype conversions -------------------------------------------------------------------------


@converter(aten._to_copy.default, aten.to.dtype, aten.to.dtype_layout, aten.to.device,
           aten.to.other, aten.type_as.default, (M, "to"), (M, "type"), (M, "type_as"),
           (M, "float"), (M, "double"), (M, "half"), (M, "bfloat16"), (M, "int"), (M, "long"),
           (M, "short"), (M, "bool"), (M, "byte"), (M, "char"), emits=("qir.cast",))
def cast(ctx: Context, x: Any, *args: Any, **kwargs: Any) -> Value:
    """Every dtype conversion: a qir.cast to the dtype torch computed (device moves and
    same-dtype conversions are no-ops)."""
    return ctx.cast(ctx.value(x), str(ctx.out_type.elem))


@converter(aten._assert_tensor_metadata.default, aten._assert_scalar.default,
           aten.sym_constrain_range_for_size.default, aten._assert_async.msg, emits=())
def assertion(ctx: Context, *args: Any, **kwargs: Any) -> None:
    """Runtime checks torch.export inserts; shapes and dtypes are static here."""
    return None


# --- factories ---------------------------------------------------------------------------------


@converter(aten.zeros_like.default, torch.zeros_like, aten.empty_like.default,
           torch.empty_like, aten.new_zeros.default, aten.new_empty.default, (M, "new_zeros"),
           (M, "new_empty"), emits=("qir.constant",))
def zeros_like(ctx: Context, x: Any, *args: Any, **kwargs: Any) -> Value:
    return fill_like(ctx, 0)


@converter(aten.ones_like.default, torch.ones_like, aten.new_ones.default, (M, "new_ones"),
           emits=("qir.constant",))
def ones_like(ctx: Context, x: Any, *args: Any, **kwargs: Any) -> Value:
    return fill_like(ctx, 1)


@converter(aten.full_like.default, torch.full_like, emits=("qir.constant",))
def full_like(ctx: Context, x: Any, fill_value: Any, **kwargs: Any) -> Value:
    return fill_like(ctx, fill_value)


@converter(aten.new_full.default, (M, "new_full"), emits=("qir.constant",))
def new_full(ctx: Context, x: Any, size: Any, fill_value: Any, **kwargs: Any) -> Value:
    return fill_like(ctx, fill_value)


@converter(aten.arange.default, aten.arange.start, aten.arange.start_step, aten.zeros.default,
           aten.ones.default, aten.full.default, aten.empty.memory_format,
           aten.scalar_tensor.default, aten.eye.default, torch.arange, torch.zeros, torch.ones,
           torch.full, torch.empty, torch.tensor, torch.eye, emits=("qir.constant",))
def folded_factory(ctx: Context, *args: Any, **kwargs: Any) -> Value:
    """Factories with static arguments are folded to constants before any converter runs;
    this one only sees arguments that depend on the model's inputs."""
    raise ConversionError("tensor factory with arguments computed from the inputs: shapes "
                          "and fill values must be static")
