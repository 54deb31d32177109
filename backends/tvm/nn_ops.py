"""Float convolution, linear/matmul, normalisation, embedding, attention and pooling,
with PyTorch's semantics (the numpy interpreter's formulas)."""

from __future__ import annotations

import math

import numpy as np
from tvm import te
from tvm import tirx as tir

from backends.tvm.common import R, const, dtype_of, fused_clamp, scalar, shape_of
from backends.tvm.float_ops import softmax
from backends.tvm.kernels.dense import float_dense, seq_batch_matmul
from backends.tvm.kernels.float_conv import float_conv
from backends.tvm.kernels.weight_dense import weight_dense
from backends.tvm.registry import relax_lowering
from backends.tvm.shape_ops import pad_or_crop
from qir.ops.nn import adaptive_pool_windows, avg_pool_window_counts

# --- convolution, linear, matmul ------------------------------------------------------------


def conv(bb, op, x, w, *, out_dtype: str | None = None, padding=None):
    """PyTorch conv1d/conv2d (NCW/NCHW, OIW/OIHW); padding all begins then all ends."""
    nd = len(shape_of(w)) - 2
    pad = op.attr("padding") if padding is None else padding
    kwargs = dict(strides=op.attr("stride"), padding=pad, dilation=op.attr("dilation"),
                  groups=op.attr("groups"), out_dtype=out_dtype)
    if nd == 1:
        return bb.emit(R.nn.conv1d(x, w, **kwargs))
    return bb.emit(R.nn.conv2d(x, w, **kwargs))


def add_channel_bias(bb, y, b):
    rank = len(shape_of(y))
    return bb.emit(R.add(y, R.reshape(b, (1, -1) + (1,) * (rank - 2))))


def _conv(op, bb, args, params):
    """Through the float conv kernel (backends/tvm/kernels/float_conv.py) when the weight
    is a constant known here, else Relax's conv."""
    w = constant_weight(op.operands[1], params)
    y = None
    if w is not None:
        y = float_conv(bb, args[0], w, op.attr("stride"), op.attr("padding"),
                       op.attr("dilation"), op.attr("groups"))
    if y is None:
        y = conv(bb, op, args[0], args[1])
    if len(args) > 2:
        y = add_channel_bias(bb, y, args[2])
    return fused_clamp(bb, op, y)


relax_lowering("qir.conv1d")(_conv)
relax_lowering("qir.conv2d")(_conv)


@relax_lowering("qir.linear")
def linear(op, bb, args, params):
    """x @ w^T (+ b). With a constant weight known here (a parameter, or a dequantized
    quantized one: the weight-only and fp8 schemes) through the dense kernels
    (backends/tvm/kernels), else Relax's matmul. `accumulate = "sequential"` (bit for
    bit the numpy interpreter): stored int8/int4/fp8 weights dequantized in registers
    (weight_dense), float weights through the float kernel with rounded products, any
    other weight through `seq_matmul`."""
    y = _dense(op, bb, args[0], op.operands[1], params, transposed=False)
    if y is None:
        wt = bb.emit(R.permute_dims(args[1]))
        y = seq_matmul(bb, args[0], wt) if _sequential(op) else bb.emit(R.matmul(args[0], wt))
    if len(args) > 2:
        y = bb.emit(R.add(y, args[2]))
    return fused_clamp(bb, op, y)


@relax_lowering("qir.matmul")
def matmul(op, bb, args, params):
    """lhs @ rhs; a constant 2-d rhs as linear's weight (transposed)."""
    y = None
    if len(shape_of(args[1])) == 2 and len(shape_of(args[0])) >= 1:
        y = _dense(op, bb, args[0], op.operands[1], params, transposed=True)
    if y is None:
        y = (seq_matmul(bb, args[0], args[1]) if _sequential(op)
             else bb.emit(R.matmul(args[0], args[1])))
    return fused_clamp(bb, op, y)


def _sequential(op) -> bool:
    return op.attr("accumulate") == "sequential"


def _dense(op, bb, x, weight, params, transposed: bool):
    """x @ w^T through a dense kernel for a constant weight w [N, K] (stored [K, N] when
    `transposed`), or None."""
    if _sequential(op):
        stored = stored_weight(weight, params, transposed)
        if stored is not None:
            y = weight_dense(bb, x, *stored)
            if y is not None:
                return y
    w = constant_weight(weight, params)
    if w is None or w.ndim != 2:
        return None
    return float_dense(bb, x, w.T if transposed else w, exact=_sequential(op))


