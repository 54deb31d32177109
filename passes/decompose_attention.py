"""decompose-attention: qir.scaled_dot_product_attention becomes the ops it is defined by,

    scores = matmul(q, permute(k)) * scale
    scores = where(mask, scores, -inf)      (a bool mask)   or   scores + mask (a float one)
    scores = where(tril, scores, -inf)      (is_causal)
    out    = matmul(softmax(scores), v)

so that the quantizing pipelines (int8, int8-smooth, int8-dfq run it before
insert-observers) see two matmuls of activations, which become integer batched matmuls
(`qir.qmatmul`: int8 QK^T and PV, exact in every backend), and a float softmax between
them, as they do for attention written by hand.

What changes in float: the op's two products are sequential dot products, reproducible
bit for bit (docs/semantics.md); a float `qir.matmul` follows the matmul contract instead
(BLAS order in the interpreter, within 1e-5). Everything else (scale, masks, the safe
softmax that gives 0 for rows with nothing kept) is the op's own definition. Run it where
the products are about to be quantized, not on a float model.

Grouped KV heads (GQA) need nothing here: the frontend already repeats k and v per
query head before the op.
"""

from __future__ import annotations

import math

import numpy as np

from qir.ir import Module, Op

from passes.registry import register_pass
from passes.rewrite import Rewriter, apply_patterns, pattern
from passes.utils import make_constant


@pattern("qir.scaled_dot_product_attention")
def _decompose(op: Op, rw: Rewriter) -> bool:
    q, k, v = op.operands[:3]
    mask = op.operands[3] if len(op.operands) > 3 else None
    if not (q.type.is_float and k.type.is_float and v.type.is_float):
        return False
    dtype = q.type.dtype

    def emit(name: str, operands, attrs=None, hint: str = "scores"):
        return rw.create_before(op, name, operands, attrs, names=[hint]).result

    def const(array: np.ndarray, hint: str):
        return make_constant(rw.fn, op, array, hint, loc=op.loc)

    rank_k = k.type.rank
    kt = emit("qir.permute", [k], {"perm": [*range(rank_k - 2), rank_k - 1, rank_k - 2]},
              hint="key_t")
    scores = emit("qir.matmul", [q, kt])
    scale = op.attr("scale")
    if scale is None:
        scale = 1 / math.sqrt(q.type.shape[-1])
    scores = emit("qir.mul", [scores, const(np.array(scale, dtype), "attn_scale")])
    neg_inf = None
    if mask is not None or op.attr("is_causal"):
        neg_inf = const(np.array(-np.inf, dtype), "neg_inf")
    if mask is not None:
        if str(mask.type.elem) == "bool":
            scores = emit("qir.where", [mask, scores, neg_inf])
        else:
            scores = emit("qir.add", [scores, mask])
    if op.attr("is_causal"):
        lq, lk = scores.type.shape[-2:]
        keep = const(np.tril(np.ones((lq, lk), bool)), "causal_mask")
        scores = emit("qir.where", [keep, scores, neg_inf])
    probs = emit("qir.softmax", [scores], {"axis": scores.type.rank - 1}, hint="probs")
    out = emit("qir.matmul", [probs, v])
    rw.replace_op(op, [out], keep_names=True)
    return True


@register_pass("decompose-attention")
def decompose_attention(module: Module) -> bool:
    """scaled_dot_product_attention as matmul, softmax, matmul (same results)."""
    return apply_patterns(module, [_decompose])
