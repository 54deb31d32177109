"""Layers in functional and ATen form: convolution, linear/matmul, normalisation,
embedding, attention, dropout and padding. Module classes delegate here (modules.py)."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from frontends.common import ConversionError, Unavailable, converter, torch_dtype
from frontends.context import Context
from frontends.converters.util import binary, int_list, reshape, scalar_value
from qir import Value

aten = torch.ops.aten
M = "call_method"

# --- convolution -----------------------------------------------------------------------------


def conv_pads(padding: Any, nd: int, kernel: list[int], dilation: list[int],
              stride: list[int]) -> list[int]:
    """qir's padding (all begins, then all ends) from torch's int / list / 'same' / 'valid'.
    'same' pads dilation*(k-1) in total, the odd element at the end, as torch does."""
    if isinstance(padding, str):
        if padding == "valid":
            return [0] * (2 * nd)
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ConversionError("padding='same' needs stride 1 (torch rejects it too)")
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            return [t // 2 for t in total] + [t - t // 2 for t in total]
        raise ConversionError(f"unknown padding {padding!r}")
    pads = int_list(padding, nd, "padding")
    return pads + pads


def conv(ctx: Context, nd: int, x: Any, weight: Any, bias: Any, stride: Any, padding: Any,
         dilation: Any, groups: int) -> Value:
    """N-d convolution; an unbatched input (rank nd+1) gets a batch dim and loses it again."""
    if nd not in (1, 2):
        raise ConversionError(f"conv{nd}d: qir has 1-d and 2-d convolution only")
    v, w = ctx.value(x), ctx.value(weight)
    operands = [v, w] + ([ctx.value(bias)] if bias is not None else [])
    stride, dilation = int_list(stride, nd, "stride"), int_list(dilation, nd, "dilation")
    pads = conv_pads(padding, nd, list(w.type.shape[2:]), dilation, stride)
    unbatched = v.type.rank == nd + 1
    if unbatched:
        operands[0] = reshape(ctx, v, (1,) + v.type.shape)
    out = ctx.emit(f"qir.conv{nd}d", operands, {"stride": stride, "padding": pads,
                                               "dilation": dilation, "groups": int(groups)})
    return reshape(ctx, out, out.type.shape[1:]) if unbatched else out


@converter(aten.conv1d.default, aten.conv1d.padding, F.conv1d, emits=("qir.conv1d",))
def conv1d(ctx: Context, input: Any, weight: Any, bias: Any = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Value:
    return conv(ctx, 1, input, weight, bias, stride, padding, dilation, groups)


@converter(aten.conv2d.default, aten.conv2d.padding, F.conv2d, emits=("qir.conv2d",))
def conv2d(ctx: Context, input: Any, weight: Any, bias: Any = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Value:
    return conv(ctx, 2, input, weight, bias, stride, padding, dilation, groups)


@converter(aten.convolution.default, emits=("qir.conv1d", "qir.conv2d"))
def convolution(ctx: Context, input: Any, weight: Any, bias: Any, stride: Any, padding: Any,
                dilation: Any, transposed: bool, output_padding: Any, groups: int) -> Value:
    if transposed:
        raise ConversionError("transposed convolution: qir has no conv_transpose")
    nd = ctx.value(weight).type.rank - 2
    return conv(ctx, nd, input, weight, bias, stride, padding, dilation, groups)


# --- linear and matmul ---------------------------------------------------------------------


@converter(aten.linear.default, F.linear, emits=("qir.linear",))
def linear(ctx: Context, input: Any, weight: Any, bias: Any = None) -> Value:
    operands = [ctx.value(input), ctx.value(weight)]
    if bias is not None:
        operands.append(ctx.value(bias))
    return ctx.emit("qir.linear", operands)


@converter(aten.matmul.default, aten.mm.default, aten.bmm.default, torch.matmul, torch.mm,
           torch.bmm, (M, "matmul"), (M, "mm"), (M, "bmm"), emits=("qir.matmul",))
def matmul(ctx: Context, input: Any, other: Any, out: None = None) -> Value:
    return binary(ctx, "qir.matmul", input, other)


@converter(operator.matmul, emits=("qir.matmul",))
def operator_matmul(ctx: Context, a: Any, b: Any) -> Value:
    return binary(ctx, "qir.matmul", a, b)


def _transposed_param(v: Value) -> Value | None:
    """The [N, K] parameter behind `permute(param, [1, 0])`, the way core ATen spells a
    linear layer's weight (addmm(bias, x, w.t())); None for anything else."""
    op = v.owner
    if op is None or op.name != "qir.permute" or op.attr("perm") != [1, 0]:
        return None
    src = op.operands[0]
    return src if src.owner is not None and src.owner.name == "qir.param" else None


