"""Writes at computed places: scatter / scatter_add / scatter_reduce, index_put,
masked_scatter, embedding_bag and col2im (fold), and sort / topk.

Every scatter runs on the flattened tensor at flat positions (the index times the
axis' stride plus the other coordinates' offset: shape.along_axis_positions, as gather),
so one 1-d `qir.scatter`
applies the updates in torch's row-major order, whatever the shapes of index and input.
These ops stay float under --int8 (a float island; qir.scatter refuses quantized
tensors).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from frontends.common import ConversionError, Unavailable, converter
from frontends.context import Context
from frontends.converters.shape import along_axis_positions
from frontends.converters.util import int_list, is_float_elem, norm_dim, reshape
from qir import Value

aten = torch.ops.aten
M = "call_method"

_REDUCE = {"sum": "add", "add": "add", "prod": "mul", "multiply": "mul", "amax": "max",
           "amin": "min"}


def _nonnegative(ctx: Context, idx: Value, n: int) -> Value:
    """Indices with negative ones counted from the end (n the axis size)."""
    return ctx.emit("qir.where", [ctx.emit("qir.lt", [idx, ctx.value(0, "i64")]),
                                  ctx.emit("qir.add", [idx, ctx.value(n, "i64")]), idx])


def _full(ctx: Context, value: float, shape: tuple[int, ...], elem: str) -> Value:
    scalar = ctx.value(value, elem)
    return ctx.emit("qir.broadcast_to", [scalar], {"shape": list(shape)}) if shape else scalar


def flat_scatter(ctx: Context, v: Value, flat_index: Value, updates: Value, reduce: str
                 ) -> Value:
    """v with updates written at flat positions (both flattened; same shapes)."""
    shape = v.type.shape
    flat = reshape(ctx, v, (v.type.numel,))
    out = ctx.emit("qir.scatter", [flat, reshape(ctx, flat_index, (flat_index.type.numel,)),
                                   reshape(ctx, updates, (updates.type.numel,))],
                   {"axis": 0, "reduce": reduce})
    return reshape(ctx, out, shape)


def scatter_value(ctx: Context, x: Any, dim: int, index: Any, src: Any, reduce: str
                  ) -> Value:
    """torch.scatter(x, dim, index, src) with a qir.scatter reduction ("none", "add",
    "mul", "max", "min"); src a tensor (its leading index-shaped block is used) or a
    number."""
    v = ctx.value(x)
    idx = ctx.value(index)
    elem = str(v.type.elem)
    _, places = along_axis_positions(ctx, v, dim, idx, "scatter")
    if isinstance(src, (int, float, bool)):
        upd = _full(ctx, src, idx.type.shape, elem)
    else:
        upd = ctx.value(src, elem)
        for d, n in enumerate(idx.type.shape):
            if upd.type.shape[d] < n:
                raise ConversionError(f"scatter: src {upd.type} is smaller than index "
                                      f"{idx.type} in dim {d}")
            if upd.type.shape[d] != n:
                upd = ctx.emit("qir.slice", [upd], {"axis": d, "start": 0, "end": n,
                                                    "step": 1})
    if idx.type.numel == 0:
        return v
    return flat_scatter(ctx, v, places, upd, reduce)


@converter(aten.scatter.src, aten.scatter.value, torch.scatter, (M, "scatter"),
           emits=("qir.scatter", "qir.reshape", "qir.where", "qir.mul", "qir.add"))
def scatter(ctx: Context, x: Any, dim: int, index: Any, src: Any = None, *,
            value: Any = None, reduce: str | None = None) -> Value:
    src = value if src is None else src
    return scatter_value(ctx, x, dim, index, src, _REDUCE[reduce] if reduce else "none")


@converter(aten.scatter.reduce, aten.scatter.value_reduce, emits=("qir.scatter",))
def scatter_with_reduce(ctx: Context, x: Any, dim: int, index: Any, src: Any,
                        reduce: str) -> Value:
    if reduce not in ("add", "multiply"):
        raise ConversionError(f"scatter reduce={reduce!r}: torch allows 'add' or 'multiply'")
    return scatter_value(ctx, x, dim, index, src, _REDUCE[reduce])


@converter(aten.scatter_add.default, torch.scatter_add, (M, "scatter_add"),
           emits=("qir.scatter",))
def scatter_add(ctx: Context, x: Any, dim: int, index: Any, src: Any) -> Value:
    return scatter_value(ctx, x, dim, index, src, "add")


@converter(aten.scatter_reduce.two, torch.scatter_reduce, (M, "scatter_reduce"),
           emits=("qir.scatter", "qir.div"))
def scatter_reduce(ctx: Context, x: Any, dim: int, index: Any, src: Any, reduce: str,
                   *, include_self: bool = True) -> Value:
    """sum / prod / amax / amin as one scatter reduction; without include_self the
    places written are first reset to the reduction's identity. mean is a sum divided
    by a count scattered alongside (float tensors only)."""
    v = ctx.value(x)
    elem = str(v.type.elem)
    if reduce not in ("sum", "prod", "mean", "amax", "amin"):
        raise ConversionError(f"scatter_reduce reduce={reduce!r} is not one of sum, prod, "
                              "mean, amax, amin")
    if reduce == "mean" and not is_float_elem(elem):
        raise ConversionError("scatter_reduce mean on an integer tensor (floor division) "
                              "is not supported; cast to float first")
    idx = ctx.value(index)
    identity = {"sum": 0, "mean": 0, "prod": 1, "amax": -np.inf, "amin": np.inf}[reduce]
    if not is_float_elem(elem) and reduce in ("amax", "amin"):
        info = np.iinfo(np.dtype(v.type.dtype)) if elem != "bool" else None
        identity = (info.min if reduce == "amax" else info.max) if info else identity
    identity = identity if isinstance(identity, float) else int(identity)
    base = v
    if not include_self:
        base = scatter_value(ctx, v, dim, idx, _full(ctx, identity, idx.type.shape, elem),
                             "none")
    if reduce != "mean":
        return scatter_value(ctx, base, dim, idx, src, _REDUCE[reduce])
    total = scatter_value(ctx, base, dim, idx, src, "add")
    ones = _full(ctx, 1.0, v.type.shape, elem)
    count = ones if include_self else scatter_value(
        ctx, ones, dim, idx, _full(ctx, 0.0, idx.type.shape, elem), "none")
    count = scatter_value(ctx, count, dim, idx, _full(ctx, 1.0, idx.type.shape, elem), "add")
    return ctx.emit("qir.div", [total, count])


@converter(aten.index_put.default, aten._unsafe_index_put.default, torch.index_put,
           (M, "index_put"), emits=("qir.scatter", "qir.where", "qir.broadcast_to"))
def index_put(ctx: Context, x: Any, indices: Any, values: Any, accumulate: bool = False
              ) -> Value:
    """x[indices] = values (or += with accumulate). Index tensors on adjacent dims (None
    for full slices elsewhere) become flat positions and one scatter; a boolean mask
    with values that broadcast over the masked elements becomes a select."""
    v = ctx.value(x)
    shape, rank = v.type.shape, v.type.rank
    items = list(indices) + [None] * (rank - len(indices))
    picked = [d for d, i in enumerate(items) if i is not None]
    masks = [d for d in picked if ctx.value(items[d]).type.elem == "bool"]
    if masks:
        return _masked_put(ctx, v, items, picked, values, accumulate)
    if not picked:
        raise ConversionError("index_put without index tensors")
    if picked != list(range(picked[0], picked[-1] + 1)):
        raise ConversionError("index_put with index tensors on non-adjacent dims is not "
                              "supported")
    first, last = picked[0], picked[-1]
    strides = [int(np.prod(shape[d + 1:])) for d in range(rank)]
    flat = None
    for d in picked:
        idx = _nonnegative(ctx, ctx.value(items[d], "i64"), shape[d])
        term = ctx.emit("qir.mul", [idx, ctx.value(strides[d], "i64")]) if strides[d] != 1 \
            else idx
        flat = term if flat is None else ctx.emit("qir.add", [flat, term])
    batch = flat.type.shape
    target = shape[:first] + batch + shape[last + 1:]
    flat = reshape(ctx, flat, (1,) * first + batch + (1,) * (rank - last - 1))
    sliced = [d for d in range(rank) if d < first or d > last]
    if sliced:
        grid = np.zeros([1] * len(target), np.int64)
        for d in sliced:
            pos = d if d < first else d - last - 1 + first + len(batch)
            view = [1] * len(target)
            view[pos] = shape[d]
            grid = grid + (np.arange(shape[d], dtype=np.int64) * strides[d]).reshape(view)
        flat = ctx.emit("qir.add", [flat, ctx.constant(grid)])
    if flat.type.shape != target:
        flat = ctx.emit("qir.broadcast_to", [flat], {"shape": list(target)})
    upd = ctx.value(values, str(v.type.elem))
    if upd.type.shape != target:
        upd = ctx.emit("qir.broadcast_to", [upd], {"shape": list(target)})
    if not int(np.prod(target)):
        return v
    return flat_scatter(ctx, v, flat, upd, "add" if accumulate else "none")


def _masked_put(ctx: Context, v: Value, items: list, picked: list[int], values: Any,
                accumulate: bool) -> Value:
    if picked != [0] or len([i for i in items if i is not None]) != 1:
        raise ConversionError("index_put with a boolean mask is supported as x[mask] = "
                              "values with the mask over the leading dims")
    mask = ctx.value(items[0])
    m = mask.type.rank
    if v.type.shape[:m] != mask.type.shape:
        raise ConversionError(f"index_put: mask {mask.type} does not match the leading "
                              f"dims of {v.type}")
    upd = ctx.value(values, str(v.type.elem))
    rest = v.type.shape[m:]
    broadcasts = upd.type.numel == 1 or (upd.type.rank <= len(rest) and
                                         upd.type.shape == rest[len(rest) - upd.type.rank:])
    if not broadcasts:
        raise ConversionError(f"index_put: values {upd.type} must broadcast over each masked "
                              f"element ({list(rest)}); one value per masked element "
                              "depends on the data (use masked_scatter)")
    upd = reshape(ctx, upd, (1,) * (v.type.rank - upd.type.rank) + upd.type.shape) \
        if upd.type.numel != 1 else reshape(ctx, upd, ())
    mask = reshape(ctx, mask, mask.type.shape + (1,) * len(rest))
    if accumulate:
        zero = ctx.value(0, str(v.type.elem))
        return ctx.emit("qir.add", [v, ctx.emit("qir.where", [mask, upd, zero])])
    return ctx.emit("qir.where", [mask, upd, v])


@converter(aten.masked_scatter.default, torch.masked_scatter, (M, "masked_scatter"),
           emits=("qir.cumsum", "qir.gather", "qir.where"))
def masked_scatter(ctx: Context, x: Any, mask: Any, source: Any) -> Value:
    """The k-th True of the mask (row-major) takes source's k-th element: k is the
    running count of Trues minus one, a gather from the flattened source, then a
    select."""
    v, m = ctx.value(x), ctx.value(mask)
    shape = ctx.out_shape  # x and mask broadcast together
    if v.type.shape != shape:
        v = ctx.emit("qir.broadcast_to", [v], {"shape": list(shape)})
    if m.type.shape != shape:
        m = ctx.emit("qir.broadcast_to", [m], {"shape": list(shape)})
    src = ctx.value(source, str(v.type.elem))
    count = ctx.emit("qir.cumsum", [ctx.cast(reshape(ctx, m, (v.type.numel,)), "i64")],
                     {"axis": 0})
    k = ctx.emit("qir.maximum", [ctx.emit("qir.sub", [count, ctx.value(1, "i64")]),
                                 ctx.value(0, "i64")])
    k = ctx.emit("qir.minimum", [k, ctx.value(max(src.type.numel - 1, 0), "i64")])
    taken = ctx.emit("qir.gather", [reshape(ctx, src, (src.type.numel,)), k], {"axis": 0})
    return ctx.emit("qir.where", [m, reshape(ctx, taken, v.type.shape), v])


@converter(aten._embedding_bag.default, aten._embedding_bag_forward_only.default,
           aten.embedding_bag.default, aten.embedding_bag.padding_idx,
           emits=("qir.gather", "qir.scatter", "qir.ge", "qir.reduce_sum", "qir.div"))
def embedding_bag(ctx: Context, weight: Any, indices: Any, offsets: Any,
                  scale_grad_by_freq: bool = False, mode: int = 0, sparse: bool = False,
                  per_sample_weights: Any = None, include_last_offset: bool = False,
                  padding_idx: int = -1) -> list:
    """Bags of embedding rows reduced by sum, mean or max. Each index's bag is the count
    of offsets at or before it, minus one; the rows are gathered and scattered into
    their bags. Empty bags give zeros (as torch); rows of padding_idx are left out."""
    w = ctx.value(weight)
    idx = ctx.cast(ctx.value(indices), "i64")
    offs = ctx.cast(ctx.value(offsets), "i64")
    if idx.type.rank != 1 or offs.type.rank != 1:
        raise ConversionError(f"embedding_bag wants 1-d indices and offsets, got {idx.type} "
                              f"and {offs.type}")
    if include_last_offset:
        offs = ctx.emit("qir.slice", [offs], {"axis": 0, "start": 0,
                                              "end": offs.type.shape[0] - 1, "step": 1})
    n_idx, n_bags, dim = idx.type.shape[0], offs.type.shape[0], w.type.shape[1]
    elem = str(w.type.elem)
    positions = ctx.constant(np.arange(n_idx, dtype=np.int64).reshape(n_idx, 1))
    started = ctx.emit("qir.ge", [positions, reshape(ctx, offs, (1, n_bags))])
    bag = ctx.emit("qir.sub", [ctx.emit("qir.reduce_sum", [ctx.cast(started, "i64")],
                                        {"axes": [1], "keepdims": True}),
                               ctx.value(1, "i64")])
    bag = ctx.emit("qir.broadcast_to", [bag], {"shape": [n_idx, dim]})
    rows = ctx.emit("qir.gather", [w, idx], {"axis": 0})
    valid = None
    if padding_idx is not None and padding_idx >= 0:
        valid = reshape(ctx, ctx.emit("qir.ne", [idx, ctx.value(int(padding_idx), "i64")]),
                        (n_idx, 1))
    if per_sample_weights is not None:
        if mode != 0:
            raise ConversionError("embedding_bag per_sample_weights needs mode='sum'")
        psw = reshape(ctx, ctx.value(per_sample_weights, elem), (n_idx, 1))
        rows = ctx.emit("qir.mul", [rows, psw])
    zeros = _full(ctx, 0.0, (n_bags, dim), elem)
    rest = [Unavailable("embedding_bag's offset2bag"), Unavailable("embedding_bag's bag_size"),
            Unavailable("embedding_bag's max_indices")]
    if mode in (0, 1):
        if valid is not None:
            rows = ctx.emit("qir.where", [valid, rows, ctx.value(0.0, elem)])
        out = ctx.emit("qir.scatter", [zeros, bag, rows], {"axis": 0, "reduce": "add"})
        if mode == 1:
            one = ctx.value(1.0, elem)
            weight_of = one if valid is None else ctx.emit("qir.where", [
                valid, one, ctx.value(0.0, elem)])
            ones = ctx.emit("qir.broadcast_to", [weight_of], {"shape": [n_idx, dim]})
            count = ctx.emit("qir.scatter", [zeros, bag, ones], {"axis": 0, "reduce": "add"})
            out = ctx.emit("qir.div", [out, ctx.emit("qir.maximum", [count, one])])
        return [out] + rest
    if mode == 2:
        # Bags that receive a row start from -inf, the others stay 0.
        ninf = ctx.value(-np.inf, elem)
        start = ninf if valid is None else ctx.emit("qir.where", [valid, ninf,
                                                                 ctx.value(0.0, elem)])
        start = ctx.emit("qir.broadcast_to", [start], {"shape": [n_idx, dim]})
        base = ctx.emit("qir.scatter", [zeros, bag, start], {"axis": 0, "reduce": "min"})
        if valid is not None:
            rows = ctx.emit("qir.where", [valid, rows, ninf])
        return [ctx.emit("qir.scatter", [base, bag, rows], {"axis": 0, "reduce": "max"})] + rest
    raise ConversionError(f"embedding_bag mode {mode} is not sum (0), mean (1) or max (2)")


@converter(aten.col2im.default, F.fold, emits=("qir.scatter", "qir.slice"))
def col2im(ctx: Context, input: Any, output_size: Any, kernel_size: Any, dilation: Any = 1,
           padding: Any = 0, stride: Any = 1) -> Value:
    """F.fold: every column's patch added into the (padded) image; the places are
    constant, so one scatter-add per batch row, then the padding cropped."""
    v = ctx.value(input)
    if v.type.rank not in (2, 3):
        raise ConversionError(f"col2im wants a rank 2 or 3 input, got {v.type}")
    unbatched = v.type.rank == 2
    if unbatched:
        v = reshape(ctx, v, (1,) + v.type.shape)
    (h, w), (kh, kw) = int_list(output_size, 2, "output_size"), int_list(kernel_size, 2,
                                                                           "kernel_size")
    dh, dw = int_list(dilation, 2, "dilation")
    ph, pw = int_list(padding, 2, "padding")
    sh, sw = int_list(stride, 2, "stride")
    n, ckk, cols = v.type.shape
    if ckk % (kh * kw):
        raise ConversionError(f"col2im: {ckk} rows are not a multiple of the kernel size "
                              f"{kh}x{kw}")
    c = ckk // (kh * kw)
    hp, wp = h + 2 * ph, w + 2 * pw
    nbh, nbw = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    if nbh * nbw != cols:
        raise ConversionError(f"col2im: {cols} columns, but the sizes give {nbh}x{nbw}")
    ci, ki, kj, bh, bw = np.indices((c, kh, kw, nbh, nbw), dtype=np.int64)
    place = ci * hp * wp + (bh * sh + ki * dh) * wp + (bw * sw + kj * dw)
    place = np.broadcast_to(place.reshape(1, -1), (n, ckk * cols))
    zeros = _full(ctx, 0.0, (n, c * hp * wp), str(v.type.elem))
    out = ctx.emit("qir.scatter", [zeros, ctx.constant(np.ascontiguousarray(place)),
                                   reshape(ctx, v, (n, ckk * cols))],
                   {"axis": 1, "reduce": "add"})
    out = reshape(ctx, out, (n, c, hp, wp))
    if ph or pw:
        out = ctx.emit("qir.slice", [out], {"axis": 2, "start": ph, "end": ph + h, "step": 1})
        out = ctx.emit("qir.slice", [out], {"axis": 3, "start": pw, "end": pw + w, "step": 1})
    return reshape(ctx, out, (c, h, w)) if unbatched else out


# --- sort ----------------------------------------------------------------------------------


@converter(aten.sort.default, aten.sort.stable, torch.sort, (M, "sort"), emits=("qir.sort",))
def sort(ctx: Context, x: Any, dim: int = -1, descending: bool = False, *,
         stable: bool | None = None) -> list[Value]:
    """A stable sort (torch's unstable one may order ties either way)."""
    v = ctx.value(x)
    if v.type.rank == 0:
        return [v, ctx.value(0, "i64")]
    return ctx.emit_multi("qir.sort", [v], {"axis": norm_dim(dim, v.type.rank),
                                            "descending": bool(descending)}, num_results=2)


@converter(aten.topk.default, torch.topk, (M, "topk"), emits=("qir.topk",))
def topk(ctx: Context, x: Any, k: int, dim: int = -1, largest: bool = True,
         sorted: bool = True) -> list[Value]:
    """The first k of a stable sort (ties keep their order)."""
    v = ctx.value(x)
    if v.type.rank == 0:
        return [v, ctx.value(0, "i64")]
    return ctx.emit_multi("qir.topk", [v], {"k": int(k), "axis": norm_dim(dim, v.type.rank),
                                            "largest": bool(largest)}, num_results=2)


@converter(aten.argsort.default, aten.argsort.stable, torch.argsort, (M, "argsort"),
           emits=("qir.sort",))
def argsort(ctx: Context, x: Any, dim: int = -1, descending: bool = False, *,
            stable: bool = False) -> Value:
    """The indices of a stable sort."""
    return sort(ctx, x, dim=dim, descending=descending)[1]
