"""Data movement: reshape/view/flatten/squeeze/unsqueeze, permute/transpose, expand/repeat,
cat/stack, split/chunk/unbind, and indexing (getitem, slice, select, index).

Shapes are static, so every reshape-like spelling lowers to one qir.reshape to the shape
torch computed for the node; no -1 or dim arithmetic is redone here.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch

from frontends.common import ConversionError, converter
from frontends.context import Context
from frontends.converters.util import (
    elem_of,
    int_list,
    is_tensor,
    norm_dim,
    promoted_elem,
    reshape,
    varargs,
)
from qir import Value

aten = torch.ops.aten
M = "call_method"
_END = 2**63 - 1


@converter(aten.view.default, aten.reshape.default, aten._unsafe_view.default,
           aten.flatten.using_ints, aten.unflatten.int, aten.squeeze.default, aten.squeeze.dim,
           aten.squeeze.dims, aten.unsqueeze.default, aten.view_as.default,
           aten.reshape_as.default, torch.reshape, torch.flatten, torch.unflatten,
           torch.squeeze, torch.unsqueeze, (M, "view"), (M, "reshape"), (M, "flatten"),
           (M, "unflatten"), (M, "squeeze"), (M, "unsqueeze"), (M, "view_as"),
           (M, "reshape_as"), emits=("qir.reshape",))
def to_result_shape(ctx: Context, x: Any, *args: Any, **kwargs: Any) -> Value:
    """Every reshape-like op: a qir.reshape to the static shape torch computed."""
    if args and isinstance(args[0], torch.dtype):
        raise ConversionError("view(dtype) reinterprets bits; qir has no bitcast")
    return reshape(ctx, ctx.value(x), ctx.out_shape)


@converter(aten.expand.default, aten.expand_as.default, (M, "expand"), (M, "expand_as"),
           torch.broadcast_to, (M, "broadcast_to"), emits=("qir.broadcast_to",))
def expand(ctx: Context, x: Any, *args: Any, implicit: bool = False) -> Value:
    v = ctx.value(x)
    if v.type.shape == ctx.out_shape:
        return v
    return ctx.emit("qir.broadcast_to", [v], {"shape": list(ctx.out_shape)})


@converter(aten.repeat.default, (M, "repeat"), emits=("qir.reshape", "qir.broadcast_to"))
def repeat(ctx: Context, x: Any, *repeats: Any) -> Value:
    """x.repeat(r0, r1, ...): view each dim d as [1, d], broadcast to [r, d], merge."""
    v = ctx.value(x)
    reps = int_list(varargs(repeats), None, "repeats")
    shape = (1,) * (len(reps) - v.type.rank) + v.type.shape
    split = [s for d in shape for s in (1, d)]
    target = [s for r, d in zip(reps, shape) for s in (r, d)]
    v = reshape(ctx, v, split)
    v = ctx.emit("qir.broadcast_to", [v], {"shape": target})
    return reshape(ctx, v, [r * d for r, d in zip(reps, shape)])


def permute_value(ctx: Context, v: Value, perm: list[int]) -> Value:
    perm = [norm_dim(p, v.type.rank) for p in perm]
    if perm == list(range(v.type.rank)):
        return v
    return ctx.emit("qir.permute", [v], {"perm": perm})


@converter(aten.permute.default, torch.permute, (M, "permute"), emits=("qir.permute",))
def permute(ctx: Context, x: Any, *dims: Any) -> Value:
    return permute_value(ctx, ctx.value(x), int_list(varargs(dims), None, "dims"))


def swap(ctx: Context, v: Value, d0: int, d1: int) -> Value:
    perm = list(range(v.type.rank))
    a, b = norm_dim(d0, v.type.rank), norm_dim(d1, v.type.rank)
    perm[a], perm[b] = perm[b], perm[a]
    return permute_value(ctx, v, perm)


@converter(aten.transpose.int, torch.transpose, torch.swapaxes, torch.swapdims,
           (M, "transpose"), (M, "swapaxes"), (M, "swapdims"), emits=("qir.permute",))
def transpose(ctx: Context, x: Any, dim0: int, dim1: int) -> Value:
    return swap(ctx, ctx.value(x), dim0, dim1)


@converter(aten.contiguous.default, aten.clone.default, aten.alias.default,
           aten.detach.default, aten.detach_.default, aten.lift_fresh_copy.default,
           torch.clone, torch.detach, (M, "contiguous"), (M, "clone"), (M, "detach"),
           (M, "cpu"), emits=())
def identity(ctx: Context, x: Any, *args: Any, **kwargs: Any) -> Value:
    """Copies and aliases are the same value in a functional IR."""
    return ctx.value(x)


# --- joining and splitting -------------------------------------------------------------------


@converter(aten.cat.default, aten.concat.default, torch.cat, torch.concat, torch.concatenate,
           emits=("qir.concat",))
def cat(ctx: Context, tensors: Any, dim: int = 0, axis: int | None = None,
        out: None = None) -> Value:
    """Concatenate in the promoted element type (torch.cat promotes mixed dtypes)."""
    tensors = [t for t in tensors if not (is_tensor(t) and _is_legacy_empty(t))]
    elem = promoted_elem(*tensors)
    values = [ctx.value(t, elem) for t in tensors]
    if len(values) == 1:
        return values[0]
    return ctx.emit("qir.concat", values, {"axis": int(dim if axis is None else axis)})


def _is_legacy_empty(t: Any) -> bool:
    """torch.cat skips 1-d empty tensors whatever the other shapes are."""
    shape = t.type.shape if isinstance(t, Value) else tuple(t.tensor.shape)
    return shape == (0,)


@converter(aten.stack.default, torch.stack, emits=("qir.reshape", "qir.concat"))
def stack(ctx: Context, tensors: Any, dim: int = 0, out: None = None) -> Value:
    elem = promoted_elem(*tensors)
    values = [ctx.value(t, elem) for t in tensors]
    axis = norm_dim(dim, values[0].type.rank + 1)
    parts = [reshape(ctx, v, v.type.shape[:axis] + (1,) + v.type.shape[axis:]) for v in values]
    if len(parts) == 1:
        return parts[0]
    return ctx.emit("qir.concat", parts, {"axis": axis})


def split_by_sizes(ctx: Context, v: Value, sizes: list[int], dim: int) -> list[Value]:
    axis = norm_dim(dim, v.type.rank)
    if len(sizes) == 1:
        return [v]
    return ctx.emit_multi("qir.split", [v], {"axis": axis, "sizes": sizes},
                          num_results=len(sizes))


@converter(aten.split.Tensor, aten.split_with_sizes.default, torch.split, (M, "split"),
           (M, "split_with_sizes"), emits=("qir.split",))
def split(ctx: Context, x: Any, split_size_or_sections: Any = None, dim: int = 0, *,
          split_size: Any = None, split_sizes: Any = None) -> list[Value]:
    v = ctx.value(x)
    spec = next(s for s in (split_size_or_sections, split_size, split_sizes) if s is not None)
    n = v.type.shape[norm_dim(dim, v.type.rank)]
    if isinstance(spec, int):
        sizes = [spec] * (n // spec) + ([n % spec] if n % spec else [])
    else:
        sizes = int_list(spec, None, "split sizes")
    return split_by_sizes(ctx, v, sizes, dim)


@converter(aten.chunk.default, torch.chunk, (M, "chunk"), emits=("qir.split",))
def chunk(ctx: Context, x: Any, chunks: int, dim: int = 0) -> list[Value]:
    v = ctx.value(x)
    n = v.type.shape[norm_dim(dim, v.type.rank)]
    size = -(-n // chunks)
    sizes = [size] * (n // size) + ([n % size] if n % size else [])
    return split_by_sizes(ctx, v, sizes, dim)


@converter(aten.unbind.int, torch.unbind, (M, "unbind"), emits=("qir.split", "qir.reshape"))
def unbind(ctx: Context, x: Any, dim: int = 0) -> list[Value]:
    v = ctx.value(x)
    axis = norm_dim(dim, v.type.rank)
    parts = split_by_sizes(ctx, v, [1] * v.type.shape[axis], axis)
    shape = v.type.shape[:axis] + v.type.shape[axis + 1:]
    return [reshape(ctx, p, shape) for p in parts]


# --- indexing --------------------------------------------------------------------------------


def slice_value(ctx: Context, v: Value, dim: int, start: Any, end: Any, step: Any) -> Value:
    for what, b in (("start", start), ("end", end), ("step", step)):
        if b is not None and not isinstance(b, int):
            raise ConversionError(f"slice {what} must be a static integer, got {b!r}")
    axis = norm_dim(dim, v.type.rank)
    start, end, step = start or 0, _END if end is None else end, step or 1
    if start == 0 and step == 1 and end >= v.type.shape[axis]:
        return v
    return ctx.emit("qir.slice", [v], {"axis": axis, "start": start, "end": min(end, _END),
                                       "step": step})


def take(ctx: Context, v: Value, axis: int, index: Any) -> Value:
    """numpy take along an axis: an int drops the axis, an index tensor replaces it."""
    idx = ctx.value(index)
    if idx.type.elem not in ("i64", "i32"):
        raise ConversionError(f"index tensors must be int64 or int32, got {idx.type}")
    return ctx.emit("qir.gather", [v, idx], {"axis": axis})


def index_value(ctx: Context, x: Any, items: list[Any]) -> Value:
    """Basic indexing (ints, slices, None, ...) plus at most one integer index tensor."""
    v = ctx.value(x)
    tensors = [i for i in items if is_tensor(i)]
    if any(elem_of(i) == "bool" for i in tensors):
        raise ConversionError("boolean mask indexing has a data-dependent shape; use "
                              "torch.where or masked_fill")
    if len(tensors) > 1 or (tensors and any(isinstance(i, int) and not isinstance(i, bool)
                                            for i in items)):
        return advanced_index(ctx, v, items)
    if items.count(Ellipsis) > 1:
        raise ConversionError("an index can have only one '...'")
    if Ellipsis in items:
        used = sum(1 for i in items if i is not None and i is not Ellipsis)
        k = items.index(Ellipsis)
        items = items[:k] + [slice(None)] * (v.type.rank - used) + items[k + 1:]
    axis = 0
    for i in items:
        if i is None:
            v = reshape(ctx, v, v.type.shape[:axis] + (1,) + v.type.shape[axis:])
            axis += 1
        elif isinstance(i, slice):
            v = slice_value(ctx, v, axis, i.start, i.stop, i.step)
            axis += 1
        elif isinstance(i, int) and not isinstance(i, bool):
            v = take(ctx, v, axis, i)
        elif is_tensor(i):
            rank = ctx.value(i).type.rank
            v = take(ctx, v, axis, i)
            axis += rank
        else:
            raise ConversionError(f"unsupported index {i!r}")
    return v


def advanced_index(ctx: Context, v: Value, items: list[Any]) -> Value:
    """Indexing with several index tensors (and ints) on adjacent dims, the others full
    slices: x[:, i, j] with i, j broadcast together. The indexed dims are merged and one
    gather takes flat indices sum_d index_d * stride_d (numpy's rule: the broadcast index
    shape replaces the indexed dims in place)."""
    if Ellipsis in items or None in items:
        raise ConversionError("indexing with several index tensors and '...' or None is "
                              "not supported")
    items = items + [slice(None)] * (v.type.rank - len(items))
    picked = [d for d, i in enumerate(items) if not isinstance(i, slice)]
    if any(items[d] != slice(None) for d in range(v.type.rank) if d not in picked) or \
            picked != list(range(picked[0], picked[-1] + 1)):
        raise ConversionError("indexing with several index tensors is supported on adjacent "
                              "dims with full slices elsewhere")
    shape = v.type.shape
    first, last = picked[0], picked[-1]
    flat = None
    for d in picked:
        stride = int(np.prod(shape[d + 1:last + 1]))
        idx = ctx.value(items[d], "i64") if not isinstance(items[d], int) else \
            ctx.value(int(items[d]), "i64")
        # negative indices count from the end, as torch's
        idx = ctx.emit("qir.where", [ctx.emit("qir.lt", [idx, ctx.value(0, "i64")]),
                                     ctx.emit("qir.add", [idx, ctx.value(shape[d], "i64")]),
                                     idx])
        term = ctx.emit("qir.mul", [idx, ctx.value(stride, "i64")]) if stride != 1 else idx
        flat = term if flat is None else ctx.emit("qir.add", [flat, term])
    merged = reshape(ctx, v, shape[:first] + (int(np.prod(shape[first:last + 1])),)
                     + shape[last + 1:])
    return ctx.emit("qir.gather", [merged, flat], {"axis": first})


@converter(operator.getitem, emits=("qir.slice", "qir.gather", "qir.reshape"))
def getitem(ctx: Context, obj: Any, index: Any) -> Any:
    """Picks a result of a multi-output op, or indexes a tensor (`x[:, 0]`, `x[..., None]`)."""
    if isinstance(obj, (list, tuple)):
        return obj[index]
    return index_value(ctx, obj, list(index) if isinstance(index, tuple) else [index])


@converter(aten.slice.Tensor, emits=("qir.slice",))
def slice_(ctx: Context, x: Any, dim: int = 0, start: Any = None, end: Any = None,
           step: int = 1) -> Value:
    return slice_value(ctx, ctx.value(x), dim, start, end, step)


@converter(aten.narrow.default, torch.narrow, (M, "narrow"), emits=("qir.slice",))
def narrow(ctx: Context, x: Any, dim: int, start: int, length: int) -> Value:
    v = ctx.value(x)
    start = start % v.type.shape[norm_dim(dim, v.type.rank)] if start < 0 else start
    return slice_value(ctx, v, dim, start, start + length, 1)


@converter(aten.select.int, torch.select, (M, "select"), emits=("qir.gather",))
def select(ctx: Context, x: Any, dim: int, index: int) -> Value:
    v = ctx.value(x)
    return take(ctx, v, norm_dim(dim, v.type.rank), index)


@converter(aten.index.Tensor, aten._unsafe_index.Tensor, emits=("qir.gather", "qir.mul",
                                                                 "qir.add", "qir.where"))
def index(ctx: Context, x: Any, indices: list[Any]) -> Value:
    return index_value(ctx, x, [slice(None) if i is None else i for i in indices])


@converter(aten.index_select.default, torch.index_select, (M, "index_select"),
           emits=("qir.gather",))
def index_select(ctx: Context, x: Any, dim: int, index: Any) -> Value:
    v = ctx.value(x)
    return take(ctx, v, norm_dim(dim, v.type.rank), index)


@converter(aten.tril.default, torch.tril, (M, "tril"), emits=("qir.tril",))
def tril(ctx: Context, x: Any, diagonal: int = 0) -> Value:
    return ctx.emit("qir.tril", [ctx.value(x)], {"diagonal": int(diagonal)})


@converter(aten.triu.default, torch.triu, (M, "triu"), emits=("qir.triu",))
def triu(ctx: Context, x: Any, diagonal: int = 0) -> Value:
    return ctx.emit("qir.triu", [ctx.value(x)], {"diagonal": int(diagonal)})


@converter(aten.roll.default, torch.roll, (M, "roll"), emits=("qir.slice", "qir.concat"))
def roll(ctx: Context, x: Any, shifts: Any, dims: Any = ()) -> Value:
    """torch.roll: per rolled dim, the last `shift` elements moved to the front (two
    slices concatenated: data movement, so a quantized tensor keeps its scale). Without
    dims the flattened tensor rolls."""
    v = ctx.value(x)
    shift_list = int_list(shifts, None, "shifts")
    dim_list = int_list(dims, None, "dims") if dims not in (None, (), []) else []
    if not dim_list:
        if len(shift_list) != 1:
            raise ConversionError("roll without dims takes one shift")
        flat = reshape(ctx, v, (v.type.numel,))
        return reshape(ctx, roll_value(ctx, flat, shift_list[0], 0), v.type.shape)
    if len(shift_list) != len(dim_list):
        raise ConversionError(f"roll: {len(shift_list)} shifts for {len(dim_list)} dims")
    for shift, dim in zip(shift_list, dim_list):
        v = roll_value(ctx, v, shift, norm_dim(dim, v.type.rank))
    return v


def roll_value(ctx: Context, v: Value, shift: int, axis: int) -> Value:
    n = v.type.shape[axis]
    s = shift % n if n else 0
    if s == 0:
        return v
    tail = ctx.emit("qir.slice", [v], {"axis": axis, "start": n - s, "end": n, "step": 1})
    head = ctx.emit("qir.slice", [v], {"axis": axis, "start": 0, "end": n - s, "step": 1})
    return ctx.emit("qir.concat", [tail, head], {"axis": axis})


def along_axis_positions(ctx: Context, v: Value, dim: int, index: Any, what: str
                         ) -> tuple[int, Value]:
    """(axis, flat positions) of torch's along-axis indexing (gather, scatter): the
    index's own coordinates with the one along `dim` replaced by its value, as flat
    positions of v: index * stride(dim) plus the other coordinates' offset (a constant).
    Indices must be in range, as torch requires."""
    idx = ctx.value(index)
    if idx.type.elem not in ("i64", "i32"):
        raise ConversionError(f"{what} indices must be int64 or int32, got {idx.type}")
    if idx.type.rank != v.type.rank:
        raise ConversionError(f"{what}: index rank {idx.type.rank} != input rank "
                              f"{v.type.rank}")
    axis = norm_dim(dim, v.type.rank)
    strides = [int(np.prod(v.type.shape[d + 1:])) for d in range(v.type.rank)]
    grid = np.indices(idx.type.shape, dtype=np.int64)
    offset = sum(grid[d] * strides[d] for d in range(v.type.rank) if d != axis)
    flat_index = ctx.cast(idx, "i64")
    if strides[axis] != 1:
        flat_index = ctx.emit("qir.mul", [flat_index, ctx.value(strides[axis], "i64")])
    if np.any(offset):
        flat_index = ctx.emit("qir.add", [flat_index,
                                          ctx.constant(np.asarray(offset, np.int64))])
    return axis, flat_index


@converter(aten.gather.default, torch.gather, (M, "gather"),
           emits=("qir.reshape", "qir.mul", "qir.add", "qir.gather"))
def gather(ctx: Context, x: Any, dim: int, index: Any, sparse_grad: bool = False) -> Value:
    """torch.gather (out[i] = x[i with i[dim] replaced by index[i]]) as numpy take on the
    flattened input at along_axis_positions."""
    v = ctx.value(x)
    _, flat_index = along_axis_positions(ctx, v, dim, index, "gather")
    flat = reshape(ctx, v, (v.type.numel,))
    return ctx.emit("qir.gather", [flat, flat_index], {"axis": 0})


@converter(aten.flip.default, torch.flip, (M, "flip"), emits=("qir.gather",))
def flip(ctx: Context, x: Any, *dims: Any) -> Value:
    """Reversed along each dim: a gather with constant reversed indices."""
    v = ctx.value(x)
    for d in int_list(varargs(dims), None, "dims"):
        axis = norm_dim(d, v.type.rank)
        index = np.arange(v.type.shape[axis] - 1, -1, -1, dtype=np.int64)
        v = ctx.emit("qir.gather", [v, ctx.constant(index)], {"axis": axis})
    return v


@converter(aten.diagonal.default, torch.diagonal, (M, "diagonal"),
           emits=("qir.permute", "qir.reshape", "qir.gather"))
def diagonal(ctx: Context, x: Any, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Value:
    """The diagonal of dims (dim1, dim2) as a new last dim: those two dims moved last
    and flattened, then a gather of the diagonal's flat positions."""
    v = ctx.value(x)
    rank = v.type.rank
    a, b = norm_dim(dim1, rank), norm_dim(dim2, rank)
    rest = [d for d in range(rank) if d not in (a, b)]
    v = permute_value(ctx, v, rest + [a, b])
    n1, n2 = v.type.shape[-2], v.type.shape[-1]
    rows = np.arange(n1)
    rows = rows[(rows + offset >= 0) & (rows + offset < n2)]
    v = reshape(ctx, v, v.type.shape[:-2] + (n1 * n2,))
    return ctx.emit("qir.gather", [v, ctx.constant((rows * n2 + rows + offset)
                                                   .astype(np.int64))],
                    {"axis": v.type.rank - 1})