def _scale(ctx: Context, v: Value, factor: Any) -> Value:
    return v if factor == 1 else binary(ctx, "qir.mul", v, factor)


@converter(aten.addmm.default, aten.baddbmm.default, torch.addmm, torch.baddbmm,
           emits=("qir.linear", "qir.matmul", "qir.add"))
def addmm(ctx: Context, input: Any, mat1: Any, mat2: Any, beta: Any = 1,
          alpha: Any = 1) -> Value:
    """beta * input + alpha * (mat1 @ mat2); `addmm(b, x, w.t())` becomes qir.linear again so
    the weight keeps its [out, in] layout (per-channel quantization needs it)."""
    a, b = ctx.value(mat1), ctx.value(mat2)
    bias = ctx.value(input)
    weight = _transposed_param(b) if a.type.rank == 2 else None
    if weight is not None and beta == 1 and alpha == 1 and bias.type.shape == (
            weight.type.shape[0],):
        return ctx.emit("qir.linear", [a, weight, bias])
    prod = _scale(ctx, binary(ctx, "qir.matmul", a, b), alpha)
    if beta == 0:
        return prod
    return binary(ctx, "qir.add", _scale(ctx, bias, beta), prod)


@converter(aten.t.default, torch.t, (M, "t"), emits=("qir.permute",))
def t(ctx: Context, x: Any) -> Value:
    v = ctx.value(x)
    return v if v.type.rank < 2 else ctx.emit("qir.permute", [v], {"perm": [1, 0]})


# --- normalisation -------------------------------------------------------------------------


def _ones_like_channel(ctx: Context, n: int, elem: str) -> Value:
    return ctx.constant(np.ones(n, dtype=ctx.value(0.0, elem).type.dtype))


def batch_norm(ctx: Context, x: Any, mean: Any, var: Any, weight: Any, bias: Any,
               eps: float, training: bool = False) -> Value:
    if training or mean is None or var is None:
        return batch_norm_batch_stats(ctx, x, weight, bias, eps)
    v = ctx.value(x)
    operands = [v, ctx.value(mean), ctx.value(var)]
    if weight is not None or bias is not None:
        c = v.type.shape[1]
        operands.append(ctx.value(weight) if weight is not None
                        else _ones_like_channel(ctx, c, str(v.type.elem)))
        if bias is not None:
            operands.append(ctx.value(bias))
    return ctx.emit("qir.batch_norm", operands, {"eps": float(eps), "axis": 1})


def batch_norm_batch_stats(ctx: Context, x: Any, weight: Any, bias: Any, eps: float) -> Value:
    """Batch norm with the batch's own statistics (a model in training mode, or without
    running statistics): per channel over batch and space, the biased variance, as torch.
    It is a layer norm of the channel-first view, then the per-channel affine."""
    v = ctx.value(x)
    if v.type.rank < 2:
        raise ConversionError(f"batch_norm wants rank >= 2, got {v.type}")
    rank, c = v.type.rank, v.type.shape[1]
    perm = [1, 0] + list(range(2, rank))
    y = ctx.emit("qir.permute", [v], {"perm": perm})
    y = ctx.emit("qir.layer_norm", [y], {"normalized_ndim": rank - 1, "eps": float(eps)})
    y = ctx.emit("qir.permute", [y], {"perm": perm})
    channel = (1, c) + (1,) * (rank - 2)
    if weight is not None:
        y = ctx.emit("qir.mul", [y, reshape(ctx, ctx.value(weight), channel)])
    if bias is not None:
        y = ctx.emit("qir.add", [y, reshape(ctx, ctx.value(bias), channel)])
    return y


