"""Neural-network ops in float: convolution, linear/matmul, normalisation, embedding,
attention, pooling, reductions. Layouts follow PyTorch: NCHW activations, OIHW weights,
linear weights [out, in]."""

from __future__ import annotations

from qir.diagnostics import QirError
from qir.ops.common import broadcast_shapes, conv_out_dim, norm_axis, require_float, t
from qir.registry import Attr, define_op
from qir.types import TensorType

# --- convolution ----------------------------------------------------------------------


def conv_output_shape(op, nd: int) -> tuple[int, ...]:
    """Output shape of an nd-convolution op (shared by qir.conv* and qir.qconv*)."""
    x, w = t(op, 0), t(op, 1)
    if x.rank != nd + 2 or w.rank != nd + 2:
        raise QirError(f"conv{nd}d wants rank-{nd + 2} input and weight, got {x} and {w}")
    stride, pad, dil = op.attr("stride"), op.attr("padding"), op.attr("dilation")
    groups = op.attr("groups")
    if len(stride) != nd or len(dil) != nd or len(pad) != 2 * nd:
        raise QirError(f"conv{nd}d wants {nd} strides, {nd} dilations and {2 * nd} paddings "
                       "(all begins, then all ends)")
    if groups < 1 or x.shape[1] % groups or w.shape[0] % groups:
        raise QirError(f"groups={groups} must divide input channels {x.shape[1]} and output "
                       f"channels {w.shape[0]}")
    if w.shape[1] * groups != x.shape[1]:
        raise QirError(f"weight {list(w.shape)} expects {w.shape[1] * groups} input channels "
                       f"(groups={groups}), input has {x.shape[1]}")
    if min(stride) < 1 or min(dil) < 1 or min(pad) < 0:
        raise QirError("strides and dilations must be >= 1, paddings >= 0")
    spatial = tuple(conv_out_dim(x.shape[2 + i], w.shape[2 + i], stride[i], pad[i],
                                 pad[nd + i], dil[i]) for i in range(nd))
    if len(op.operands) > 2:
        b = t(op, 2)
        if b.shape != (w.shape[0],):
            raise QirError(f"bias must have shape [{w.shape[0]}], got {b}")
    return (x.shape[0], w.shape[0]) + spatial


# A fused activation is a clamp on the result: relu = clamp_min 0, relu6 = [0, 6].
FUSED_CLAMP = {"clamp_min": Attr("float?", None, doc="fused activation: lower bound"),
               "clamp_max": Attr("float?", None, doc="fused activation: upper bound")}


def conv_attrs(nd: int) -> dict[str, Attr]:
    return {"stride": Attr("ints", [1] * nd), "padding": Attr("ints", [0] * (2 * nd),
            doc="begins of every spatial dim, then ends (ONNX order)"),
            "dilation": Attr("ints", [1] * nd), "groups": Attr("int", 1)}


def _float_conv(nd: int) -> None:
    def infer(op):
        return [TensorType(conv_output_shape(op, nd), t(op).elem)]

    def verify(op):
        for i in range(len(op.operands)):
            require_float(op, i)

    define_op(f"qir.conv{nd}d", ["input", "weight", "bias?"], {**conv_attrs(nd), **FUSED_CLAMP},
              infer=infer,
              verify=verify, doc=f"{nd}-d cross-correlation (PyTorch conv{nd}d), groups "
              "for grouped and depthwise convolution.")


_float_conv(1)
_float_conv(2)


def linear_output_shape(op) -> tuple[int, ...]:
    x, w = t(op, 0), t(op, 1)
    if w.rank != 2 or x.rank < 1 or x.shape[-1] != w.shape[1]:
        raise QirError(f"linear wants input [..., K] and weight [N, K], got {x} and {w}")
    if len(op.operands) > 2 and t(op, 2).shape != (w.shape[0],):
        raise QirError(f"bias must have shape [{w.shape[0]}], got {t(op, 2)}")
    return x.shape[:-1] + (w.shape[0],)


def _verify_all_float(op):
    for i in range(len(op.operands)):
        require_float(op, i)


