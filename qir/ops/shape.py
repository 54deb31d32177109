"""Shape and data-movement ops. They move values without changing them, so they accept
quantized tensors; with quantized operands the result keeps the same quantization
(for per-axis types only when the quantized axis survives unchanged)."""

from __future__ import annotations

import numpy as np

from qir.diagnostics import QirError
from qir.ops.common import norm_axis, t
from qir.registry import Attr, define_op
from qir.types import QuantType, TensorType


def _keep_quant(op) -> None:
    """Data movement keeps the input's element type exactly (incl. quant params)."""
    if op.results and op.result.type.elem != t(op).elem:
        raise QirError(f"result element type {op.result.type.elem} differs from the input's "
                       f"{t(op).elem}; data movement keeps the element type")


def _moved_axis_elem(elem, new_axis):
    """Element type after a per-axis quantized axis moves to `new_axis` (None: lost)."""
    if not isinstance(elem, QuantType) or elem.axis is None:
        return elem
    if new_axis is None:
        raise QirError("this op would mix the per-axis quantized dimension with others; "
                       "dequantize first")
    return QuantType(elem.storage, elem.expressed, elem.scales, elem.zero_points,
                     elem.storage_min, elem.storage_max, new_axis, elem.block_size)


def _infer_reshape(op):
    x = t(op)
    shape = list(op.attr("shape"))
    if shape.count(-1) > 1:
        raise QirError("reshape allows at most one -1")
    known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
    if -1 in shape:
        if known == 0 or x.numel % known:
            raise QirError(f"cannot reshape {x} to {shape}")
        shape[shape.index(-1)] = x.numel // known
    if int(np.prod(shape, dtype=np.int64)) != x.numel:
        raise QirError(f"cannot reshape {x} ({x.numel} elements) to {shape}")
    elem = x.elem
    if isinstance(elem, QuantType) and elem.axis is not None:
        # The quantized axis survives if the dims before it multiply to the same count
        # and its own size is kept.
        before = int(np.prod(x.shape[:elem.axis], dtype=np.int64))
        acc, new_axis = 1, None
        for i, d in enumerate(shape):
            if acc == before and d == x.shape[elem.axis]:
                new_axis = i
                break
            acc *= d
        elem = _moved_axis_elem(elem, new_axis)
    return [TensorType(tuple(shape), elem)]


define_op("qir.reshape", ["input"], {"shape": Attr("ints", doc="one entry may be -1")},
          infer=_infer_reshape, category="any",
          doc="Same data, new shape (view/flatten/squeeze/unsqueeze lower to it).")


def _infer_permute(op):
    x, perm = t(op), op.attr("perm")
    if sorted(perm) != list(range(x.rank)):
        raise QirError(f"perm {perm} is not a permutation of {x.rank} axes")
    elem = x.elem
    if isinstance(elem, QuantType) and elem.axis is not None:
        elem = _moved_axis_elem(elem, perm.index(elem.axis))
    return [TensorType(tuple(x.shape[p] for p in perm), elem)]


define_op("qir.permute", ["input"], {"perm": Attr("ints")}, infer=_infer_permute,
          category="any", doc="Transpose axes: out.shape[i] = in.shape[perm[i]].")


def _infer_broadcast(op):
    x, shape = t(op), tuple(op.attr("shape"))
    if len(shape) < x.rank:
        raise QirError(f"cannot broadcast {x} to fewer dims {list(shape)}")
    for d, s in zip(x.shape[::-1], shape[::-1]):
        if d != s and d != 1:
            raise QirError(f"cannot broadcast {x} to {list(shape)}")
    if x.is_quantized and x.quant.axis is not None:
        raise QirError("broadcast_to of a per-axis quantized tensor is not supported")
    return [TensorType(shape, x.elem)]


define_op("qir.broadcast_to", ["input"], {"shape": Attr("ints")}, infer=_infer_broadcast,
          category="any", doc="numpy broadcast_to (torch expand).")


def _infer_concat(op):
    if not op.operands:
        raise QirError("concat needs at least one operand")
    first = t(op)
    axis = norm_axis(op.attr("axis"), first.rank)
    total = 0
    for i, v in enumerate(op.operands):
        ty = v.type
        if ty.rank != first.rank or any(a != b for k, (a, b) in
                                        enumerate(zip(ty.shape, first.shape)) if k != axis):
            raise QirError(f"concat operand #{i} {ty} does not fit {first} along axis {axis}")
        if ty.elem != first.elem:
            raise QirError(f"concat operand #{i} has element type {ty.elem}, #0 has "
                           f"{first.elem}; align quantization first")
        total += ty.shape[axis]
    if first.is_quantized and first.quant.axis == axis:
        raise QirError("concat along the per-axis quantized dimension is not supported")
    shape = list(first.shape)
    shape[axis] = total
    return [TensorType(tuple(shape), first.elem)]


define_op("qir.concat", ["inputs*"], {"axis": Attr("int")}, infer=_infer_concat,
          verify=_keep_quant, category="any",
          doc="Join tensors along axis; quantized inputs must share one quantization.")


def _infer_split(op):
    x = t(op)
    axis = norm_axis(op.attr("axis"), x.rank)
    sizes = op.attr("sizes")
    if sum(sizes) != x.shape[axis] or min(sizes, default=0) < 0:
        raise QirError(f"split sizes {sizes} do not add up to dim {axis} of {x} "
                       f"({x.shape[axis]})")
    if x.is_quantized and x.quant.axis == axis:
        raise QirError("split along the per-axis quantized dimension is not supported")
    out = []
    for s in sizes:
        shape = list(x.shape)
        shape[axis] = s
        out.append(TensorType(tuple(shape), x.elem))
    return out


