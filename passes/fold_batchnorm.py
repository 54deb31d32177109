"""fold-batchnorm: inference BatchNorm folded into the conv/linear that feeds it.

    y = gamma * (conv(x, w) + b - mean) / sqrt(var + eps) + beta
      = conv(x, w * s) + (b - mean) * s + beta,      s = gamma / sqrt(var + eps)

computed in float64 and stored in the weights' dtype. A BatchNorm with nothing to fold
into (its producer is not a conv/linear, has other users, or has non-constant weights)
becomes a per-channel multiply and add, which later passes can quantize or fuse.
"""

from __future__ import annotations

import numpy as np

from qir.builder import Builder
from qir.ir import Module, Op

from passes.registry import register_pass
from passes.rewrite import Rewriter, apply_patterns, pattern
from passes.utils import constant_array, make_constant, param_name, single_user

FOLDABLE = ("qir.conv1d", "qir.conv2d", "qir.linear")


def _bn_scale_shift(bn: Op) -> tuple[np.ndarray, np.ndarray] | None:
    """(s, t) with bn(x) = x * s + t per channel, or None if the BN's tensors vary."""
    arrays = [constant_array(v) for v in bn.operands[1:]]
    if any(a is None for a in arrays):
        return None
    mean, var = arrays[0].astype(np.float64), arrays[1].astype(np.float64)
    gamma = arrays[2].astype(np.float64) if len(arrays) > 2 else np.ones_like(mean)
    beta = arrays[3].astype(np.float64) if len(arrays) > 3 else np.zeros_like(mean)
    s = gamma / np.sqrt(var + bn.attr("eps"))
    return s, beta - mean * s


def _channel_axis_ok(bn: Op, producer: Op) -> bool:
    rank = bn.result.type.rank
    axis = bn.attr("axis") % rank
    if producer.name == "qir.linear":
        return axis == rank - 1
    return axis == 1


def _fold_into_producer(bn: Op, rw: Rewriter) -> bool:
    producer = bn.operands[0].owner
    if producer is None or producer.name not in FOLDABLE or single_user(producer.result) is not bn:
        return False
    if producer.attr("clamp_min") is not None or producer.attr("clamp_max") is not None:
        return False  # an activation sits between them
    if not _channel_axis_ok(bn, producer):
        return False
    st = _bn_scale_shift(bn)
    w = constant_array(producer.operands[1])
    if st is None or w is None:
        return False
    s, t = st
    b_val = producer.operands[2] if len(producer.operands) > 2 else None
    b = constant_array(b_val) if b_val is not None else np.zeros(w.shape[0])
    if b is None:
        return False
    fn = producer.function
    new_w = (w.astype(np.float64) * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
    new_b = (b.astype(np.float64) * s + t).astype(w.dtype)
    wname = param_name(producer.operands[1]) or producer.operands[1].name
    bname = (param_name(b_val) if b_val is not None else None) or f"{wname.rsplit('.', 1)[0]}.bias"
    wv = make_constant(fn, producer, new_w, f"{wname}.bnfold")
    bv = make_constant(fn, producer, new_b, f"{bname}.bnfold")
    rw.touched.extend([wv.owner, bv.owner])
    rw.set_operand(producer, 1, wv)
    if b_val is not None:
        rw.set_operand(producer, 2, bv)
    else:
        new = rw.create_before(producer, producer.name, list(producer.operands) + [bv],
                               dict(producer.attrs), [producer.result.type],
                               loc=producer.loc)
        name = producer.result.name
        rw.replace_op(producer, new.results)
        fn.rename(new.result, name)
    rw.replace_op(bn, [bn.operands[0]])
    return True


def _to_scale_shift(bn: Op, rw: Rewriter) -> bool:
    st = _bn_scale_shift(bn)
    if st is None:
        return False
    s, t = st
    x = bn.operands[0]
    rank, axis = x.type.rank, bn.attr("axis") % x.type.rank
    shape = [1] * (rank - axis)
    shape[0] = -1
    dtype = x.type.dtype
    fn = bn.function
    sv = make_constant(fn, bn, s.reshape(shape).astype(dtype), f"{bn.result.name}.scale")
    tv = make_constant(fn, bn, t.reshape(shape).astype(dtype), f"{bn.result.name}.shift")
    b = Builder(fn, before=bn, loc=bn.loc)
    m = b.value("qir.mul", [x, sv])
    y = b.value("qir.add", [m, tv])
    rw.touched.extend([sv.owner, tv.owner, m.owner, y.owner])
    rw.changed = True
    name = bn.result.name
    rw.replace_op(bn, [y])
    fn.rename(y, name)
    return True


@register_pass("fold-batchnorm")
def fold_batchnorm(module: Module) -> bool:
    """Fold inference BatchNorm into the preceding conv/linear; lone BatchNorms become
    a per-channel multiply-add."""
    changed = apply_patterns(module, [pattern("qir.batch_norm")(_fold_into_producer)])
    changed |= apply_patterns(module, [pattern("qir.batch_norm")(_to_scale_shift)])
    if changed:
        from passes.utils import eliminate_dead_code, prune_params

        for fn in module.functions.values():
            eliminate_dead_code(fn)
        prune_params(module)
    return changed
