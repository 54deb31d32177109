"""Pooling and reductions. 1-d pooling runs as 2-d pooling over a [N, C, 1, L] view, and
unbatched inputs get a batch dim for the duration of the op."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from frontends.common import ConversionError, Unavailable, converter, qir_elem
from frontends.context import Context
from frontends.converters.util import binary, dims_arg, float_input, int_list, reshape
from qir import Value

aten = torch.ops.aten
M = "call_method"

# --- pooling -------------------------------------------------------------------------------


def _as_nchw(ctx: Context, x: Any, nd: int, pool: Callable[[Value], Value]) -> Value:
    """Run a 2-d pooling on x of rank nd+1 (unbatched) or nd+2, 1-d pooling as 2-d."""
    v = ctx.value(x)
    if v.type.rank not in (nd + 1, nd + 2):
        raise ConversionError(f"{nd}-d pooling wants a rank {nd + 1} or {nd + 2} input, got "
                              f"{v.type}")
    shape = v.type.shape if v.type.rank == nd + 2 else (1,) + v.type.shape
    four = shape if nd == 2 else shape[:2] + (1,) + shape[2:]
    out = pool(reshape(ctx, v, four))
    want = list(out.type.shape) if nd == 2 else list(out.type.shape[:2] + out.type.shape[3:])
    if v.type.rank == nd + 1:
        want = want[1:]
    return reshape(ctx, out, want)


def _window(kernel: Any, stride: Any, padding: Any, dilation: Any, nd: int):
    k = int_list(kernel, nd, "kernel_size")
    s = int_list(stride, nd, "stride") if stride not in (None, [], ()) else k
    p = int_list(padding, nd, "padding")
    d = int_list(dilation, nd, "dilation")
    if nd == 1:  # as 2-d over [N, C, 1, L]
        k, s, p, d = [1] + k, [1] + s, [0] + p, [1] + d
    return k, s, p, d


def max_pool(ctx: Context, nd: int, x: Any, kernel_size: Any, stride: Any, padding: Any,
             dilation: Any, ceil_mode: bool) -> Value:
    k, s, p, d = _window(kernel_size, stride, padding, dilation, nd)
    return _as_nchw(ctx, x, nd, lambda v: ctx.emit("qir.max_pool2d", [v], {
        "kernel": k, "stride": s, "padding": p, "dilation": d, "ceil_mode": bool(ceil_mode)}))


def avg_pool(ctx: Context, nd: int, x: Any, kernel_size: Any, stride: Any, padding: Any,
             ceil_mode: bool, count_include_pad: bool, divisor_override: Any) -> Value:
    k, s, p, _ = _window(kernel_size, stride, padding, 1, nd)
    attrs = {"kernel": k, "stride": s, "padding": p, "ceil_mode": bool(ceil_mode),
             "count_include_pad": bool(count_include_pad),
             "divisor_override": None if divisor_override is None else int(divisor_override)}
    return _as_nchw(ctx, x, nd, lambda v: ctx.emit("qir.avg_pool2d", [float_input(ctx, v)],
                                                   attrs))


@converter(aten.max_pool2d.default, F.max_pool2d, torch.max_pool2d, emits=("qir.max_pool2d",))
def max_pool2d(ctx: Context, input: Any, kernel_size: Any, stride: Any = None,
               padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Value:
    if return_indices:
        raise ConversionError("max_pool2d(return_indices=True): qir does not compute indices")
    return max_pool(ctx, 2, input, kernel_size, stride, padding, dilation, ceil_mode)


@converter(aten.max_pool2d_with_indices.default, emits=("qir.max_pool2d",))
def max_pool2d_with_indices(ctx: Context, input: Any, kernel_size: Any, stride: Any = None,
                            padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False) -> list:
    out = max_pool(ctx, 2, input, kernel_size, stride, padding, dilation, ceil_mode)
    return [out, Unavailable("the indices of max_pool2d")]


@converter(aten.max_pool1d.default, F.max_pool1d, torch.max_pool1d, emits=("qir.max_pool2d",))
def max_pool1d(ctx: Context, input: Any, kernel_size: Any, stride: Any = None,
               padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Value:
    if return_indices:
        raise ConversionError("max_pool1d(return_indices=True): qir does not compute indices")
    return max_pool(ctx, 1, input, kernel_size, stride, padding, dilation, ceil_mode)


@converter(aten.avg_pool2d.default, F.avg_pool2d, emits=("qir.avg_pool2d",))
def avg_pool2d(ctx: Context, input: Any, kernel_size: Any, stride: Any = None,
               padding: Any = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Any = None) -> Value:
    return avg_pool(ctx, 2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                    divisor_override)


@converter(aten.avg_pool1d.default, F.avg_pool1d, emits=("qir.avg_pool2d",))
def avg_pool1d(ctx: Context, input: Any, kernel_size: Any, stride: Any = None,
               padding: Any = 0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Value:
    return avg_pool(ctx, 1, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                    None)


def _adaptive_size(size: Any, spatial: tuple[int, ...]) -> list[int]:
    """output_size with None entries (keep that input size) resolved."""
    if isinstance(size, int) or size is None:
        size = [size] * len(spatial)
    size = list(size)
    if len(size) == 1:
        size = size * len(spatial)
    return [spatial[i] if s is None else int(s) for i, s in enumerate(size)]


@converter(aten.adaptive_avg_pool2d.default, aten._adaptive_avg_pool2d.default,
           F.adaptive_avg_pool2d, emits=("qir.adaptive_avg_pool2d",))
def adaptive_avg_pool2d(ctx: Context, input: Any, output_size: Any) -> Value:
    def pool(v: Value) -> Value:
        size = _adaptive_size(output_size, v.type.shape[2:])
        return ctx.emit("qir.adaptive_avg_pool2d", [float_input(ctx, v)], {"output_size": size})

    return _as_nchw(ctx, input, 2, pool)


@converter(aten.adaptive_avg_pool1d.default, F.adaptive_avg_pool1d,
           emits=("qir.adaptive_avg_pool2d",))
def adaptive_avg_pool1d(ctx: Context, input: Any, output_size: Any) -> Value:
    def pool(v: Value) -> Value:
        size = [1] + _adaptive_size(output_size, v.type.shape[3:])
        return ctx.emit("qir.adaptive_avg_pool2d", [float_input(ctx, v)], {"output_size": size})

    return _as_nchw(ctx, input, 1, pool)


@converter(aten.adaptive_max_pool2d.default, F.adaptive_max_pool2d,
           emits=("qir.reduce_max",))
def adaptive_max_pool2d(ctx: Context, input: Any, output_size: Any,
                        return_indices: bool = False) -> Any:
    """Global max pooling (output 1x1) only: a max over H and W."""
    v = ctx.value(input)
    if _adaptive_size(output_size, v.type.shape[-2:]) != [1, 1] or return_indices:
        raise ConversionError("adaptive_max_pool2d: only output_size=1 without indices is "
                              "supported (a global max)")
    out = ctx.emit("qir.reduce_max", [v], {"axes": [-2, -1], "keepdims": True})
    if ctx.node.target is aten.adaptive_max_pool2d.default:
        return [out, Unavailable("the indices of adaptive_max_pool2d")]
    return out


# 3-d pooling is separable: a window is a box and its valid count (padding, ceil mode)
# is the product of the per-axis counts, so a 2-d pool over (H, W) of the [N, C*D, H, W]
# view, then a pool over D of the [N, C, D, H'*W'] view, is the 3-d pool.


def _pool3d(ctx: Context, x: Any, hw: Callable[[Value], Value],
            d: Callable[[Value], Value]) -> Value:
    v = ctx.value(x)
    if v.type.rank not in (4, 5):
        raise ConversionError(f"3-d pooling wants a rank 4 or 5 input, got {v.type}")
    shape = v.type.shape if v.type.rank == 5 else (1,) + v.type.shape
    n, c, depth, h, w = shape
    y = hw(reshape(ctx, v, (n, c * depth, h, w)))
    oh, ow = y.type.shape[2:]
    y = d(reshape(ctx, y, (n, c, depth, oh * ow)))
    out = (n, c, y.type.shape[2], oh, ow)
    return reshape(ctx, y, out if v.type.rank == 5 else out[1:])


@converter(aten.max_pool3d_with_indices.default, aten.max_pool3d.default, F.max_pool3d,
           emits=("qir.max_pool2d",))
def max_pool3d(ctx: Context, input: Any, kernel_size: Any, stride: Any = None,
               padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Any:
    if return_indices:
        raise ConversionError("max_pool3d(return_indices=True): qir does not compute indices")
    k = int_list(kernel_size, 3, "kernel_size")
    s = int_list(stride, 3, "stride") if stride not in (None, [], ()) else k
    p, dil = int_list(padding, 3, "padding"), int_list(dilation, 3, "dilation")

    def pool(axes: slice, tail: list[int], tail0: list[int]):
        return lambda v: ctx.emit("qir.max_pool2d", [v], {
            "kernel": k[axes] + tail, "stride": s[axes] + tail, "padding": p[axes] + tail0,
            "dilation": dil[axes] + tail, "ceil_mode": bool(ceil_mode)})

    out = _pool3d(ctx, input, pool(slice(1, 3), [], []), pool(slice(0, 1), [1], [0]))
    if ctx.node.target is aten.max_pool3d_with_indices.default:
        return [out, Unavailable("the indices of max_pool3d")]
    return out


@converter(aten.avg_pool3d.default, F.avg_pool3d, emits=("qir.avg_pool2d", "qir.mul"))
def avg_pool3d(ctx: Context, input: Any, kernel_size: Any, stride: Any = None,
               padding: Any = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Any = None) -> Value:
    """With divisor_override both pools sum (divisor 1), then one division."""
    k = int_list(kernel_size, 3, "kernel_size")
    s = int_list(stride, 3, "stride") if stride not in (None, [], ()) else k
    p = int_list(padding, 3, "padding")
    div = None if divisor_override is None else 1

    def pool(axes: slice, tail: list[int], tail0: list[int]):
        return lambda v: ctx.emit("qir.avg_pool2d", [float_input(ctx, v)], {
            "kernel": k[axes] + tail, "stride": s[axes] + tail, "padding": p[axes] + tail0,
            "ceil_mode": bool(ceil_mode), "count_include_pad": bool(count_include_pad),
            "divisor_override": div})

    out = _pool3d(ctx, input, pool(slice(1, 3), [], []), pool(slice(0, 1), [1], [0]))
    if divisor_override is not None:
        out = ctx.emit("qir.div", [out, ctx.value(float(divisor_override),
                                                  str(out.type.elem))])
    return out


@converter(aten._adaptive_avg_pool3d.default, aten.adaptive_avg_pool3d.default,
           F.adaptive_avg_pool3d, emits=("qir.adaptive_avg_pool2d",))
def adaptive_avg_pool3d(ctx: Context, input: Any, output_size: Any) -> Value:
    v = ctx.value(input)
    size = _adaptive_size(output_size, v.type.shape[-3:])
    return _pool3d(ctx, v,
                   lambda y: ctx.emit("qir.adaptive_avg_pool2d", [float_input(ctx, y)],
                                      {"output_size": size[1:]}),
                   lambda y: ctx.emit("qir.adaptive_avg_pool2d", [y],
                                      {"output_size": [size[0], y.type.shape[3]]}))


# --- reductions ----------------------------------------------------------------------------


def reduce(ctx: Context, op: str, x: Any, dim: Any, keepdim: bool,
           dtype: torch.dtype | None = None) -> Value:
    v = ctx.value(x)
    if dtype is not None:
        v = ctx.cast(v, qir_elem(dtype))
    elif op in ("qir.reduce_sum", "qir.reduce_prod") and \
            v.type.elem in ("bool", "i8", "u8", "i16", "i32"):
        v = ctx.cast(v, "i64")  # torch sums and multiplies integers in int64
    if op == "qir.reduce_mean":
        v = float_input(ctx, v)
    axes = dims_arg(dim, v.type.rank)
    if not axes:  # a 0-d tensor
        return v
    return ctx.emit(op, [v], {"axes": axes, "keepdims": bool(keepdim)})


@converter(aten.mean.dim, aten.mean.default, torch.mean, (M, "mean"),
           emits=("qir.reduce_mean",))
def mean(ctx: Context, input: Any, dim: Any = None, keepdim: bool = False,
         dtype: torch.dtype | None = None, out: None = None) -> Value:
    return reduce(ctx, "qir.reduce_mean", input, dim, keepdim, dtype)


@converter(aten.sum.dim_IntList, aten.sum.default, torch.sum, (M, "sum"),
           emits=("qir.reduce_sum",))
def sum_(ctx: Context, input: Any, dim: Any = None, keepdim: bool = False,
         dtype: torch.dtype | None = None, out: None = None) -> Value:
    return reduce(ctx, "qir.reduce_sum", input, dim, keepdim, dtype)


@converter(aten.prod.default, aten.prod.dim_int, torch.prod, (M, "prod"),
           emits=("qir.reduce_prod",))
def prod(ctx: Context, input: Any, dim: Any = None, keepdim: bool = False,
         dtype: torch.dtype | None = None) -> Value:
    """The product over one dim (or all), multiplied in index order."""
    return reduce(ctx, "qir.reduce_prod", input, dim, keepdim, dtype)


@converter(aten.amax.default, torch.amax, (M, "amax"), emits=("qir.reduce_max",))
def amax(ctx: Context, input: Any, dim: Any = (), keepdim: bool = False) -> Value:
    return reduce(ctx, "qir.reduce_max", input, dim, keepdim)


@converter(aten.amin.default, torch.amin, (M, "amin"), emits=("qir.reduce_min",))
def amin(ctx: Context, input: Any, dim: Any = (), keepdim: bool = False) -> Value:
    return reduce(ctx, "qir.reduce_min", input, dim, keepdim)


def _max_min(op: str, arg_op: str, binop: str):
    def lower(ctx: Context, input: Any, dim: Any = None, keepdim: bool = False) -> Any:
        if dim is None:
            return reduce(ctx, op, input, None, False)
        if not isinstance(dim, int):  # torch.max(a, b) is the elementwise maximum
            return binary(ctx, binop, input, dim)
        values = reduce(ctx, op, input, dim, keepdim)
        if arg_op == "qir.argmax":
            indices = ctx.emit("qir.argmax", [ctx.value(input)], {"axis": dim,
                                                                  "keepdims": bool(keepdim)})
        else:
            indices = Unavailable("the indices of min(dim)")
        return [values, indices]

    return lower


converter(aten.max.dim, aten.max.default, aten.max.other, torch.max, (M, "max"),
          emits=("qir.reduce_max", "qir.argmax", "qir.maximum"))(
    _max_min("qir.reduce_max", "qir.argmax", "qir.maximum"))
converter(aten.min.dim, aten.min.default, aten.min.other, torch.min, (M, "min"),
          emits=("qir.reduce_min", "qir.minimum"))(
    _max_min("qir.reduce_min", "", "qir.minimum"))


@converter(aten.argmax.default, torch.argmax, (M, "argmax"), emits=("qir.argmax",))
def argmax(ctx: Context, input: Any, dim: int | None = None, keepdim: bool = False) -> Value:
    v = ctx.value(input)
    if dim is None:  # over the flattened tensor
        flat = reshape(ctx, v, (v.type.numel,))
        out = ctx.emit("qir.argmax", [flat], {"axis": 0})
        return reshape(ctx, out, [1] * v.type.rank) if keepdim else out
    return ctx.emit("qir.argmax", [v], {"axis": int(dim), "keepdims": bool(keepdim)})


@converter(aten.cumsum.default, torch.cumsum, (M, "cumsum"), emits=("qir.cumsum",))
def cumsum(ctx: Context, input: Any, dim: int, dtype: torch.dtype | None = None) -> Value:
    v = ctx.value(input)
    v = ctx.cast(v, qir_elem(dtype) if dtype is not None else str(ctx.out_type.elem))
    return ctx.emit("qir.cumsum", [v], {"axis": int(dim)})


def var(ctx: Context, x: Any, dim: Any, correction: float, keepdim: bool) -> Value:
    """sum((x - mean)^2) / (N - correction) over dim."""
    v = float_input(ctx, x)
    axes = dims_arg(dim, v.type.rank)
    n = 1
    for a in axes:
        n *= v.type.shape[a]
    mu = ctx.emit("qir.reduce_mean", [v], {"axes": axes, "keepdims": True})
    d = ctx.emit("qir.sub", [v, mu])
    ss = ctx.emit("qir.reduce_sum", [ctx.emit("qir.mul", [d, d])],
                  {"axes": axes, "keepdims": bool(keepdim)})
    return binary(ctx, "qir.div", ss, float(max(n - correction, 0)))


def _correction(unbiased: bool | None, correction: Any) -> float:
    if correction is not None:
        return float(correction)
    return 1.0 if unbiased is None or unbiased else 0.0


@converter(aten.var.correction, aten.var.dim, torch.var, (M, "var"),
           emits=("qir.reduce_mean", "qir.sub", "qir.mul", "qir.reduce_sum", "qir.div"))
def var_(ctx: Context, input: Any, dim: Any = None, unbiased: bool | None = None,
         keepdim: bool = False, *, correction: Any = None) -> Value:
    if isinstance(dim, bool):  # torch.var(x, False): the legacy (input, unbiased) form
        dim, unbiased = None, dim
    return var(ctx, input, dim, _correction(unbiased, correction), keepdim)


@converter(aten.std.correction, aten.std.dim, torch.std, (M, "std"),
           emits=("qir.reduce_mean", "qir.sub", "qir.mul", "qir.reduce_sum", "qir.div",
                  "qir.sqrt"))
def std_(ctx: Context, input: Any, dim: Any = None, unbiased: bool | None = None,
         keepdim: bool = False, *, correction: Any = None) -> Value:
    return ctx.emit("qir.sqrt", [var_(ctx, input, dim, unbiased, keepdim,
                                      correction=correction)])


def _any_all(op: str):
    def lower(ctx: Context, input: Any, dim: Any = None, keepdim: bool = False) -> Value:
        """any/all as max/min of 0/1 integers, compared back to bool."""
        v = ctx.value(input)
        if v.type.elem != "bool":
            v = ctx.emit("qir.ne", [v, ctx.value(0, str(v.type.elem))])
        ints = ctx.cast(v, "i32")
        axes = dims_arg(dim, v.type.rank)
        if axes:
            ints = ctx.emit(op, [ints], {"axes": axes, "keepdims": bool(keepdim)})
        return ctx.emit("qir.ne", [ints, ctx.value(0, "i32")])

    return lower


converter(aten.any.dim, aten.any.dims, aten.any.default, torch.any, (M, "any"),
          emits=("qir.cast", "qir.reduce_max", "qir.ne"))(_any_all("qir.reduce_max"))
converter(aten.all.dim, aten.all.dims, aten.all.default, torch.all, (M, "all"),
          emits=("qir.cast", "qir.reduce_min", "qir.ne"))(_any_all("qir.reduce_min"))


@converter(aten.linalg_vector_norm.default, torch.linalg.vector_norm, torch.norm, (M, "norm"),
           emits=("qir.abs", "qir.mul", "qir.reduce_sum", "qir.sqrt", "qir.reduce_max",
                  "qir.reduce_min", "qir.pow", "qir.ne", "qir.cast"))
def vector_norm(ctx: Context, x: Any, ord: Any = 2, dim: Any = None, keepdim: bool = False,
                *, dtype: torch.dtype | None = None) -> Value:
    """torch.linalg.vector_norm (F.normalize's norm): ord 2 as sqrt(sum x*x), 1 as
    sum |x|, inf / -inf as max / min |x|, 0 as the count of non-zeros, other p as
    (sum |x|^p)^(1/p); a float computation."""
    v = float_input(ctx, x)
    if dtype is not None:
        v = ctx.cast(v, qir_elem(dtype))
    axes = dims_arg(dim, v.type.rank)
    attrs = {"axes": axes, "keepdims": bool(keepdim)}
    p = 2.0 if ord in (None, "fro") else float(ord)
    if p == 2:
        return ctx.emit("qir.sqrt", [ctx.emit("qir.reduce_sum", [ctx.emit("qir.mul", [v, v])],
                                              attrs)])
    a = ctx.emit("qir.abs", [v])
    if p == 1:
        return ctx.emit("qir.reduce_sum", [a], attrs)
    if p == float("inf"):
        return ctx.emit("qir.reduce_max", [a], attrs)
    if p == float("-inf"):
        return ctx.emit("qir.reduce_min", [a], attrs)
    elem = str(v.type.elem)
    if p == 0:
        nz = ctx.cast(ctx.emit("qir.ne", [v, ctx.value(0.0, elem)]), elem)
        return ctx.emit("qir.reduce_sum", [nz], attrs)
    powered = ctx.emit("qir.pow", [a, ctx.value(p, elem)])
    return ctx.emit("qir.pow", [ctx.emit("qir.reduce_sum", [powered], attrs),
                                ctx.value(1.0 / p, elem)])


@converter(F.normalize, emits=("qir.mul", "qir.reduce_sum", "qir.sqrt", "qir.clamp",
                               "qir.div"))
def normalize(ctx: Context, input: Any, p: float = 2.0, dim: int = 1, eps: float = 1e-12,
              out: None = None) -> Value:
    """F.normalize (symbolic_trace keeps it whole): x / max(norm_p(x, dim), eps)."""
    v = float_input(ctx, input)
    from frontends.converters.arith import clamp

    norm = clamp(ctx, vector_norm(ctx, v, p, dim, True), min=float(eps))
    return binary(ctx, "qir.div", v, norm)


@converter(aten.argmin.default, torch.argmin, (M, "argmin"), emits=("qir.neg", "qir.argmax"))
def argmin(ctx: Context, input: Any, dim: int | None = None, keepdim: bool = False) -> Value:
    """The argmax of -x (the first minimum, as torch); integers through float64, exact
    for |x| < 2^53."""
    v = ctx.value(input)
    if not str(v.type.elem).startswith(("f", "bf")):
        v = ctx.cast(v, "f64")
    return argmax(ctx, ctx.emit("qir.neg", [v]), dim, keepdim)


# --- distances -----------------------------------------------------------------------------


@converter(aten._cdist_forward.default, aten.cdist.default, torch.cdist,
           emits=("qir.sub", "qir.abs", "qir.mul", "qir.reduce_sum", "qir.sqrt"))
def cdist(ctx: Context, x1: Any, x2: Any, p: float = 2.0, compute_mode: Any = None) -> Value:
    """||x1[i] - x2[j]||_p for every pair, from the differences directly (torch may use
    a matmul form for p=2 on large inputs, which is less exact)."""
    a, b = float_input(ctx, x1), float_input(ctx, x2)
    if a.type.rank < 2 or b.type.rank != a.type.rank:
        raise ConversionError(f"cdist wants two inputs of one rank >= 2, got {a.type} and "
                              f"{b.type}")
    a = reshape(ctx, a, a.type.shape[:-1] + (1, a.type.shape[-1]))
    b = reshape(ctx, b, b.type.shape[:-2] + (1,) + b.type.shape[-2:])
    diff = ctx.emit("qir.sub", [a, b])
    return vector_norm(ctx, diff, p, -1, False)


@converter(aten._pdist_forward.default, aten.pdist.default, F.pdist,
           emits=("qir.gather", "qir.sub", "qir.abs", "qir.mul", "qir.reduce_sum", "qir.sqrt"))
def pdist(ctx: Context, x: Any, p: float = 2.0) -> Value:
    """cdist of the rows with themselves, upper triangle (i < j) in row-major order."""
    v = float_input(ctx, x)
    if v.type.rank != 2:
        raise ConversionError(f"pdist wants a rank 2 input, got {v.type}")
    i, j = np.triu_indices(v.type.shape[0], k=1)
    rows_i = ctx.emit("qir.gather", [v, ctx.constant(i.astype(np.int64))], {"axis": 0})
    rows_j = ctx.emit("qir.gather", [v, ctx.constant(j.astype(np.int64))], {"axis": 0})
    return vector_norm(ctx, ctx.emit("qir.sub", [rows_i, rows_j]), p, -1, False)