@converter(aten._native_batch_norm_legit.default, aten._native_batch_norm_legit.no_stats,
           emits=("qir.batch_norm", "qir.layer_norm", "qir.permute", "qir.mul", "qir.add"))
def native_batch_norm_legit(ctx: Context, input: Any, weight: Any, bias: Any, *args: Any
                            ) -> list:
    """(input, weight, bias, running_mean, running_var, training, momentum, eps) or, with
    no_stats, (input, weight, bias, training, momentum, eps). Running statistics are not
    updated: qir compiles inference."""
    if len(args) == 5:
        mean, var, training, _, eps = args
    else:
        (training, _, eps), mean, var = args, None, None
    out = batch_norm(ctx, input, mean, var, weight, bias, eps, training)
    return [out, Unavailable("batch_norm's saved mean"), Unavailable("batch_norm's saved invstd")]


@converter(aten.batch_norm.default, emits=("qir.batch_norm",))
def aten_batch_norm(ctx: Context, input: Any, weight: Any, bias: Any, running_mean: Any,
                    running_var: Any, training: bool, momentum: float, eps: float,
                    cudnn_enabled: bool = False) -> Value:
    return batch_norm(ctx, input, running_mean, running_var, weight, bias, eps, training)


@converter(aten._native_batch_norm_legit_no_training.default, emits=("qir.batch_norm",))
def native_batch_norm(ctx: Context, input: Any, weight: Any, bias: Any, running_mean: Any,
                      running_var: Any, momentum: float, eps: float) -> list:
    out = batch_norm(ctx, input, running_mean, running_var, weight, bias, eps)
    return [out, Unavailable("batch_norm's saved mean"), Unavailable("batch_norm's saved invstd")]


@converter(F.batch_norm, emits=("qir.batch_norm",))
def f_batch_norm(ctx: Context, input: Any, running_mean: Any, running_var: Any,
                 weight: Any = None, bias: Any = None, training: bool = False,
                 momentum: float = 0.1, eps: float = 1e-5) -> Value:
    return batch_norm(ctx, input, running_mean, running_var, weight, bias, eps, training)


@converter(aten.layer_norm.default, F.layer_norm, emits=("qir.layer_norm",))
def layer_norm(ctx: Context, input: Any, normalized_shape: Any, weight: Any = None,
               bias: Any = None, eps: float = 1e-5, cudnn_enable: bool = True) -> Value:
    v = ctx.value(input)
    n = len(int_list(normalized_shape, None, "normalized_shape"))
    operands = [v]
    if weight is not None or bias is not None:
        operands.append(ctx.value(weight) if weight is not None else ctx.constant(
            np.ones(v.type.shape[-n:], dtype=v.type.dtype)))
        if bias is not None:
            operands.append(ctx.value(bias))
    return ctx.emit("qir.layer_norm", operands, {"normalized_ndim": n, "eps": float(eps)})


@converter(aten.native_layer_norm.default, emits=("qir.layer_norm",))
def native_layer_norm(ctx: Context, input: Any, normalized_shape: Any, weight: Any,
                      bias: Any, eps: float) -> list:
    return [layer_norm(ctx, input, normalized_shape, weight, bias, eps),
            Unavailable("layer_norm's mean"), Unavailable("layer_norm's rstd")]


@converter(aten.group_norm.default, F.group_norm, emits=("qir.group_norm",))
def group_norm(ctx: Context, input: Any, num_groups: int, weight: Any = None, bias: Any = None,
               eps: float = 1e-5, cudnn_enabled: bool = True) -> Value:
    v = ctx.value(input)
    operands = [v]
    if weight is not None or bias is not None:
        operands.append(ctx.value(weight) if weight is not None
                        else _ones_like_channel(ctx, v.type.shape[1], str(v.type.elem)))
        if bias is not None:
            operands.append(ctx.value(bias))
    return ctx.emit("qir.group_norm", operands, {"groups": int(num_groups), "eps": float(eps)})