# How a float linear/matmul sums its products (docs/semantics.md): in any order (BLAS,
# TVM's tiling; results agree to rounding), or each dot product in order k = 0, 1, ...
# with every product rounded, reproducible bit for bit (the weight-only and fp8 schemes).
ACCUMULATE = {"accumulate": Attr("str", "any", choices=("any", "sequential"),
                                 doc="summation order of the dot products")}

define_op("qir.linear", ["input", "weight", "bias?"], {**FUSED_CLAMP, **ACCUMULATE},
          infer=lambda op: [TensorType(linear_output_shape(op), t(op).elem)],
          verify=_verify_all_float, doc="x @ weight.T + bias; weight is [out, in].")


def matmul_output_shape(op) -> tuple[int, ...]:
    a, b = t(op, 0).shape, t(op, 1).shape
    if len(a) < 1 or len(b) < 1:
        raise QirError("matmul operands must have rank >= 1")
    a2 = a if len(a) > 1 else (1,) + a
    b2 = b if len(b) > 1 else b + (1,)
    if a2[-1] != b2[-2]:
        raise QirError(f"matmul contraction mismatch: {list(a)} @ {list(b)}")
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    out = batch + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


define_op("qir.matmul", ["lhs", "rhs"], {**FUSED_CLAMP, **ACCUMULATE},
          infer=lambda op: [TensorType(matmul_output_shape(op), t(op).elem)],
          verify=_verify_all_float, doc="numpy/torch matmul with batch broadcasting.")

# --- normalisation ----------------------------------------------------------------------


def _verify_batch_norm(op):
    _verify_all_float(op)
    x = t(op)
    axis = norm_axis(op.attr("axis"), x.rank)
    for i in range(1, len(op.operands)):
        if t(op, i).shape != (x.shape[axis],):
            raise QirError(f"operand #{i} must have shape [{x.shape[axis]}], got {t(op, i)}")


define_op("qir.batch_norm", ["input", "mean", "var", "weight?", "bias?"],
          {"eps": Attr("float", 1e-5), "axis": Attr("int", 1)},
          infer=lambda op: [t(op)], verify=_verify_batch_norm,
          doc="Inference batch norm: (x - mean) / sqrt(var + eps) * weight + bias.")


def _verify_layer_norm(op):
    _verify_all_float(op)
    x, n = t(op), op.attr("normalized_ndim")
    if not 1 <= n <= x.rank:
        raise QirError(f"normalized_ndim={n} out of range for {x}")
    for i in range(1, len(op.operands)):
        if t(op, i).shape != x.shape[-n:]:
            raise QirError(f"operand #{i} must have shape {list(x.shape[-n:])}, got {t(op, i)}")


define_op("qir.layer_norm", ["input", "weight?", "bias?"],
          {"normalized_ndim": Attr("int", 1, doc="how many trailing dims are normalised"),
           "eps": Attr("float", 1e-5)},
          infer=lambda op: [t(op)], verify=_verify_layer_norm,
          doc="Layer norm over the trailing normalized_ndim dims (biased variance).")


def _verify_group_norm(op):
    _verify_all_float(op)
    x, g = t(op), op.attr("groups")
    if x.rank < 2 or g < 1 or x.shape[1] % g:
        raise QirError(f"groups={g} must divide the channel dim of {x}")
    for i in range(1, len(op.operands)):
        if t(op, i).shape != (x.shape[1],):
            raise QirError(f"operand #{i} must have shape [{x.shape[1]}], got {t(op, i)}")


define_op("qir.group_norm", ["input", "weight?", "bias?"],
          {"groups": Attr("int"), "eps": Attr("float", 1e-5)},
          infer=lambda op: [t(op)], verify=_verify_group_norm,
          doc="Group norm over (C/groups, spatial...) per group, then per-channel affine.")

# --- embedding, attention -----------------------------------------------------------------


def _verify_embedding(op):
    require_float(op, 0)
    if t(op, 0).rank != 2:
        raise QirError(f"embedding table must be rank 2, got {t(op, 0)}")
    if t(op, 1).elem not in ("i64", "i32"):
        raise QirError(f"embedding indices must be i64 or i32, got {t(op, 1)}")