def stored_weight(v, params, transposed: bool = False):
    """(q [N, K], scales [N, G], group, format, levels) of `v` = dequantize(param) with
    int8, int4, fp8 or codebook storage and zero points 0, per tensor, per output channel
    or per group of K (q: the stored values; fp8 codes and codebook indices as uint8;
    levels: a codebook's table, else None) — weight_dense's operands; else None."""
    from qir.quant import quant_params

    op = v.owner
    if op is None or op.name != "qir.dequantize" or v.type.rank != 2:
        return None
    src = op.operands[0]
    if src.owner is None or src.owner.name != "qir.param" or src.owner.attr("name") not in params:
        return None
    qt = src.type.quant
    fmt = ({"u4": "cb4", "u8": "cb8"} if qt.is_codebook else {
        "i8": "i8", "i4": "i4", "f8e4m3": "float8_e4m3fn", "f8e5m2": "float8_e5m2"}).get(
        qt.storage)
    scale, zp = quant_params(qt, src.type.shape)
    if fmt is None or np.any(zp != 0):
        return None
    q = np.asarray(params[src.owner.attr("name")])
    s = np.broadcast_to(scale, src.type.shape)
    k_axis = 0 if transposed else 1
    if transposed:
        q, s = q.T, s.T
    if qt.block_size is not None and qt.axis == k_axis:
        group = qt.block_size
    elif qt.axis is None or qt.axis != k_axis:
        group = q.shape[1]
    else:
        return None
    if qt.is_codebook:
        q = q.astype(np.uint8)
    elif fmt.startswith("float8"):
        q = q.view(np.uint8)
    else:
        q = q.astype(np.int8)
    return q, np.ascontiguousarray(s[:, ::group], np.float32), group, fmt, qt.levels


def constant_weight(v, params) -> np.ndarray | None:
    """The float32 values of `v` when the compiler knows them: a float parameter or
    constant, or the dequantize of a quantized parameter (the qir.dequantize rule)."""
    from qir.quant import dequantize_values

    op = v.owner
    if op is None or not (v.type.is_float and v.type.elem == "f32"):
        return None
    if op.name == "qir.param" and op.attr("name") in params:
        return np.asarray(params[op.attr("name")], np.float32)
    if op.name == "qir.constant":
        return np.asarray(op.attr("value"), np.float32).reshape(v.type.shape)
    if op.name == "qir.dequantize":
        src = op.operands[0]
        if src.owner is not None and src.owner.name == "qir.param" \
                and src.owner.attr("name") in params:
            return dequantize_values(np.asarray(params[src.owner.attr("name")]), src.type)
    return None


# --- normalisation ----------------------------------------------------------------------------


@relax_lowering("qir.batch_norm")
def batch_norm(op, bb, args, params):
    """x * alpha + beta, alpha = weight / sqrt(var + eps), beta = bias - mean * alpha."""
    x, mean, var = args[:3]
    weight = args[3] if len(args) > 3 else None
    bias = args[4] if len(args) > 4 else None
    alpha = bb.emit(R.divide(scalar(1.0, x), R.sqrt(R.add(var, scalar(op.attr("eps"), x)))))
    if weight is not None:
        alpha = bb.emit(R.multiply(alpha, weight))
    beta = bb.emit(R.multiply(R.negative(mean), alpha))
    if bias is not None:
        beta = bb.emit(R.add(beta, bias))
    rank = len(shape_of(x))
    shape = [1] * rank
    shape[op.attr("axis") % rank] = -1
    return R.add(R.multiply(x, R.reshape(alpha, shape)), R.reshape(beta, shape))


def mean(bb, x, axes):
    """sum / n over `axes` (kept), the sum in sequential order (TVM's reduction loop)."""
    shape = shape_of(x)
    n = math.prod(shape[a] for a in axes)
    return bb.emit(R.divide(R.sum(x, axis=axes, keepdims=True), scalar(float(n), x)))


def normalize(bb, x, axes, eps: float):
    """(x - mean) / sqrt(var + eps) over `axes`, biased variance, two passes."""
    centered = bb.emit(R.subtract(x, mean(bb, x, axes)))
    var = mean(bb, bb.emit(R.multiply(centered, centered)), axes)
    inv = bb.emit(R.divide(scalar(1.0, x), R.sqrt(R.add(var, scalar(eps, x)))))
    return bb.emit(R.multiply(centered, inv))


@relax_lowering("qir.layer_norm")
def layer_norm(op, bb, args, params):
    x = args[0]
    rank, n = len(shape_of(x)), op.attr("normalized_ndim")
    y = normalize(bb, x, list(range(rank - n, rank)), op.attr("eps"))
    if len(args) > 1:
        y = bb.emit(R.multiply(y, args[1]))
    if len(args) > 2:
        y = bb.emit(R.add(y, args[2]))
    return y


