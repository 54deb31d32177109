"""equalize: cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization through
Weight Equalization and Bias Correction", section 4.1). Float, data-free.

Two layers in a row, y = W2 · f(W1 x + b1) + b2, with f positively homogeneous
(f(s·z) = s·f(z) for s > 0: ReLU, max pooling, nothing at all), compute the same thing
after W1[i] /= s_i, b1[i] /= s_i, W2[:, i] *= s_i. With r1_i the range (max |w|) of
output channel i of W1 and r2_i the range of input channel i of W2, the paper's choice
s_i = sqrt(r1_i / r2_i) makes both ranges sqrt(r1_i · r2_i): every channel of both
weights then uses a similar share of a per-tensor quantization grid. Chains (W1, W2,
W3, ...) are equalized pair by pair, repeated until the scales settle.

Pairs handled: conv1d/conv2d → conv of the same rank (groups and depthwise included:
input channel i of a grouped conv scales the weights of its group's output channels),
linear → linear. Between them: relu, clamp(min=0) and max_pool2d, each with one user,
or the first op's fused clamp_min = 0 (fuse-activations). A clamp with an upper bound
(relu6) is not homogeneous, so such pairs are left alone. Run it after fold-batchnorm
(BN folding is what usually unbalances the channels) and before insert-observers.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from qir.ir import Module, Op

from passes.capture import finish, replace_constant
from passes.registry import register_pass
from passes.utils import constant_array, single_user

LAYERS = ("qir.conv1d", "qir.conv2d", "qir.linear")
HOMOGENEOUS = ("qir.relu", "qir.clamp", "qir.max_pool2d")


def _homogeneous(op: Op) -> bool:
    if op.name == "qir.clamp":
        return op.attr("min") in (None, 0.0) and op.attr("max") is None
    return op.name in HOMOGENEOUS


def _float_const(v):
    a = constant_array(v)
    return a if a is not None and a.dtype.kind == "f" else None


def _layer_ok(op: Op) -> bool:
    return (op.name in LAYERS and _float_const(op.operands[1]) is not None
            and (len(op.operands) < 3 or _float_const(op.operands[2]) is not None))


def find_pairs(module: Module) -> list[tuple[Op, Op]]:
    """(first, second) layer pairs that can be equalized, in function order."""
    pairs = []
    for fn in module.functions.values():
        for op in fn.ops:
            if not _layer_ok(op) or op.attr("clamp_min") not in (None, 0.0) \
                    or op.attr("clamp_max") is not None:
                continue
            v = op.result
            nxt = single_user(v)
            while nxt is not None and _homogeneous(nxt):
                v = nxt.result
                nxt = single_user(v)
            if nxt is None or not _layer_ok(nxt) or nxt.operands[0] is not v:
                continue
            if (op.name == "qir.linear") != (nxt.name == "qir.linear"):
                continue
            if op.name != "qir.linear" and op.name != nxt.name:
                continue
            pairs.append((op, nxt))
    return pairs


def _out_ranges(w: np.ndarray) -> np.ndarray:
    return np.abs(w).reshape(w.shape[0], -1).max(axis=1)


def in_channel_map(w2: np.ndarray, linear: bool, channels: int) -> np.ndarray:
    """For every [out, in] position of the second layer's weight, the input channel
    (= output channel of the first layer) it multiplies."""
    if linear:
        return np.broadcast_to(np.arange(channels), w2.shape[:2])
    cg = w2.shape[1]
    og = w2.shape[0] // (channels // cg)
    return (np.arange(w2.shape[0])[:, None] // og) * cg + np.arange(cg)[None, :]


def _in_ranges(w2: np.ndarray, chan: np.ndarray, channels: int) -> np.ndarray:
    per = np.abs(w2).reshape(w2.shape[0], w2.shape[1], -1).max(axis=2)
    r = np.zeros(channels)
    np.maximum.at(r, chan.ravel(), per.ravel())
    return r


@register_pass("equalize")
def equalize(
    module: Module, *,
    iterations: Annotated[int, "maximum sweeps over all pairs"] = 20,
    tolerance: Annotated[float, "stop when every scale of a sweep is within this of 1"] =
        1e-4,
) -> bool:
    """Cross-layer equalization: rescale consecutive conv/linear pairs through ReLU so
    their per-channel weight ranges match (float outputs unchanged)."""
    pairs = find_pairs(module)
    if not pairs:
        return False
    weights: dict[int, np.ndarray] = {}
    biases: dict[int, np.ndarray | None] = {}
    ops: dict[int, Op] = {}
    for pair in pairs:
        for op in pair:
            if id(op) not in ops:
                ops[id(op)] = op
                weights[id(op)] = constant_array(op.operands[1]).astype(np.float64)
                biases[id(op)] = (constant_array(op.operands[2]).astype(np.float64)
                                  if len(op.operands) > 2 else None)
    chans = {(id(op1), id(op2)): in_channel_map(weights[id(op2)], op2.name == "qir.linear",
                                                weights[id(op1)].shape[0])
             for op1, op2 in pairs}
    for _ in range(max(1, iterations)):
        worst = 0.0
        for op1, op2 in pairs:
            w1, w2 = weights[id(op1)], weights[id(op2)]
            chan = chans[id(op1), id(op2)]
            r1, r2 = _out_ranges(w1), _in_ranges(w2, chan, w1.shape[0])
            ok = (r1 > 0) & (r2 > 0)
            s = np.ones_like(r1)
            s[ok] = np.sqrt(r1[ok] / r2[ok])
            worst = max(worst, float(np.abs(np.log(s)).max()))
            w1 /= s.reshape((-1,) + (1,) * (w1.ndim - 1))
            if biases[id(op1)] is not None:
                biases[id(op1)] /= s
            w2 *= s[chan].reshape(chan.shape + (1,) * (w2.ndim - 2))
        if worst < tolerance:
            break
    for key, op in ops.items():
        dtype = constant_array(op.operands[1]).dtype
        replace_constant(op, 1, weights[key].astype(dtype), "cle")
        if biases[key] is not None:
            replace_constant(op, 2, biases[key].astype(dtype), "cle")
    finish(module)
    return True