def scatter_slices(ctx: Context, v: Value, src: Value, axis: int, positions: np.ndarray
                   ) -> Value:
    """v with the `positions` along axis replaced by src's entries, in order: both
    concatenated, then one gather picking each output position's source."""
    n = v.type.shape[axis]
    index = np.arange(n, dtype=np.int64)
    index[positions] = n + np.arange(len(positions))
    both = ctx.emit("qir.concat", [v, src], {"axis": axis})
    return ctx.emit("qir.gather", [both, ctx.constant(index)], {"axis": axis})


@converter(aten.slice_scatter.default, torch.slice_scatter, (M, "slice_scatter"),
           emits=("qir.concat", "qir.gather"))
def slice_scatter(ctx: Context, x: Any, src: Any, dim: int = 0, start: Any = None,
                  end: Any = None, step: int = 1) -> Value:
    v = ctx.value(x)
    axis = norm_dim(dim, v.type.rank)
    positions = np.arange(v.type.shape[axis])[slice(start, end, step)]
    s = ctx.value(src, str(v.type.elem))
    if len(positions) != s.type.shape[axis]:
        raise ConversionError(f"slice_scatter: {s.type.shape[axis]} values for "
                              f"{len(positions)} positions")
    return scatter_slices(ctx, v, s, axis, positions)