def _verify_split(op):
    if len(op.results) != len(op.attr("sizes")):
        raise QirError(f"split has {len(op.results)} results but {len(op.attr('sizes'))} "
                       "sizes")


define_op("qir.split", ["input"], {"axis": Attr("int"), "sizes": Attr("ints")},
          infer=_infer_split, verify=_verify_split, num_results=None, category="any",
          doc="Cut a tensor into consecutive pieces along axis (one result per size).")


def _infer_slice(op):
    x = t(op)
    axis = norm_axis(op.attr("axis"), x.rank)
    step = op.attr("step")
    if step < 1:
        raise QirError(f"slice step must be >= 1, got {step}")
    start, end, _ = slice(op.attr("start"), op.attr("end"), step).indices(x.shape[axis])
    n = max(0, -(-(end - start) // step))
    shape = list(x.shape)
    shape[axis] = n
    if x.is_quantized and x.quant.axis == axis:
        raise QirError("slicing the per-axis quantized dimension is not supported")
    return [TensorType(tuple(shape), x.elem)]


define_op("qir.slice", ["input"],
          {"axis": Attr("int"), "start": Attr("int", 0), "end": Attr("int", 2**63 - 1),
           "step": Attr("int", 1)},
          infer=_infer_slice, verify=_keep_quant, category="any",
          doc="Python slicing x[start:end:step] along one axis (negative indices count "
              "from the end; out-of-range bounds clip).")


def _infer_gather(op):
    x, idx = t(op, 0), t(op, 1)
    axis = norm_axis(op.attr("axis"), x.rank)
    if idx.elem not in ("i64", "i32"):
        raise QirError(f"gather indices must be i64 or i32, got {idx}")
    if x.is_quantized and x.quant.axis is not None:
        raise QirError("gather on a per-axis quantized tensor is not supported")
    return [TensorType(x.shape[:axis] + idx.shape + x.shape[axis + 1:], x.elem)]


define_op("qir.gather", ["input", "indices"], {"axis": Attr("int")}, infer=_infer_gather,
          category="any", doc="numpy take(x, indices, axis) (torch select/index/index_select;"
          " negative indices count from the end).")


def _infer_pad(op):
    x, pads = t(op), op.attr("pads")
    if len(pads) != 2 * x.rank:
        raise QirError(f"pad wants {2 * x.rank} pads (all begins, then all ends), got "
                       f"{len(pads)}")
    shape = tuple(d + pads[i] + pads[x.rank + i] for i, d in enumerate(x.shape))
    if min(shape, default=0) < 0:
        raise QirError(f"pads {pads} remove more than {x} has")
    return [TensorType(shape, x.elem)]


define_op("qir.pad", ["input"],
          {"pads": Attr("ints", doc="begins of every dim, then ends; negative crops"),
           "value": Attr("float", 0.0, doc="real value of the padding")},
          infer=_infer_pad, verify=_keep_quant, category="any",
          doc="Constant padding (on quantized tensors pads with the quantized value).")


def _infer_tri(op):
    x = t(op)
    if x.rank < 2:
        raise QirError(f"{op.name} wants rank >= 2, got {x}")
    return [x]


define_op("qir.tril", ["input"], {"diagonal": Attr("int", 0)}, infer=_infer_tri,
          category="any", doc="Zero the elements above the diagonal (last two dims).")
define_op("qir.triu", ["input"], {"diagonal": Attr("int", 0)}, infer=_infer_tri,
          category="any", doc="Zero the elements below the diagonal (last two dims).")


SCATTER_REDUCTIONS = ("none", "add", "mul", "max", "min")


def _infer_scatter(op):
    x, idx, upd = t(op, 0), t(op, 1), t(op, 2)
    axis = norm_axis(op.attr("axis"), x.rank)
    if idx.elem not in ("i64", "i32"):
        raise QirError(f"scatter indices must be i64 or i32, got {idx}")
    if idx.shape != upd.shape:
        raise QirError(f"scatter indices {idx} and updates {upd} must have one shape")
    if idx.rank != x.rank or any(i != d for k, (i, d) in enumerate(zip(idx.shape, x.shape))
                                 if k != axis):
        raise QirError(f"scatter indices {idx} must match the input {x} in every dim but "
                       f"the axis ({axis})")
    if str(upd.elem) != str(x.elem):
        raise QirError(f"scatter updates {upd} must have the input's element type {x.elem}")
    if x.is_quantized:
        raise QirError("scatter on a quantized tensor is not supported")
    return [x]


define_op("qir.scatter", ["input", "indices", "updates"],
          {"axis": Attr("int"),
           "reduce": Attr("str", "none", choices=SCATTER_REDUCTIONS,
                          doc="none: the update replaces; add, mul, max, min combine")},
          infer=_infer_scatter, category="any",
          doc="ONNX ScatterElements / torch scatter: out = input; then for every position i "
              "of indices in row-major order, out at i with the axis coordinate replaced by "
              "indices[i] becomes updates[i] (or reduce(out, updates[i])). Indices match the "
              "input in every other dim; negative indices count from the end; a later "
              "update to the same place wins.")
