"""weight-only: int4 / int8 weights, float activations (W4A16, W8A16).

Every linear's weight [N, K] (and every matmul's 2-d constant rhs [K, N]) becomes a
quantized parameter followed by `qir.dequantize`; activations and the compute stay float,
so the win is memory and bandwidth, the usual choice for LLM decoding. The op sums its
products in order (`accumulate = "sequential"`), so that every backend computes the
same float32 bits; on llvm the kernel keeps the weights stored and dequantizes them in
registers (backends/tvm/kernels/weight_dense.py). Quantization is
symmetric per group of `group-size` consecutive input channels (along K, the contraction
axis) — `!quant.uniform<i4<-7:7>:f32:{1:128}, {...}>` for a linear weight:

- int4 uses [-7, 7] (not [-8, 7]): symmetric, so scale = max|w_group| / 7 maps the
  group's largest weight of either sign onto the grid; one of 16 levels goes unused.
- int8 uses [-127, 127], scale = max|w_group| / 127.
- `group-size=0` means one scale per output channel (per-axis type). A group size that
  does not divide K leaves a shorter last group with its own scale, as ONNX Runtime's
  MatMulNBits pads it (K=200, groups of 128: columns 0..127, then 128..199).

int4 values are stored one per byte (int8) in the `.npz` beside the text; the notes give
both that size and the packed size (two values per byte) a runtime would use.

`awq=true` (AWQ, Lin et al. 2024) scales each input channel of a weight by
s = mean|x|^alpha before rounding to nearest, alpha searched on a grid to minimise the
layer's output error over calibration rows, and divides the layer's input by s (a
`qir.mul` before the op): salient channels, those with large activations, get finer
steps. It needs calibration data.

`gptq=true` rounds with GPTQ (passes/gptq.py) instead of to nearest: the inputs of every
layer over the calibration data (float model) give H = 2 XᵀX / M, and each column's
rounding error is compensated on the columns not yet quantized (damped by `damp` times
the mean diagonal). It needs calibration data.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np

from qir.builder import Builder
from qir.diagnostics import QirError
from qir.ir import Module, Op
from qir.types import CODEBOOKS, QuantType, TensorType

from passes.capture import calibration_batches, collect, finish, rows
from passes.gptq import Grid, as_grid, group_scales, round_to_nearest
from passes.gptq import gptq as gptq_round
from passes.manager import PassContext
from passes.registry import register_pass
from passes.utils import constant_array, make_constant, param_name

STORAGE = {4: ("i4", 7), 8: ("i8", 127)}


def _targets(module: Module) -> list[tuple[list[Op], np.ndarray]]:
    """(ops, weight as [N, K]) for linears and matmuls with a constant 2-d rhs, one entry
    per weight: ops of several functions (a causal LM's prefill and decode) that use the
    same parameter share its quantized copy."""
    out: dict = {}
    for fn in module.functions.values():
        for op in fn.ops:
            if op.name not in ("qir.linear", "qir.matmul") or not op.operands[0].type.is_float:
                continue
            w = constant_array(op.operands[1])
            if w is None or w.dtype.kind != "f" or w.ndim != 2:
                continue
            name = param_name(op.operands[1])
            key = (name, op.name) if name is not None else id(op)
            out.setdefault(key, ([], w if op.name == "qir.linear" else w.T))[0].append(op)
    return list(out.values())


def _inputs_seen(module: Module, groups: list[list[Op]], ctx: PassContext, what: str,
                 reduce) -> list[list]:
    """Per weight, `reduce(rows)` of each calibration batch's input rows to its ops
    (rows [M, K] float64) over the calibration data, which runs @main: its ops' inputs
    count."""
    batches = calibration_batches(ctx, what)
    main = module.main
    inputs = list({id(op.operands[0]): op.operands[0] for ops in groups for op in ops
                   if op.function is main}.values())
    seen = collect(module, batches, inputs, lambda _v, a: reduce(rows(a)))
    out = []
    for ops in groups:
        parts = [p for op in ops if op.function is main for p in seen[id(op.operands[0])]]
        if not parts:
            raise QirError(f"{what}: {ops[0].name} at {ops[0].loc} is not reached from "
                           "@main, which the calibration data runs")
        out.append(parts)
    return out


def _hessians(module: Module, groups: list[list[Op]], ctx: PassContext) -> list[np.ndarray]:
    """H = 2 XᵀX / M of each weight's inputs over the calibration data."""
    seen = _inputs_seen(module, groups, ctx, "weight-only{gptq=true}",
                        lambda r: (r.T @ r, r.shape[0]))
    return [2.0 * sum(p[0] for p in parts) / max(sum(p[1] for p in parts), 1)
            for parts in seen]


AWQ_ROWS = 512  # input rows per weight kept for AWQ's search
AWQ_GRID = 20  # alpha in 0, 1/20, ..., 1


def _awq_samples(module: Module, groups: list[list[Op]], ctx: PassContext) -> list[np.ndarray]:
    """Up to AWQ_ROWS input rows [M, K] per weight, spread over the calibration data."""
    seen = _inputs_seen(module, groups, ctx, "weight-only{awq=true}", lambda r: r)
    out = []
    for parts in seen:
        x = np.concatenate(parts)
        out.append(x[np.linspace(0, len(x) - 1, min(len(x), AWQ_ROWS)).astype(np.int64)])
    return out


KMEANS_SAMPLE = 1 << 16  # weights per tensor the codebook is fitted on
KMEANS_STEPS = 25


def kmeans_levels(w: np.ndarray, group: int, n: int) -> tuple[float, ...]:
    """A codebook of n levels in [-1, 1] fitted to the weights divided by their group's
    max |w| (1-d k-means, Lloyd's algorithm from the quantiles, on up to KMEANS_SAMPLE
    evenly spaced weights): the levels where this tensor's values are dense. The
    extreme levels stay at -1 and 1, so every group's largest weight is exact."""
    scales = group_scales(w, group, 1)
    v = (w.astype(np.float32) / np.repeat(scales, group, axis=1)[:, :w.shape[1]]).ravel()
    v = np.sort(v[np.linspace(0, v.size - 1, min(v.size, KMEANS_SAMPLE)).astype(np.int64)])
    c = np.quantile(v, np.linspace(0, 1, n))
    c[0], c[-1] = -1.0, 1.0
    for _ in range(KMEANS_STEPS):
        mids = (c[:-1] + c[1:]) / 2
        idx = np.searchsorted(mids, v)
        sums = np.bincount(idx, v, minlength=n)
        counts = np.bincount(idx, minlength=n)
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        moved[0], moved[-1] = -1.0, 1.0
        if np.allclose(moved, c):
            break
        c = np.sort(moved)
    c = np.unique(c.astype(np.float32))
    if c.size < n:  # a tensor of few distinct values: pad the table between its levels
        extra = np.setdiff1d(np.linspace(-1, 1, 2 * n).astype(np.float32), c)[:n - c.size]
        c = np.sort(np.concatenate([c, extra]))
    return tuple(float(x) for x in c)


def awq_scales(w: np.ndarray, x: np.ndarray, group: int, qmax) -> np.ndarray:
    """AWQ (Lin et al. 2024): per input channel s = mean|x|^alpha (normalised by the
    geometric mean of its extremes), alpha on a grid in [0, 1] chosen to minimise
    ||x wᵀ - x (Q(w·s) / s)ᵀ||² with round-to-nearest Q; s = 1 when alpha = 0 wins."""
    a = np.abs(x).mean(axis=0) + 1e-8
    ref = x @ w.T.astype(np.float64)
    best, best_s = None, np.ones(w.shape[1])
    for alpha in np.linspace(0.0, 1.0, AWQ_GRID + 1):
        s = a ** alpha
        s = s / np.sqrt(s.max() * s.min())
        q, scales = round_to_nearest((w * s).astype(np.float32), group, qmax)
        deq = as_grid(qmax).values(q) * np.repeat(scales, group, axis=1)[:, :w.shape[1]] / s
        err = float(((ref - x @ deq.T) ** 2).sum())
        if best is None or err < best:
            best, best_s = err, s
    return best_s


def _scale_inputs(ops: list[Op], inv: np.ndarray) -> None:
    """Multiply each op's input by `inv` (per input channel): x / s, the other half of
    AWQ's w·s."""
    for op in ops:
        x = op.operands[0]
        c = make_constant(op.function, op, inv.astype(np.float32),
                          f"{param_name(op.operands[1]) or x.name}.awq_inv_scale")
        b = Builder(op.function, before=op, loc=op.loc)
        op.set_operand(0, b.value("qir.mul", [x, c], names=[f"{x.name}_awq"]))


def _replace_weight(ops: list[Op], q: np.ndarray, scales: np.ndarray, storage: str,
                    grid: Grid, group: int | None) -> None:
    """Swap each op's float weight for dequantize(param) with codes q [N, K] and scales
    [N, K/g] (one parameter for all of them)."""
    linear = ops[0].name == "qir.linear"
    codebook = grid.levels is not None
    data = (q if linear else q.T).astype(np.uint8 if codebook else np.int8)
    sgrid = scales if linear else scales.T
    k_axis, n_axis = (1, 0) if linear else (0, 1)
    lo, hi = (None, None) if codebook else (-grid.qmax, grid.qmax)
    axis, block = (n_axis, None) if group is None else (k_axis, group)
    qtype = QuantType(storage, "f32", tuple(map(float, sgrid.ravel())), (0,) * sgrid.size,
                      lo, hi, axis=axis, block_size=block, levels=grid.levels)
    old = ops[0].operands[1]
    name = f"{param_name(old) or old.name}.{storage}"
    pname = ops[0].function.module.add_param(name, data)  # (name: w.i4, w.u4, ...)
    for op in ops:
        b = Builder(op.function, before=op, loc=op.loc)
        pv = b.value("qir.param", [], {"name": pname},
                     result_types=[TensorType(data.shape, qtype)], names=[name])
        op.set_operand(1, b.value("qir.dequantize", [pv], names=[f"{name}_dq"]))
        op.attrs["accumulate"] = "sequential"  # reproducible: docs/semantics.md


@register_pass("weight-only")
def weight_only(
    module: Module, ctx: PassContext, *,
    bits: Annotated[Literal[4, 8], "weight bits (int4 in [-7, 7], int8 in [-127, 127])"] = 4,
    group_size: Annotated[int, "input channels per scale, 32..256 (0: one scale per output "
                          "channel)"] = 128,
    gptq: Annotated[bool, "GPTQ error-compensating rounding (needs calibration data)"] =
        False,
    damp: Annotated[float, "GPTQ dampening, a fraction of the Hessian's mean diagonal"] =
        0.01,
    awq: Annotated[bool, "AWQ activation-aware per-channel scales before rounding to "
                   "nearest (needs calibration data)"] = False,
    format: Annotated[Literal["int", "nf4", "kmeans"], "int: uniform integers; nf4: the NF4 "
                      "codebook (4 bits); kmeans: a codebook learned per weight"] = "int",
    levels: Annotated[Literal[16, 256], "format=kmeans: levels of the learned codebook "
                      "(16: 4-bit indices, 256: 8-bit)"] = 16,
) -> bool:
    """Quantize linear/matmul weights to int4/int8 (or a 4/8-bit codebook) per group
    (dequantized at run time); activations stay float."""
    if group_size != 0 and not 32 <= group_size <= 256:
        raise QirError(f"weight-only: group-size must be in 32..256 (or 0 for per channel), "
                       f"got {group_size}")
    if gptq and awq:
        raise QirError("weight-only: choose gptq=true or awq=true, not both")
    if format == "nf4" and bits != 4:
        raise QirError("weight-only: format=nf4 is a 4-bit codebook (bits=4)")
    storage, qmax = STORAGE[bits]
    grid = Grid(qmax)
    if format == "nf4":
        storage, grid = "u4", Grid(levels=CODEBOOKS["nf4"])
    elif format == "kmeans":
        storage, bits = ("u4", 4) if levels == 16 else ("u8", 8)
    targets = _targets(module)
    if not targets:
        return False
    groups = [ops for ops, _ in targets]
    hessians = _hessians(module, groups, ctx) if gptq else None
    samples = _awq_samples(module, groups, ctx) if awq else None
    before = after = packed = scaled = 0
    for i, (ops, w) in enumerate(targets):
        k = w.shape[1]
        group = min(group_size or k, k)  # not dividing K: a shorter last group
        if format == "kmeans":
            grid = Grid(levels=kmeans_levels(w, group, levels))
        if gptq:
            q, scales = gptq_round(w, hessians[i], group, grid, damp=damp)
        elif awq:
            s = awq_scales(w.astype(np.float64), samples[i], group, grid)
            q, scales = round_to_nearest((w * s).astype(np.float32), group, grid)
            if not np.all(s == 1.0):
                _scale_inputs(ops, 1.0 / s)
                scaled += 1
        else:
            q, scales = round_to_nearest(w, group, grid)
        _replace_weight(ops, q, scales, storage, grid, None if group == k else group)
        before += w.size * w.dtype.itemsize
        after += q.size + 4 * scales.size
        packed += -(-q.size * bits // 8) + 4 * scales.size
    method = " (GPTQ)" if gptq else f" (AWQ: {scaled} rescaled)" if awq else ""
    kind = {"int": f"int{bits}", "nf4": "NF4",
            "kmeans": f"k-means codebook of {levels} levels"}[format]
    ctx.notes.append(f"weight-only: {len(targets)} weights {kind}{method}: "
                     f"{before} bytes -> {after} stored "
                     f"(one value per byte), {packed} packed ({before / packed:.1f}x)")
    finish(module)
    return True