@converter(aten.select_scatter.default, torch.select_scatter, (M, "select_scatter"),
           emits=("qir.reshape", "qir.concat", "qir.gather"))
def select_scatter(ctx: Context, x: Any, src: Any, dim: int, index: int) -> Value:
    v = ctx.value(x)
    axis = norm_dim(dim, v.type.rank)
    s = ctx.value(src, str(v.type.elem))
    s = reshape(ctx, s, s.type.shape[:axis] + (1,) + s.type.shape[axis:])
    position = int(index) % v.type.shape[axis]
    return scatter_slices(ctx, v, s, axis, np.array([position]))


@converter(aten.copy.default, emits=("qir.broadcast_to", "qir.cast"))
def copy(ctx: Context, x: Any, src: Any, non_blocking: bool = False) -> Value:
    """The functional copy_: src broadcast to x's shape, in x's element type."""
    v = ctx.value(x)
    s = ctx.value(src, str(v.type.elem))
    if s.type.shape != v.type.shape:
        s = ctx.emit("qir.broadcast_to", [s], {"shape": list(v.type.shape)})
    return s


@converter(aten.as_strided.default, torch.as_strided, (M, "as_strided"),
           emits=("qir.reshape", "qir.gather"))
def as_strided(ctx: Context, x: Any, size: Any, stride: Any, storage_offset: Any = None
               ) -> Value:
    """A strided view of x's contiguous storage: a gather of the flat positions."""
    v = ctx.value(x)
    sizes, strides = int_list(size, None, "size"), int_list(stride, None, "stride")
    grid = np.indices(sizes, dtype=np.int64) if sizes else np.zeros((0,), np.int64)
    flat = (int(storage_offset or 0)
            + sum(grid[d] * strides[d] for d in range(len(sizes))))
    flat = np.asarray(flat, np.int64).reshape(sizes)
    if flat.size and (flat.min() < 0 or flat.max() >= v.type.numel):
        raise ConversionError(f"as_strided reads outside the tensor ({v.type.numel} values)")
    return ctx.emit("qir.gather", [reshape(ctx, v, (v.type.numel,)), ctx.constant(flat)],
                    {"axis": 0})