@relax_lowering("qir.group_norm")
def group_norm(op, bb, args, params):
    x = args[0]
    shape = shape_of(x)
    g = op.attr("groups")
    grouped = bb.emit(R.reshape(x, (shape[0], g, -1)))
    y = bb.emit(R.reshape(normalize(bb, grouped, [2], op.attr("eps")), shape))
    channel = (1, -1) + (1,) * (len(shape) - 2)
    if len(args) > 1:
        y = bb.emit(R.multiply(y, R.reshape(args[1], channel)))
    if len(args) > 2:
        y = bb.emit(R.add(y, R.reshape(args[2], channel)))
    return y


# --- embedding, attention -------------------------------------------------------------------


@relax_lowering("qir.embedding")
def embedding(op, bb, args, params):
    """Rows of the table (indices outside the table are clipped, never read out of
    bounds; the interpreter rejects them)."""
    return R.take(args[0], args[1], axis=0, mode="clip")


def seq_matmul(bb, a, b):
    """a @ b with matmul's 1-d promotion and batch broadcasting, each dot product summed
    in order k = 0, 1, ... (docs/semantics.md): through the scheduled kernel, else with
    the products a tensor of their own, so that no multiply-add is fused
    (backends/tvm/exact.py explains why)."""
    a_shape, b_shape = shape_of(a), shape_of(b)
    if len(a_shape) == 1 or len(b_shape) == 1:
        a2 = bb.emit(R.reshape(a, (1,) + a_shape)) if len(a_shape) == 1 else a
        b2 = bb.emit(R.reshape(b, b_shape + (1,))) if len(b_shape) == 1 else b
        y = seq_matmul(bb, a2, b2)
        shape = shape_of(y)
        keep = shape[:-2] + (() if len(a_shape) == 1 else shape[-2:-1]) \
            + (() if len(b_shape) == 1 else shape[-1:])
        return bb.emit(R.reshape(y, keep))
    rank = max(len(a_shape), len(b_shape))
    batch = tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
    if a_shape[:-2] != batch or b_shape[:-2] != batch:  # broadcast the batch dimensions
        a = bb.emit(R.broadcast_to(a, batch + tuple(a_shape[-2:])))
        b = bb.emit(R.broadcast_to(b, batch + tuple(b_shape[-2:])))
    y = seq_batch_matmul(bb, a, b)  # the scheduled kernel (backends/tvm/kernels/dense.py)
    if y is not None:
        return y
    products = bb.emit(R.multiply(R.expand_dims(a, [rank]), R.expand_dims(b, [rank - 2])))
    return bb.emit(R.sum(R.permute_dims(products, list(range(rank - 2)) + [rank - 2, rank,
                                                                           rank - 1]),
                         axis=[rank]))


@relax_lowering("qir.scaled_dot_product_attention")
def sdpa(op, bb, args, params):
    """softmax(q @ k^T * scale + mask) @ v; a bool mask keeps True positions (the others
    get -inf), a float mask is added, is_causal keeps the lower triangle; rows with
    nothing kept give 0. Both products are sequential dot products (seq_matmul)."""
    q, k, v = args[:3]
    scale = op.attr("scale")
    if scale is None:
        scale = 1 / math.sqrt(shape_of(q)[-1])
    rank_k = len(shape_of(k))
    kt = bb.emit(R.permute_dims(k, list(range(rank_k - 2)) + [rank_k - 1, rank_k - 2]))
    scores = bb.emit(R.multiply(seq_matmul(bb, q, kt), scalar(scale, q)))
    neg_inf = scalar(-np.inf, scores)
    if len(args) > 3:
        mask = args[3]
        if dtype_of(mask) == "bool":
            scores = bb.emit(R.where(mask, scores, neg_inf))
        else:
            scores = bb.emit(R.add(scores, mask))
    if op.attr("is_causal"):
        lq, lk = shape_of(scores)[-2:]
        keep = np.tril(np.ones((lq, lk), dtype=bool))
        scores = bb.emit(R.where(const(keep, "bool"), scores, neg_inf))
    probs = softmax(bb, scores, len(shape_of(scores)) - 1)
    return seq_matmul(bb, probs, v)


# --- pooling -----------------------------------------------------------------------------------


def _stride(op) -> list[int]:
    return op.attr("stride") or op.attr("kernel")


def pool_input(bb, op, x, dilation, fill):
    """Pad (or crop) the input exactly to what the op's windows cover: the left padding,
    and on the right up to the end of the last window (ceil_mode may overhang the
    padding, which also counts as padding). The pool itself then runs unpadded."""
    kernel, stride, padding = op.attr("kernel"), _stride(op), op.attr("padding")
    shape = shape_of(x)
    out_hw = op.result.type.shape[2:]
    after = []
    for i in range(2):
        eff = dilation[i] * (kernel[i] - 1) + 1
        need = (out_hw[i] - 1) * stride[i] + eff
        after.append(need - shape[2 + i] - padding[i])
    return pad_or_crop(bb, x, [0, 0, padding[0], padding[1]], [0, 0] + after, fill)