define_op("qir.embedding", ["weight", "indices"],
          infer=lambda op: [TensorType(t(op, 1).shape + t(op, 0).shape[1:], t(op).elem)],
          verify=_verify_embedding, doc="Rows of the table picked by integer indices.")


def _infer_sdpa(op):
    q, k, v = t(op, 0), t(op, 1), t(op, 2)
    if q.rank < 2 or k.shape[-1] != q.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise QirError(f"attention shapes do not fit: q {q}, k {k}, v {v}")
    batch = broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    return [TensorType(batch + (q.shape[-2], v.shape[-1]), q.elem)]


def _verify_sdpa(op):
    for i in range(3):
        require_float(op, i)
    if len(op.operands) > 3:
        m = t(op, 3)
        if m.is_quantized or (m.elem != "bool" and m.elem != t(op).elem):
            raise QirError(f"attention mask must be bool or {t(op).elem}, got {m}")
        q, k = t(op, 0), t(op, 1)
        broadcast_shapes(m.shape, q.shape[:-1] + (k.shape[-2],))
        if op.attr("is_causal"):
            raise QirError("give either a mask or is_causal, not both")


define_op("qir.scaled_dot_product_attention", ["query", "key", "value", "mask?"],
          {"is_causal": Attr("bool", False), "scale": Attr("float?", None,
           doc="defaults to 1/sqrt(head_dim)")},
          infer=_infer_sdpa, verify=_verify_sdpa,
          doc="softmax(q @ k^T * scale + mask) @ v; a bool mask marks positions to keep.")

# --- pooling ---------------------------------------------------------------------------------


def pool_output_shape(op) -> tuple[int, ...]:
    x = t(op)
    if x.rank != 4:
        raise QirError(f"2-d pooling wants an NCHW input, got {x}")
    k, s, p = op.attr("kernel"), op.attr("stride"), op.attr("padding")
    s = s if s else k
    dil = op.attrs.get("dilation", [1, 1]) if "dilation" in op.opdef.attrs else [1, 1]
    if len(k) != 2 or len(s) != 2 or len(p) != 2:
        raise QirError("2-d pooling wants 2 kernel sizes, 2 strides and 2 paddings")
    if any(2 * p[i] > (dil[i] * (k[i] - 1) + 1) for i in range(2)):
        raise QirError(f"padding {p} must be at most half the kernel {k}")
    ceil = op.attr("ceil_mode")
    hw = tuple(conv_out_dim(x.shape[2 + i], k[i], s[i], p[i], p[i], dil[i], ceil)
               for i in range(2))
    return x.shape[:2] + hw


def avg_pool_window_counts(size: int, k: int, s: int, p: int, out: int,
                           include_pad: bool):
    """avg_pool2d's divisor along one dim, per output index (PyTorch's rule): the window
    clipped to the padded input (ceil_mode overhang never counts), and to the input itself
    unless count_include_pad. Every backend divides by exactly this."""
    import numpy as np

    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)
    if include_pad:
        return end - start
    return np.minimum(end, size) - np.maximum(start, 0)


def adaptive_pool_windows(size: int, out: int):
    """adaptive_avg_pool2d's windows along one dim (PyTorch's rule): output i covers
    inputs floor(i*size/out) .. ceil((i+1)*size/out) - 1. Returns (starts, lengths)."""
    import numpy as np

    i = np.arange(out)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    return start, end - start


_pool_attrs = {"kernel": Attr("ints"), "stride": Attr("ints", [], doc="empty: = kernel"),
               "padding": Attr("ints", [0, 0], doc="symmetric, per spatial dim"),
               "ceil_mode": Attr("bool", False)}


def _verify_max_pool(op):
    if not t(op).is_quantized:
        require_float(op)
    elif op.result.type.elem != t(op).elem:
        raise QirError("on a quantized tensor the result keeps the input's quantization")


define_op("qir.max_pool2d", ["input"], {**_pool_attrs, "dilation": Attr("ints", [1, 1])},
          infer=lambda op: [TensorType(pool_output_shape(op), t(op).elem)],
          verify=_verify_max_pool, category="any",
          doc="2-d max pooling over NCHW (padding counts as -inf).")
