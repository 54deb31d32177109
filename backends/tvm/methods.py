"""Relax lowerings of the ops of qir/ops/methods.py (docs/methods.md), with the numpy
interpreter's semantics (backends/numpy/methods.py, docs/semantics.md)."""

from __future__ import annotations

import numpy as np

from backends.tvm.common import R, cast, clip, const, quant_consts, round_half_even
from backends.tvm.kernels.dense import dense
from backends.tvm.registry import relax_lowering


@relax_lowering("qir.dynamic_qlinear")
def dynamic_qlinear(op, bb, args, params):
    """s_x = max|x| / 127 (per tensor or per row, 1 where 0); q = clip(round_half_even(
    x / s_x), -127, 127); acc = q @ w^T in int32; y = f32(acc) * f32(s_x * s_w) + bias."""
    x = cast(bb, args[0], "float32")
    per_token = op.attr("granularity") == "per-token"
    amax = bb.emit(R.max(R.abs(x), axis=[-1] if per_token else None, keepdims=per_token))
    s = bb.emit(R.divide(amax, const(np.float32(127), "float32")))
    one = const(np.float32(1), "float32")
    s = bb.emit(R.where(R.equal(s, const(np.float32(0), "float32")), one, s))
    q = round_half_even(bb, bb.emit(R.divide(x, s)))
    q = bb.emit(R.astype(clip(bb, q, -127.0, 127.0), "int8"))
    w = op.operands[1].owner
    weights = (params.get(w.attr("name")) if w is not None and w.name == "qir.param"
               else None)
    # the integer product through the int8 dense kernel (backends/tvm/kernels/dense.py)
    # where the weights are a known parameter, else Relax's matmul: the same integers
    acc = dense(bb, q, (-127, 127), 0, np.asarray(weights), None) \
        if weights is not None else None
    if acc is None:
        acc = bb.emit(R.matmul(q, R.permute_dims(args[1]), out_dtype="int32"))
    s_w, _ = quant_consts(op.operands[1].type)
    m = bb.emit(R.multiply(s, const(np.asarray(s_w, np.float32).reshape(-1), "float32")))
    y = bb.emit(R.multiply(R.astype(acc, "float32"), m))
    if len(args) > 2:
        y = bb.emit(R.add(y, cast(bb, args[2], "float32")))
    return y
