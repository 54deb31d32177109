"""bias-correction: empirical bias correction (Nagel et al. 2019, "Data-Free Quantization
through Weight Equalization and Bias Correction", section 4.2, empirical variant).

Rounding weights to int8 shifts the mean of a layer's output: E[W̃x] − E[Wx] = ΔW·E[x],
which does not average out when the input has a non-zero mean (after a ReLU it always
does). This pass runs on the calibrated float module (after `calibrate`, before
`quantize`): for every conv/linear that `quantize` will quantize (observed input,
constant weight) it simulates the weight quantization `quantize` will apply — the same
`_weight_type` and `quantize_array`, imported from passes/quantize.py — measures the
per-channel mean output shift E[op(x, W̃ − W)] on the calibration data (x the op's float
input) and subtracts it from the float bias (adding a bias where there is none).
`quantize` then quantizes the corrected bias. The fused activation is ignored: the
correction applies to the pre-activation output.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np

from qir.ir import Module, Op

from passes.capture import add_bias, calibration_batches, collect, finish, replace_constant
from passes.manager import PassContext
from passes.registry import register_pass
from passes.utils import constant_array

TARGETS = ("qir.conv1d", "qir.conv2d", "qir.linear")


def simulated_weight(w: np.ndarray, per_channel: bool) -> np.ndarray:
    """The float weights `quantize` will compute with: dequantize(quantize(w))."""
    from passes.quant_math import quantize_array
    from passes.quantize import _weight_type

    wtype = _weight_type(w, per_channel)
    q = quantize_array(w, wtype).astype(np.float32)
    scales = np.asarray(wtype.scales, np.float32)
    if wtype.axis is not None:
        scales = scales.reshape((-1,) + (1,) * (w.ndim - 1))
    return q * scales


def output_shift(op: Op, x: np.ndarray, dw: np.ndarray) -> tuple[np.ndarray, int]:
    """(sum over every non-channel position of op(x, dw), number of positions)."""
    x64 = np.asarray(x, np.float64)
    if op.name == "qir.linear":
        y = x64.reshape(-1, x64.shape[-1]) @ dw.T
        return y.sum(axis=0), y.shape[0]
    from backends.numpy.conv import conv_nd

    y = conv_nd(x64, dw, op.attr("stride"), op.attr("padding"), op.attr("dilation"),
                op.attr("groups"))
    y = np.moveaxis(y, 1, -1).reshape(-1, y.shape[1])
    return y.sum(axis=0), y.shape[0]


def _targets(module: Module) -> list[Op]:
    out = []
    for fn in module.functions.values():
        for op in fn.ops:
            if op.name not in TARGETS:
                continue
            src = op.operands[0].owner
            w = constant_array(op.operands[1])
            if src is None or src.name != "qir.observe" or w is None or w.dtype.kind != "f":
                continue
            if len(op.operands) > 2 and constant_array(op.operands[2]) is None:
                continue
            out.append(op)
    return out


@register_pass("bias-correction")
def bias_correction(
    module: Module, ctx: PassContext, *,
    weights: Annotated[Literal["per-channel", "per-tensor"],
                       "weight granularity `quantize` will use (must match it)"] =
        "per-channel",
) -> bool:
    """Subtract the mean output shift that weight rounding causes (measured on the
    calibration data) from each conv/linear bias; run after calibrate, before quantize."""
    targets = _targets(module)
    if not targets:
        return False
    batches = calibration_batches(ctx, "bias-correction")
    deltas = {}
    for op in targets:
        w = constant_array(op.operands[1])
        deltas[id(op)] = (simulated_weight(w, weights == "per-channel").astype(np.float64)
                          - w.astype(np.float64))
    by_input: dict[int, list[Op]] = {}
    for op in targets:
        by_input.setdefault(id(op.operands[0]), []).append(op)

    def reduce(v, x):
        return {id(op): output_shift(op, x, deltas[id(op)]) for op in by_input[id(v)]}

    inputs = list({id(op.operands[0]): op.operands[0] for op in targets}.values())
    seen = collect(module, batches, inputs, reduce)
    changed = False
    for op in targets:
        parts = [entry[id(op)] for entry in seen[id(op.operands[0])]]
        mean = sum(p[0] for p in parts) / max(1, sum(p[1] for p in parts))
        if not np.any(mean):
            continue
        dtype = constant_array(op.operands[1]).dtype
        if len(op.operands) > 2:
            b = constant_array(op.operands[2]).astype(np.float64)
            replace_constant(op, 2, (b - mean).astype(dtype), "biascorr")
        else:
            add_bias(op, (-mean).astype(dtype), "biascorr")
        changed = True
    ctx.notes.append(f"bias-correction: corrected {sum(1 for _ in targets)} conv/linear "
                     f"biases on {len(batches)} batches")
    if changed:
        finish(module)
    return changed
