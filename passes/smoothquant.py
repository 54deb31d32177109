"""smoothquant: move activation outliers into the weights (Xiao et al. 2023,
"SmoothQuant: Accurate and Efficient Post-Training Quantization for Large Language
Models"). Float, before insert-observers; needs calibration data.

Transformers' activations carry a few channels 20–100x larger than the rest, so a
per-tensor int8 scale crushes every other channel, while weights are easy to quantize.
For a linear y = X·Wᵀ, X·Wᵀ = (X / s)·(W · s)ᵀ for any per-input-channel s > 0, and

    s_j = max|X_j|^α / max|W_:,j|^(1−α)

(max|X_j| over the calibration data) splits the range of channel j between activation and
weight: α = 0.5 balances them, larger α moves more into the weights. Linears that share
their input (q/k/v) share one s, computed from the largest weight column over all of
them. X / s is folded into the producing layer_norm's weight and bias when every user of
X is one of those linears (pre-LN blocks); otherwise (post-LN blocks, whose LayerNorm
output also feeds the residual add) a float `qir.mul` by 1/s is inserted before the
linears. The float function is unchanged.

With `search=true` α is chosen per group from {0.3, 0.4, …, 0.9} by the output error of
simulated W8A8 (per-tensor int8 activations over their min/max, per-channel int8 weights)
on the calibration data. Groups whose input's largest channel is less than `threshold`
times the median channel (max |x| per channel) have no outliers and are left alone.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from qir.builder import Builder
from qir.diagnostics import QirError
from qir.ir import Module, Op, Value

from passes.capture import calibration_batches, collect, finish, replace_constant, rows
from passes.manager import PassContext
from passes.registry import register_pass
from passes.utils import constant_array, make_constant, param_name

ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SEARCH_ROWS = 2048  # calibration rows per group used to score an alpha


def _groups(module: Module) -> list[tuple[Value, list[Op]]]:
    """(input value, linears with a constant float weight reading it), in order, over
    every function."""
    groups: dict[int, tuple[Value, list[Op]]] = {}
    for fn in module.functions.values():
        for op in fn.ops:
            if op.name != "qir.linear" or not op.operands[0].type.is_float:
                continue
            w = constant_array(op.operands[1])
            if w is None or w.dtype.kind != "f":
                continue
            x = op.operands[0]
            groups.setdefault(id(x), (x, []))[1].append(op)
    return list(groups.values())


def _key(x: Value, users: list[Op]):
    """What identifies a group across functions: its weights' parameter names (a causal
    LM's prefill and decode share them), else the input value itself."""
    names = tuple(param_name(op.operands[1]) for op in users)
    return names if all(names) else id(x)


def smoothing_scales(x_absmax: np.ndarray, w_absmax: np.ndarray, alpha: float) -> np.ndarray:
    """s_j = max|X_j|^α / max|W_j|^(1−α); 1 where either is zero."""
    s = np.ones_like(x_absmax, dtype=np.float64)
    ok = (x_absmax > 0) & (w_absmax > 0)
    s[ok] = x_absmax[ok] ** alpha / w_absmax[ok] ** (1 - alpha)
    return np.clip(s, 1e-5, 1e5)


def _w8a8_error(x: np.ndarray, weights: list[np.ndarray], s: np.ndarray) -> float:
    """Squared output error of simulated W8A8 of the smoothed linears on rows x."""
    from passes.bias_correction import simulated_weight
    from passes.quant_math import quantize_array
    from passes.quantize import activation_type

    xs = (x / s).astype(np.float32)
    q = activation_type(min(float(xs.min()), 0.0), max(float(xs.max()), 0.0), "i8")
    xq = (quantize_array(xs, q).astype(np.float64) - q.zero_point) * np.float32(q.scale)
    err = 0.0
    for w in weights:
        wq = simulated_weight((w * s).astype(np.float32), per_channel=True).astype(np.float64)
        err += float(((x @ w.T - xq @ wq.T) ** 2).sum())
    return err