@relax_lowering("qir.max_pool2d")
def max_pool2d(op, bb, args, params):
    """Padding is -inf (integer quantized storage: its minimum, below no stored value)."""
    ty = op.operands[0].type
    fill = ty.quant.storage_min if ty.is_quantized and not ty.quant.is_fp8 else -np.inf
    dilation = op.attr("dilation")
    x = pool_input(bb, op, args[0], dilation, fill)
    if not ty.is_float:  # integer storage: the CPU kernel (backends/tvm/kernels/conv.py)
        from backends.tvm.kernels.conv import max_pool

        y = max_pool(bb, x, op.attr("kernel"), _stride(op), dilation,
                     op.result.type.shape[2:])
        if y is not None:
            return y
    return R.nn.max_pool2d(x, pool_size=op.attr("kernel"), strides=_stride(op),
                           padding=(0, 0, 0, 0), dilation=dilation)


def window_sum(bb, x, kernel, stride, out_hw):
    """Sum over each kh x kw window of NCHW `x` (already padded), row by row in order."""
    def compute(t):
        rh = te.reduce_axis((0, kernel[0]), name="rh")
        rw = te.reduce_axis((0, kernel[1]), name="rw")
        return te.compute(
            tuple(t.shape[:2]) + tuple(out_hw),
            lambda n, c, i, j: te.sum(t[n, c, i * stride[0] + rh, j * stride[1] + rw],
                                      axis=[rh, rw]), name="window_sum")

    return bb.emit_te(compute, x, primfunc_name_hint="window_sum")


@relax_lowering("qir.avg_pool2d")
def avg_pool2d(op, bb, args, params):
    """Each window's sum (on the explicitly padded input) over PyTorch's divisor:
    count_include_pad, the ceil_mode overhang and divisor_override as in
    qir.ops.nn.avg_pool_window_counts."""
    x = args[0]
    kernel, stride, padding = op.attr("kernel"), _stride(op), op.attr("padding")
    out_hw = op.result.type.shape[2:]
    total = window_sum(bb, pool_input(bb, op, x, (1, 1), 0.0), kernel, stride, out_hw)
    override = op.attr("divisor_override")
    if override is not None:
        return R.divide(total, scalar(float(override), total))
    shape = shape_of(x)
    ch, cw = (avg_pool_window_counts(shape[2 + i], kernel[i], stride[i], padding[i],
                                     out_hw[i], op.attr("count_include_pad"))
              for i in range(2))
    return R.divide(total, const(ch[:, None] * cw[None, :], dtype_of(total)))


@relax_lowering("qir.adaptive_avg_pool2d")
def adaptive_avg_pool2d(op, bb, args, params):
    """Each of PyTorch's adaptive windows (qir.ops.nn.adaptive_pool_windows) summed row
    by row in order, over its element count."""
    x = args[0]
    shape = shape_of(x)
    out_hw = op.attr("output_size")
    (sh, nh), (sw, nw) = (adaptive_pool_windows(shape[2 + i], out_hw[i]) for i in range(2))

    def compute(t):
        rh = te.reduce_axis((0, int(nh.max())), name="rh")
        rw = te.reduce_axis((0, int(nw.max())), name="rw")

        def start(i, d):  # floor(i * size / out)
            return tir.floordiv(i * shape[2 + d], out_hw[d])

        def length(i, d):  # ceil((i + 1) * size / out) - start
            return tir.floordiv((i + 1) * shape[2 + d] + out_hw[d] - 1, out_hw[d]) - start(i, d)

        def tap(n, c, i, j):
            # A masked read, clamped into the input: a reduction `where` that depends on
            # the output index was miscompiled for windows of unequal length.
            inside = tir.all(rh < length(i, 0), rw < length(j, 1))
            y = tir.min(start(i, 0) + rh, shape[2] - 1)
            x = tir.min(start(j, 1) + rw, shape[3] - 1)
            return tir.if_then_else(inside, t[n, c, y, x], tir.const(0, t.dtype))

        return te.compute(tuple(t.shape[:2]) + tuple(out_hw),
                          lambda n, c, i, j: te.sum(tap(n, c, i, j), axis=[rh, rw]),
                          name="adaptive_sum")

    total = bb.emit_te(compute, x, primfunc_name_hint="adaptive_sum")
    return R.divide(total, const(nh[:, None] * nw[None, :], dtype_of(total)))