@converter(aten.native_group_norm.default, emits=("qir.group_norm",))
def native_group_norm(ctx: Context, input: Any, weight: Any, bias: Any, N: int, C: int,
                      HxW: int, group: int, eps: float) -> list:
    return [group_norm(ctx, input, group, weight, bias, eps),
            Unavailable("group_norm's mean"), Unavailable("group_norm's rstd")]


@converter(aten.rms_norm.default, F.rms_norm,
           emits=("qir.mul", "qir.reduce_mean", "qir.add", "qir.rsqrt"))
def rms_norm(ctx: Context, input: Any, normalized_shape: Any, weight: Any = None,
             eps: float | None = None) -> Value:
    """x * rsqrt(mean(x^2 over the normalized dims) + eps) * weight."""
    v = ctx.value(input)
    n = len(int_list(normalized_shape, None, "normalized_shape"))
    if eps is None:  # torch's default: the machine epsilon of the input dtype
        eps = float(torch.finfo(torch_dtype(str(v.type.elem))).eps)
    sq = ctx.emit("qir.mul", [v, v])
    axes = list(range(v.type.rank - n, v.type.rank))
    ms = ctx.emit("qir.reduce_mean", [sq], {"axes": axes, "keepdims": True})
    inv = ctx.emit("qir.rsqrt", [binary(ctx, "qir.add", ms, float(eps))])
    out = ctx.emit("qir.mul", [v, inv])
    return out if weight is None else binary(ctx, "qir.mul", out, weight)


# --- embedding and attention ----------------------------------------------------------------