def _fold_into_layer_norm(x: Value, users: list[Op], s: np.ndarray) -> bool:
    ln = x.owner
    fn = ln.function if ln is not None else None
    if ln is None or ln.name != "qir.layer_norm" or len(ln.operands) < 2:
        return False
    if x in fn.outputs or {id(u) for u in x.users} != {id(u) for u in users}:
        return False
    if ln.attr("normalized_ndim") != 1:
        return False
    arrays = [constant_array(v) for v in ln.operands[1:]]
    if any(a is None or a.shape != s.shape for a in arrays):
        return False
    for i, a in enumerate(arrays, start=1):
        replace_constant(ln, i, (a.astype(np.float64) / s).astype(a.dtype), "smooth")
    return True


def _insert_mul(x: Value, users: list[Op], s: np.ndarray) -> None:
    fn = users[0].function
    first = min(users, key=fn.ops.index)
    inv = (1.0 / s).astype(x.type.dtype)
    c = make_constant(fn, first, inv, f"{x.name}.smooth_inv", loc=first.loc)
    m = Builder(fn, before=first, loc=first.loc).value("qir.mul", [x, c],
                                                       names=[f"{x.name}.smooth"])
    for op in users:
        op.set_operand(0, m)


@register_pass("smoothquant")
def smoothquant(
    module: Module, ctx: PassContext, *,
    alpha: Annotated[float, "migration strength: 0 keeps activations, 1 moves everything "
                     "into the weights"] = 0.5,
    search: Annotated[bool, "choose alpha per layer group from 0.3..0.9 by simulated W8A8 "
                      "output error on the calibration data"] = False,
    threshold: Annotated[float, "smooth only inputs whose largest channel is at least this "
                         "many times the median channel"] = 4.0,
) -> bool:
    """Migrate activation outlier channels into the following linears' weights (per-channel
    scales folded into LayerNorm or a float mul); float outputs unchanged."""
    if not 0.0 <= alpha <= 1.0:
        raise QirError(f"smoothquant: alpha must be in [0, 1], got {alpha}")
    groups = _groups(module)
    if not groups:
        return False
    calibration_batches(ctx, "smoothquant")
    seen: dict = {}  # group key -> per-batch (max |x| per channel, sample rows)
    for fn in module.functions.values():
        batches = ctx.batches(fn.name)
        mine = [x for x, users in groups if users[0].function is fn] if batches else []
        if not mine:
            continue

        n = len(batches)

        def reduce(v, a):
            r = rows(a)
            sample = r[:: max(1, r.shape[0] * n // SEARCH_ROWS)] if search else None  # noqa: B023
            return np.abs(r).max(axis=0), sample

        got = collect(module, batches, mine, reduce, function=fn.name)
        for x, users in groups:
            if users[0].function is fn:
                seen.setdefault(_key(x, users), []).extend(got[id(x)])
    changed = False
    for x, users in groups:
        parts = seen.get(_key(x, users))
        if not parts:
            raise QirError(f"smoothquant: the linears at {users[0].loc} in @{users[0].function.name} "
                           "share no weights with a function that has calibration data")
        x_absmax = np.max([p[0] for p in parts], axis=0)
        med = float(np.median(x_absmax))
        ratio = float(x_absmax.max()) / med if med > 0 else float("inf")
        if ratio < threshold:
            continue
        weights = [constant_array(op.operands[1]).astype(np.float64) for op in users]
        w_absmax = np.max([np.abs(w).max(axis=0) for w in weights], axis=0)
        chosen = alpha
        if search:
            sample = np.concatenate([p[1] for p in parts])
            errors = {a: _w8a8_error(sample, weights, smoothing_scales(x_absmax, w_absmax, a))
                      for a in ALPHAS}
            chosen = min(errors, key=errors.get)
        s = smoothing_scales(x_absmax, w_absmax, chosen)
        for op, w in zip(users, weights):
            replace_constant(op, 1, (w * s).astype(constant_array(op.operands[1]).dtype),
                             "smooth")
        how = "layer_norm" if _fold_into_layer_norm(x, users, s) else "mul"
        if how == "mul":
            _insert_mul(x, users, s)
        names = ", ".join(str(op.loc.module_path or op.result.name) for op in users)
        ctx.notes.append(f"smoothquant: %{x.name} ({ratio:.0f}x outliers) -> {names}: "
                         f"alpha {chosen:g}, 1/s folded into {how}")
        changed = True
    if changed:
        finish(module)
    return changed