define_op("qir.avg_pool2d", ["input"],
          {**_pool_attrs, "count_include_pad": Attr("bool", True),
           "divisor_override": Attr("int?", None)},
          infer=lambda op: [TensorType(pool_output_shape(op), t(op).elem)],
          verify=lambda op: require_float(op), doc="2-d average pooling over NCHW.")


def _infer_adaptive(op):
    x = t(op)
    if x.rank != 4:
        raise QirError(f"adaptive_avg_pool2d wants an NCHW input, got {x}")
    size = op.attr("output_size")
    if len(size) != 2 or min(size) < 1:
        raise QirError(f"output_size must be two positive sizes, got {size}")
    return [TensorType(x.shape[:2] + tuple(size), x.elem)]


define_op("qir.adaptive_avg_pool2d", ["input"], {"output_size": Attr("ints")},
          infer=_infer_adaptive, verify=lambda op: require_float(op),
          doc="PyTorch adaptive average pooling to a fixed output size.")

# --- reductions --------------------------------------------------------------------------


def reduce_output_shape(op) -> tuple[int, ...]:
    x = t(op)
    axes = sorted({norm_axis(a, x.rank) for a in op.attr("axes")} if op.attr("axes")
                  else range(x.rank))
    keep = op.attr("keepdims")
    return tuple(1 if i in axes else d for i, d in enumerate(x.shape)
                 if keep or i not in axes)


_reduce_attrs = {"axes": Attr("ints", [], doc="empty: all axes"),
                 "keepdims": Attr("bool", False)}

def _verify_reduce(op):
    if op.name == "qir.reduce_mean":
        require_float(op)
    elif t(op).is_quantized:
        raise QirError(f"{op.name} takes a non-quantized tensor")


for _name, _doc in [("reduce_mean", "mean"), ("reduce_sum", "sum"), ("reduce_max", "max"),
                    ("reduce_min", "min"), ("reduce_prod", "product")]:
    define_op(f"qir.{_name}", ["input"], _reduce_attrs,
              infer=lambda op: [TensorType(reduce_output_shape(op), t(op).elem)],
              verify=_verify_reduce, category="float" if _name == "reduce_mean" else "any",
              doc=f"{_doc} over the given axes.")


def _infer_argmax(op):
    x = t(op)
    axis = norm_axis(op.attr("axis"), x.rank)
    keep = op.attr("keepdims")
    shape = tuple(1 if i == axis else d for i, d in enumerate(x.shape) if keep or i != axis)
    return [TensorType(shape, "i64")]


define_op("qir.argmax", ["input"], {"axis": Attr("int"), "keepdims": Attr("bool", False)},
          infer=_infer_argmax, category="any",
          doc="index of the first maximum along axis (i64).")
define_op("qir.cumsum", ["input"], {"axis": Attr("int")}, infer=lambda op: [t(op)],
          category="any", doc="inclusive cumulative sum along axis.")


def _infer_sort(op):
    x = t(op)
    if x.rank == 0:
        raise QirError(f"{op.name} wants rank >= 1, got {x}")
    axis = norm_axis(op.attr("axis"), x.rank)
    if x.is_quantized and x.quant.axis is not None:
        raise QirError(f"{op.name} on a per-axis quantized tensor is not supported")
    shape = list(x.shape)
    if op.name == "qir.topk":
        k = op.attr("k")
        if not 0 <= k <= shape[axis]:
            raise QirError(f"topk k={k} is out of range for dim {axis} of {x}")
        shape[axis] = k
    return [TensorType(tuple(shape), x.elem), TensorType(tuple(shape), "i64")]


define_op("qir.sort", ["input"], {"axis": Attr("int", -1), "descending": Attr("bool", False)},
          infer=_infer_sort, num_results=2, category="any",
          doc="values sorted along axis and their indices (i64); stable: equal values keep "
              "their order. NaN sorts above every number.")
define_op("qir.topk", ["input"], {"k": Attr("int"), "axis": Attr("int", -1),
                                  "largest": Attr("bool", True)},
          infer=_infer_sort, num_results=2, category="any",
          doc="the k largest (or smallest) values along axis, in sorted order, and their "
              "indices (i64): the first k of a stable sort.")