@converter(aten.embedding.default, emits=("qir.embedding",))
def embedding(ctx: Context, weight: Any, indices: Any, padding_idx: int = -1,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Value:
    return ctx.emit("qir.embedding", [ctx.value(weight), ctx.value(indices)])


@converter(F.embedding, emits=("qir.embedding",))
def f_embedding(ctx: Context, input: Any, weight: Any, padding_idx: int | None = None,
                max_norm: float | None = None, norm_type: float = 2.0,
                scale_grad_by_freq: bool = False, sparse: bool = False) -> Value:
    if max_norm is not None:
        raise ConversionError("embedding with max_norm renormalises the table in place")
    return embedding(ctx, weight, input)


def _repeat_heads(ctx: Context, v: Value, times: int) -> Value:
    """[B, H, S, D] -> [B, H*times, S, D], each head repeated `times` times (GQA)."""
    *batch, h, s, d = v.type.shape
    x = reshape(ctx, v, (*batch, h, 1, s, d))
    x = ctx.emit("qir.broadcast_to", [x], {"shape": [*batch, h, times, s, d]})
    return reshape(ctx, x, (*batch, h * times, s, d))


@converter(aten.scaled_dot_product_attention.default, F.scaled_dot_product_attention,
           emits=("qir.scaled_dot_product_attention",))
def sdpa(ctx: Context, query: Any, key: Any, value: Any, attn_mask: Any = None,
         dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
         enable_gqa: bool = False) -> Value:
    if dropout_p:
        raise ConversionError(f"attention dropout_p={dropout_p} is random even in eval mode; "
                              "pass dropout_p=0.0 when not training")
    q, k, v = ctx.value(query), ctx.value(key), ctx.value(value)
    if enable_gqa and q.type.rank >= 3 and k.type.shape[-3] != q.type.shape[-3]:
        times = q.type.shape[-3] // k.type.shape[-3]
        k, v = _repeat_heads(ctx, k, times), _repeat_heads(ctx, v, times)
    operands = [q, k, v]
    if attn_mask is not None:
        m = ctx.value(attn_mask)
        operands.append(m if m.type.elem == "bool" else ctx.cast(m, str(q.type.elem)))
    attrs: dict[str, Any] = {"is_causal": bool(is_causal)}
    if scale is not None:
        attrs["scale"] = float(scale)
    return ctx.emit("qir.scaled_dot_product_attention", operands, attrs)


# --- dropout and padding ----------------------------------------------------------------------


def dropout(ctx: Context, x: Any, p: float, train: bool | None) -> Any:
    if train and p:
        raise ConversionError(f"dropout is active (p={p}, training=True): call model.eval() "
                              "or pass training=self.training")
    return ctx.value(x)


@converter(aten.dropout.default, aten.feature_dropout.default, aten.alpha_dropout.default,
           aten.feature_alpha_dropout.default, emits=())
def aten_dropout(ctx: Context, input: Any, p: float, train: bool) -> Any:
    return dropout(ctx, input, p, train)


@converter(aten.native_dropout.default, emits=())
def native_dropout(ctx: Context, input: Any, p: float, train: bool | None) -> list:
    return [dropout(ctx, input, p, train), Unavailable("the dropout mask")]


@converter(F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
           F.feature_alpha_dropout, emits=())
def f_dropout(ctx: Context, input: Any, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Any:
    return dropout(ctx, input, p, training)


def lower_pad(ctx: Context, x: Any, pads: Any, mode: str = "constant",
              value: Any = None) -> Value:
    """torch pads (last dim first: left, right, then the dim before...): a constant to
    qir.pad; reflect, replicate and circular to a gather per padded dim with constant
    indices (data movement: a quantized tensor keeps its scale)."""
    v = ctx.value(x)
    pairs = int_list(pads, None, "pad")
    if len(pairs) % 2 or len(pairs) // 2 > v.type.rank:
        raise ConversionError(f"pad {pairs} does not fit a rank-{v.type.rank} tensor")
    begins, ends = [0] * v.type.rank, [0] * v.type.rank
    for i in range(len(pairs) // 2):
        begins[-1 - i], ends[-1 - i] = pairs[2 * i], pairs[2 * i + 1]
    if not any(begins + ends):
        return v
    if mode == "constant":
        fill = 0.0 if value is None else float(scalar_value(value, "pad value"))
        return ctx.emit("qir.pad", [v], {"pads": begins + ends, "value": fill})
    for axis, (lo, hi) in enumerate(zip(begins, ends)):
        if lo or hi:
            index = pad_index(v.type.shape[axis], lo, hi, mode)
            v = ctx.emit("qir.gather", [v, ctx.constant(index)], {"axis": axis})
    return v


def pad_index(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """The source position of each of the n + lo + hi padded positions."""
    p = np.arange(-lo, n + hi)
    if mode == "reflect":
        if max(lo, hi) >= n:
            raise ConversionError(f"reflect padding of {max(lo, hi)} needs a dim longer "
                                  f"than {n}")
        return np.abs(n - 1 - np.abs(n - 1 - np.abs(p))).astype(np.int64)
    if mode == "replicate":
        return np.clip(p, 0, n - 1).astype(np.int64)
    if mode == "circular":
        return np.mod(p, n).astype(np.int64)
    raise ConversionError(f"padding mode {mode!r} (constant, reflect, replicate, circular "
                          "are supported)")


def _mode_pad(mode: str):
    def lower(ctx: Context, input: Any, padding: Any) -> Value:
        return lower_pad(ctx, input, padding, mode)

    return lower


for _mode, _targets in {"reflect": (aten.reflection_pad1d.default,
                                    aten.reflection_pad2d.default,
                                    aten.reflection_pad3d.default),
                        "replicate": (aten.replication_pad1d.default,
                                      aten.replication_pad2d.default,
                                      aten.replication_pad3d.default)}.items():
    converter(*_targets, emits=("qir.gather",))(_mode_pad(_mode))


@converter(aten.pad.default, F.pad, emits=("qir.pad", "qir.gather"))
def f_pad(ctx: Context, input: Any, pad: Any, mode: str = "constant",
          value: Any = None) -> Value:
    return lower_pad(ctx, input, pad, mode, value)


@converter(aten.constant_pad_nd.default, emits=("qir.pad",))
def constant_pad_nd(ctx: Context, input: Any, pad: Any, value: Any = 0) -> Value:
    return lower_pad(ctx, input, pad, "constant", value)


# --- resizing ----------------------------------------------------------------------------------


def _source_scale(n_in: int, n_out: int, scale_factor: float | None, align: bool) -> float:
    """PyTorch's ratio from output to input coordinates (area_pixel_compute_scale)."""
    if align:
        return (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    return 1.0 / scale_factor if scale_factor else n_in / n_out


def linear_weights(n_in: int, n_out: int, align: bool, scale_factor: float | None
                   ) -> np.ndarray:
    """[n_out, n_in]: PyTorch's 1-d linear interpolation as a matrix (each row two
    weights summing to 1, at floor(src) and the next sample)."""
    scale = _source_scale(n_in, n_out, scale_factor, align)
    dst = np.arange(n_out, dtype=np.float64)
    src = dst * scale if align else np.maximum((dst + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    m = np.zeros((n_out, n_in), np.float64)
    np.add.at(m, (np.arange(n_out), i0), 1.0 - lam)
    np.add.at(m, (np.arange(n_out), i1), lam)
    return m.astype(np.float32)


def nearest_index(n_in: int, n_out: int, scale_factor: float | None) -> np.ndarray:
    """PyTorch's 'nearest' source index of each output position (floor(dst * scale))."""
    scale = _source_scale(n_in, n_out, scale_factor, False)
    src = np.arange(n_out, dtype=np.float32) * np.float32(scale)  # in float32, as torch
    return np.minimum(np.floor(src).astype(np.int64), n_in - 1)


def resize(ctx: Context, x: Any, mode: str, align: bool, scales: list[float | None]) -> Value:
    """Resize the trailing spatial dims of x to ctx.out_shape: nearest by gathering
    (data movement: a quantized tensor keeps its scale), (bi)linear as constant
    interpolation matrices, one matmul per dim (a float op, or an integer one under int8)."""
    v = ctx.value(x)
    out_shape = ctx.out_shape
    nd = len(scales)
    if v.type.rank != nd + 2:
        raise ConversionError(f"{mode} resize of a rank-{v.type.rank} tensor over {nd} dims")
    for i in range(nd):
        axis = v.type.rank - nd + i
        n_in, n_out = v.type.shape[axis], out_shape[axis]
        if n_in == n_out and not align and scales[i] in (None, 1.0):
            continue
        if mode == "nearest":
            v = ctx.emit("qir.gather", [v, ctx.constant(nearest_index(n_in, n_out, scales[i]))],
                         {"axis": axis})
            continue
        a = ctx.constant(linear_weights(n_in, n_out, align, scales[i]))
        if axis == v.type.rank - 1:  # [..., n_in] @ A^T
            v = ctx.emit("qir.matmul", [v, ctx.emit("qir.permute", [a], {"perm": [1, 0]})])
        else:  # A @ [..., n_in, W]
            v = ctx.emit("qir.matmul", [a, v])
    return v


def _scales(scale_factors: Any, nd: int) -> list[float | None]:
    if scale_factors is None:
        return [None] * nd
    s = list(scale_factors) if isinstance(scale_factors, (list, tuple)) else [scale_factors] * nd
    return [float(f) if f is not None else None for f in s]


@converter(aten.upsample_bilinear2d.vec, aten.upsample_linear1d.vec,
           emits=("qir.matmul", "qir.permute"))
def upsample_linear_vec(ctx: Context, input: Any, output_size: Any, align_corners: bool,
                        scale_factors: Any = None) -> Value:
    nd = ctx.value(input).type.rank - 2
    return resize(ctx, input, "linear", bool(align_corners), _scales(scale_factors, nd))


@converter(aten.upsample_bilinear2d.default, emits=("qir.matmul", "qir.permute"))
def upsample_bilinear2d(ctx: Context, input: Any, output_size: Any, align_corners: bool,
                        scales_h: Any = None, scales_w: Any = None) -> Value:
    return resize(ctx, input, "linear", bool(align_corners), [scales_h, scales_w])


@converter(aten.upsample_nearest2d.vec, aten.upsample_nearest1d.vec, emits=("qir.gather",))
def upsample_nearest_vec(ctx: Context, input: Any, output_size: Any,
                         scale_factors: Any = None) -> Value:
    nd = ctx.value(input).type.rank - 2
    return resize(ctx, input, "nearest", False, _scales(scale_factors, nd))


@converter(aten.upsample_nearest2d.default, emits=("qir.gather",))
def upsample_nearest2d(ctx: Context, input: Any, output_size: Any, scales_h: Any = None,
                       scales_w: Any = None) -> Value:
    return resize(ctx, input, "nearest", False, [scales_h, scales_w])


@converter(F.interpolate, F.upsample, emits=("qir.gather", "qir.matmul", "qir.permute"))
def interpolate(ctx: Context, input: Any, size: Any = None, scale_factor: Any = None,
                mode: str = "nearest", align_corners: bool | None = None,
                recompute_scale_factor: bool | None = None, antialias: bool = False) -> Value:
    nd = ctx.value(input).type.rank - 2
    if antialias:
        raise ConversionError("interpolate(antialias=True) is not supported")
    if mode not in ("nearest", "linear", "bilinear"):
        raise ConversionError(f"interpolate mode {mode!r} is not supported (nearest, linear, "
                              "bilinear are)")
    scales = [None] * nd if size is not None or recompute_scale_factor \
        else _scales(scale_factor, nd)
    return resize(ctx, input, "nearest" if mode == "nearest" else "linear",
                  bool(align_corners), scales)


# --- grid sampling ---------------------------------------------------------------------------


class _Grid:
    """Float arithmetic on sample coordinates, spelled shortly."""

    def __init__(self, ctx: Context, elem: str):
        self.ctx, self.elem = ctx, elem

    def op(self, name: str, *xs: Any) -> Value:
        return self.ctx.emit(f"qir.{name}", [x if isinstance(x, Value) else
                                             self.ctx.value(float(x), self.elem) for x in xs])

    def inside(self, c: Value, size: int) -> Value:
        return self.op("logical_and", self.op("ge", c, 0.0), self.op("le", c, size - 1.0))

    def clip(self, c: Value, size: int) -> Value:
        return self.ctx.emit("qir.clamp", [c], {"min": 0.0, "max": float(size - 1)})

    def reflect(self, c: Value, twice_low: int, twice_high: int) -> Value:
        """torch's reflect_coordinates: c folded into [low, high] by reflections."""
        if twice_low == twice_high:
            return self.op("mul", c, 0.0)
        low, span = twice_low / 2, (twice_high - twice_low) / 2
        c = self.op("abs", self.op("sub", c, low))
        extra = self.op("fmod", c, span)
        flips = self.op("floor", self.op("div", c, span))
        even = self.op("eq", self.op("fmod", flips, 2.0), 0.0)
        return self.ctx.emit("qir.where", [even, self.op("add", extra, low),
                                           self.op("add", self.op("sub", span, extra), low)])


def _source_index(g: _Grid, coord: Value, size: int, padding: int, align: bool) -> Value:
    """grid_sampler_compute_source_index: [-1, 1] to pixel coordinates, then padded."""
    if align:
        c = g.op("mul", g.op("add", coord, 1.0), (size - 1) / 2)
    else:
        c = g.op("div", g.op("sub", g.op("mul", g.op("add", coord, 1.0), float(size)), 1.0),
                 2.0)
    if padding == 1:  # border
        c = g.clip(c, size)
    elif padding == 2:  # reflection
        c = g.reflect(c, 0, 2 * (size - 1)) if align else g.reflect(c, -1, 2 * size - 1)
        c = g.clip(c, size)
    return c


@converter(aten.grid_sampler_2d.default, aten.grid_sampler.default, emits=("qir.gather", "qir.floor", "qir.where",
                                                 "qir.mul", "qir.add", "qir.permute"))
def grid_sampler_2d(ctx: Context, input: Any, grid: Any, interpolation_mode: int = 0,
                    padding_mode: int = 0, align_corners: bool = False) -> Value:
    """F.grid_sample, bilinear or nearest, padding zeros / border / reflection: each tap
    is a gather from the [N*H*W, C] view at n*H*W + y*W + x (clamped into range), its
    weight zero where the tap falls outside. A float island under --int8."""
    if interpolation_mode not in (0, 1):
        raise ConversionError("grid_sample mode='bicubic' is not supported (bilinear and "
                              "nearest are)")
    x = ctx.value(input)
    gv = ctx.value(grid, str(x.type.elem))
    if x.type.rank != 4 or gv.type.rank != 4 or gv.type.shape[-1] != 2:
        raise ConversionError(f"grid_sample wants a 4-d input and an [N, H, W, 2] grid, got "
                              f"{x.type} and {gv.type}")
    n, c, h, w = x.type.shape
    _, ho, wo, _ = gv.type.shape
    elem = str(x.type.elem)
    g = _Grid(ctx, elem)
    table = reshape(ctx, ctx.emit("qir.permute", [x], {"perm": [0, 2, 3, 1]}), (n * h * w, c))
    base = ctx.constant((np.arange(n, dtype=np.int64) * h * w).reshape(n, 1, 1))

    def coord(k: int) -> Value:
        part = ctx.emit("qir.slice", [gv], {"axis": 3, "start": k, "end": k + 1, "step": 1})
        return reshape(ctx, part, (n, ho, wo))

    ix = _source_index(g, coord(0), w, padding_mode, align_corners)
    iy = _source_index(g, coord(1), h, padding_mode, align_corners)

    def tap(px: Value, py: Value, weight: Value | None) -> Value:
        """weight * input[n, :, py, px], zero where (px, py) is outside."""
        ok = g.op("logical_and", g.inside(px, w), g.inside(py, h))
        xi = ctx.cast(g.clip(px, w), "i64")
        yi = ctx.cast(g.clip(py, h), "i64")
        flat = ctx.emit("qir.add", [ctx.emit("qir.add", [
            ctx.emit("qir.mul", [yi, ctx.value(w, "i64")]), xi]), base])
        val = ctx.emit("qir.gather", [table, flat], {"axis": 0})  # [n, ho, wo, c]
        wgt = ok if weight is None else ctx.emit("qir.where", [ok, weight,
                                                               ctx.value(0.0, elem)])
        if weight is None:
            return ctx.emit("qir.where", [reshape(ctx, wgt, (n, ho, wo, 1)), val,
                                          ctx.value(0.0, elem)])
        return ctx.emit("qir.mul", [val, reshape(ctx, wgt, (n, ho, wo, 1))])

    if interpolation_mode == 1:  # nearest: round half to even, as nearbyint
        out = tap(g.op("round", ix), g.op("round", iy), None)
    else:
        x0, y0 = g.op("floor", ix), g.op("floor", iy)
        x1, y1 = g.op("add", x0, 1.0), g.op("add", y0, 1.0)
        wx1, wy1 = g.op("sub", ix, x0), g.op("sub", iy, y0)
        wx0, wy0 = g.op("sub", x1, ix), g.op("sub", y1, iy)
        out = None
        for px, py, wgt in ((x0, y0, g.op("mul", wx0, wy0)), (x1, y0, g.op("mul", wx1, wy0)),
                            (x0, y1, g.op("mul", wx0, wy1)), (x1, y1, g.op("mul", wx1, wy1))):
            t = tap(px, py, wgt)
            out = t if out is None else ctx.emit("qir.add", [out, t])
    return ctx.emit("qir.permute", [out], {"perm": [0, 3, 1, 2]})
