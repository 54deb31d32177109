"""Integer dense kernels: y[m, n] = sum_k (x[m, k] - zp) * w[n, k] + bias[n] in int32
with constant weights, and the batched matmul of two activations (attention's q @ k^T and
p @ v), y[s] = (a[s] - za) @ (b[s] - zb); and a float32 dense kernel for constant weights
(float linears, and the weight-only and fp8 schemes, whose dequantized weights are known
at compile time: `float_dense`).

Operands: x [M, K] int8, uint8 or int16 (an activation), zp an int32 scalar,
w the constant int8 weights pre-packed by `pack_weights` as [N/16, K/2, 16, 2] (16
output channels x 2 reduction steps contiguous; N and K zero-padded), bias [N] int32.

Schedule (per kernel call):
1. xc[Mp, Kp] = int16(x - zp), zero-padded to the row tile and to even K;
2. a tile of R rows x 16 output channels (R <= 6, see common.row_tile) accumulates in
   2R ymm registers over K/2 steps of `dot_pairs` (vpbroadcastd the activation pair,
   vpmovsxbw 16 weights, vpmaddwd + vpaddd, or one vpdpwssd with VNNI): two weight
   loads and R broadcasts for 4R multiply-add instructions. With AVX-512 (common.widest)
   each row's 16 channels are one zmm accumulator and R <= 16;
3. the tile is written out with the bias added, and with an epilogue (epilogue.py:
   requantize, residual qadd) stored as 8-bit values, vectorised over the tile's 16
   output channels. Tiles run in parallel.

The batched matmul runs the same tiles per batch entry, with b repacked per call into
int16 [batch, N/16, K/2, 16, 2] (centred) and `dot_pairs` loading it without sign
extension.
"""

from __future__ import annotations

import functools

import numpy as np
import tvm
from tvm import relax, te, tirx

from backends.tvm.common import R, const, dtype_of, shape_of
from backends.tvm.kernels import gpu
from backends.tvm.kernels.common import (
    AVX2,
    LANES,
    MAX_ROWS,
    MAX_ROWS_ZMM,
    PARALLEL_WORK,
    Dot,
    build_or_none,
    call_kernel,
    ceil_div,
    centred,
    centred_fits_int16,
    choose_dot,
    fits_int8,
    has_zmm,
    input_offset,
    kernel_func,
    kernel_target,
    row_tile,
    schedule_repack,
    unsigned_input,
    widest,
    zero_point_var,
)
from backends.tvm.kernels.epilogue import Epilogue

COLS = 2 * LANES  # output channels per tile: two ymm accumulators per row


def pack_weights(w: np.ndarray, dot: Dot = AVX2) -> np.ndarray:
    """w[N, K] (values in int8) as int8 [ceil(N/16), ceil(K/q), 16, q], zero-padded
    (q = dot.group: 2, or 4 for VNNI)."""
    n, k = w.shape
    q = dot.group
    nt, kq = ceil_div(n, COLS), ceil_div(k, q)
    padded = np.zeros((nt * COLS, kq * q), np.int8)
    padded[:n, :k] = w
    return np.ascontiguousarray(padded.reshape(nt, COLS, kq, q).transpose(0, 2, 1, 3))


@functools.cache
def dense_func(m: int, n: int, k: int, x_dtype: str, epilogue: Epilogue | None = None,
               dot: Dot = AVX2) -> tirx.PrimFunc:
    """The scheduled kernel for x[m, k] (x_dtype) and packed weights of w[n, k]: (x, zp,
    w, bias, epilogue inputs...) -> y[m, n], int32 or, with an epilogue, its stored
    values. With VNNI the bias must come with (zp - storage_min) * sum w taken off
    (common.vnni_bias)."""
    rows, q = row_tile(m, MAX_ROWS_ZMM if dot.lanes == 16 else MAX_ROWS), dot.group
    mp, kq, nt = ceil_div(m, rows) * rows, ceil_div(k, q), ceil_div(n, COLS)
    x = te.placeholder((m, k), x_dtype, name="x")
    zp = zero_point_var()
    w = te.placeholder((nt, kq, COLS, q), "int8", name="w")
    bias = te.placeholder((n,), "int32", name="bias")

    def repack(i, j):
        inside = _bounds((i, j), (m, k), (mp, q * kq))
        if dot.vnni:  # padded rows and columns multiply zero weights or are dropped
            return unsigned_input(x, input_offset(x_dtype), (i, j), inside,
                                  tirx.const(0, "uint8"))
        return centred(x, zp, (i, j), inside)

    xc = te.compute((mp, q * kq), repack, name="xc")
    ko = te.reduce_axis((0, kq), "ko")
    ki = te.reduce_axis((0, q), "ki")
    acc = te.compute((mp, nt, COLS), lambda i, t, j: te.sum(
        xc[i, q * ko + ki].astype("int32") * w[t, ko, j, ki].astype("int32"), axis=[ko, ki]),
        name="acc")
    y = te.compute((m, n), lambda i, j: acc[i, j // COLS, j % COLS] + bias[j], name="y")
    extra = epilogue.placeholders((m, n)) if epilogue is not None else []
    outputs = [y] if epilogue is None else [epilogue.compute(y, 1, extra)]
    sch = tvm.s_tir.Schedule(te.create_prim_func([x, zp, w, bias, *extra, *outputs]))
    parallel = m * n * k >= PARALLEL_WORK
    _schedule(sch, rows, parallel, "int8", with_epilogue=epilogue is not None, dot=dot)
    schedule_repack(sch, "xc", 0, parallel)
    name = (f"qir_{'vdense' if dot.vnni else 'dense'}{'_zmm' if dot.lanes == 16 else ''}"
            f"_{x_dtype}_m{m}_n{n}_k{k}")
    return kernel_func(sch.mod["main"], name + (f"_{epilogue.tag}" if epilogue else ""))


@functools.cache
def batch_matmul_func(batch: int, m: int, n: int, k: int, a_dtype: str,
                      b_dtype: str) -> tirx.PrimFunc:
    """The scheduled kernel for (a[batch, m, k] - za) @ (b[batch, k, n] - zb): both
    operands are activations, so b is packed per call, as int16 [batch, N/16, K/2, 16, 2]
    (b - zb needs 9 bits for 8-bit b)."""
    rows = row_tile(m)
    mp, kh, nt = ceil_div(m, rows) * rows, ceil_div(k, 2), ceil_div(n, COLS)
    a = te.placeholder((batch, m, k), a_dtype, name="a")
    b = te.placeholder((batch, k, n), b_dtype, name="b")
    za, zb = zero_point_var(), tirx.Var("zp_b", "int32")
    ac = te.compute((batch, mp, 2 * kh), lambda s, i, j: centred(
        a, za, (s, i, j), _bounds((i, j), (m, k), (mp, 2 * kh))), name="ac")
    bc = te.compute((batch, nt, kh, COLS, 2), lambda s, t, ko, j, ki: centred(
        b, zb, (s, 2 * ko + ki, t * COLS + j),
        _bounds((2 * ko + ki, t * COLS + j), (k, n), (2 * kh, nt * COLS))), name="bc")
    ko = te.reduce_axis((0, kh), "ko")
    ki = te.reduce_axis((0, 2), "ki")
    acc = te.compute((batch, mp, nt, COLS), lambda s, i, t, j: te.sum(
        ac[s, i, 2 * ko + ki].astype("int32") * bc[s, t, ko, j, ki].astype("int32"),
        axis=[ko, ki]), name="acc")
    y = te.compute((batch, m, n), lambda s, i, j: acc[s, i, j // COLS, j % COLS], name="y")
    sch = tvm.s_tir.Schedule(te.create_prim_func([a, za, b, zb, y]))
    parallel = batch * m * n * k >= PARALLEL_WORK
    _schedule(sch, rows, parallel, "int16")
    schedule_repack(sch, "ac", 1, parallel)
    schedule_repack(sch, "bc", 1, parallel, pairs=True)
    name = f"qir_bmm_{a_dtype}_{b_dtype}_b{batch}_m{m}_n{n}_k{k}"
    return kernel_func(sch.mod["main"], name)


def _bounds(index, sizes, padded) -> list:
    """index < size for each padded dimension."""
    return [i < size for i, size, p in zip(index, sizes, padded, strict=True) if p > size]


def _schedule(sch: tvm.s_tir.Schedule, rows: int, parallel: bool, b_dtype: str,
              with_epilogue: bool = False, dot: Dot = AVX2) -> None:
    """Tiles of `rows` x 16 accumulators (under any batch loop), in parallel; the bias
    (and epilogue) stages per tile, vectorised over its 16 output channels."""
    acc, y = sch.get_sblock("acc"), sch.get_sblock("y")
    stores = [y, sch.get_sblock("epilogue")] if with_epilogue else [y]
    *batch, i, t, j, ko, ki = sch.get_loops(acc)
    io, ii = sch.split(i, [None, rows])
    jq, ji = sch.split(j, [None, dot.lanes])
    sch.reorder(*batch, io, t, ko, ii, jq, ji, ki)
    for block in stores:
        sch.reverse_compute_at(block, t)
    tiles = sch.fuse(*batch, io, t)
    if parallel:  # parallel and vectorize come before decompose_reduction
        sch.parallel(tiles)
    for block in stores:
        sch.vectorize(sch.get_loops(block)[-1])
    init = sch.decompose_reduction(acc, ko)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(ii)
    sch.unroll(jq)
    if dot.tensorize:
        sch.tensorize(ji, dot.intrinsic("int8" if dot.vnni else b_dtype))


def dense(bb: relax.BlockBuilder, x: relax.Expr, x_range: tuple[int, int], zp: int,
          w: np.ndarray, bias: np.ndarray | None, epilogue: Epilogue | None = None,
          residual: relax.Expr | None = None) -> relax.Expr | None:
    """sum_k (x[..., k] - zp) * w[n, k] + bias[n] in int32 through the kernel, or with
    `epilogue` (and its `residual`, shaped like the result) the epilogue's stored
    output; None when it does not apply (not an AVX2 llvm target, weights outside int8,
    x - zp outside int16). `x_range` is the stored range of x."""
    if gpu.target_arch() is not None:  # CUDA with int8 tensor cores
        return gpu.dense(bb, x, zp, w, bias, epilogue, residual)
    x_dtype = dtype_of(x)
    if (kernel_target() is None or not fits_int8(w)
            or not centred_fits_int16(x_dtype, *x_range, zp)):
        return None
    shape = shape_of(x)
    n, k = w.shape
    m = int(np.prod(shape[:-1]))
    if m == 0 or shape[-1] != k:
        return None
    b = np.zeros(n, np.int32) if bias is None else bias.astype(np.int32)
    dot, b = choose_dot(w, b, x_dtype, zp)
    func = build_or_none(dense_func, m, n, k, x_dtype, epilogue, widest(dot))
    if func is None:
        return None
    x2 = bb.emit(R.reshape(x, (m, k))) if len(shape) != 2 else x
    extra, out_dtype = [], "int32"
    if epilogue is not None:
        if residual is not None and len(shape) != 2:
            residual = bb.emit(R.reshape(residual, (m, n)))
        extra, out_dtype = epilogue.relax_args(residual), epilogue.out_dtype
    y = call_kernel(bb, func,
                    [x2, relax.prim_value(zp, "int32"), const(pack_weights(w, dot), "int8"),
                     const(b, "int32"), *extra], (m, n), out_dtype)
    return bb.emit(R.reshape(y, shape[:-1] + (n,))) if len(shape) != 2 else y


def batch_matmul(bb: relax.BlockBuilder, a: relax.Expr, a_range: tuple[int, int], za: int,
                 b: relax.Expr, b_range: tuple[int, int], zb: int) -> relax.Expr | None:
    """(a - za) @ (b - zb) in int32 for a[..., M, K], b[..., K, N] with equal batch
    dimensions, through the kernel; None when it does not apply (not an AVX2 llvm target,
    a centred operand outside int16, or a pair sum that could reach 2^31: both centred
    operands reaching -2^15)."""
    a_shape, b_shape = shape_of(a), shape_of(b)
    if (kernel_target() is None or min(len(a_shape), len(b_shape)) < 2
            or a_shape[:-2] != b_shape[:-2] or a_shape[-1] != b_shape[-2]
            or not centred_fits_int16(dtype_of(a), *a_range, za)
            or not centred_fits_int16(dtype_of(b), *b_range, zb)
            or (a_range[0] - za == -(2**15) and b_range[0] - zb == -(2**15))):
        return None
    (m, k), n = a_shape[-2:], b_shape[-1]
    batch = int(np.prod(a_shape[:-2]))
    if min(batch, m, n, k) == 0:
        return None
    func = build_or_none(batch_matmul_func, batch, m, n, k, dtype_of(a), dtype_of(b))
    if func is None:
        return None
    a3 = bb.emit(R.reshape(a, (batch, m, k)))
    b3 = bb.emit(R.reshape(b, (batch, k, n)))
    y = call_kernel(bb, func, [a3, relax.prim_value(za, "int32"), b3,
                               relax.prim_value(zb, "int32")], (batch, m, n))
    return bb.emit(R.reshape(y, a_shape[:-2] + (m, n)))


# --- float32 dense with constant weights (float linears, weight-only and fp8 schemes) -------


def pack_float_weights(w: np.ndarray, lanes: int) -> np.ndarray:
    """w[N, K] float32 as [ceil(N/lanes), K, lanes], output channels zero-padded."""
    n, k = w.shape
    nt = ceil_div(n, lanes)
    padded = np.zeros((nt * lanes, k), np.float32)
    padded[:n] = w
    return np.ascontiguousarray(padded.reshape(nt, lanes, k).transpose(0, 2, 1))


@functools.cache
def float_dense_func(m: int, n: int, k: int, lanes: int, exact: bool = False
                     ) -> tirx.PrimFunc:
    """The scheduled kernel for x[m, k] float32 and packed float32 weights of w[n, k]:
    (x, w) -> y[m, n]. A tile of `rows` x `lanes` output channels accumulates in vector
    registers over k (one broadcast of x and one weight load per step), each output in
    order k = 0, 1, ...; LLVM may fuse the multiply-add unless `exact` (a linear with
    `accumulate = "sequential"`, docs/semantics.md: every product rounded); tiles run in
    parallel."""
    from backends.tvm.exact import rounded_product

    most = MAX_ROWS_ZMM if lanes == 16 else MAX_ROWS
    rows = next(r for r in range(min(m, most), 0, -1) if m % r == 0)  # no padded rows
    nt = ceil_div(n, lanes)
    x = te.placeholder((m, k), "float32", name="x")
    w = te.placeholder((nt, k, lanes), "float32", name="w")
    kk = te.reduce_axis((0, k), "k")
    product = rounded_product if exact else (lambda a, b: a * b)
    acc = te.compute((m, nt, lanes), lambda i, t, j: te.sum(product(x[i, kk], w[t, kk, j]),
                                                            axis=kk), name="acc")
    y = te.compute((m, n), lambda i, j: acc[i, j // lanes, j % lanes], name="y")
    sch = tvm.s_tir.Schedule(te.create_prim_func([x, w, y]))
    block, out = sch.get_sblock("acc"), sch.get_sblock("y")
    i, t, j, kr = sch.get_loops(block)
    io, ii = sch.split(i, [None, rows])
    sch.reorder(io, t, kr, ii, j)
    sch.reverse_compute_at(out, t)
    tiles = sch.fuse(io, t)
    if m * n * k >= PARALLEL_WORK:
        sch.parallel(tiles)
    sch.vectorize(sch.get_loops(out)[-1])
    sch.vectorize(j)  # (before decompose_reduction, as parallel)
    init = sch.decompose_reduction(block, kr)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(ii)
    return kernel_func(sch.mod["main"],
                       f"qir_{'x' if exact else ''}fdense_m{m}_n{n}_k{k}_l{lanes}")


def float_dense(bb: relax.BlockBuilder, x: relax.Expr, w: np.ndarray, exact: bool = False
                ) -> relax.Expr | None:
    """x[..., k] @ w[n, k]^T in float32 through the kernel, for constant weights (`exact`:
    sequential with rounded products); None when it does not apply (not an AVX2 llvm
    target, not float32)."""
    target = kernel_target()
    shape = shape_of(x)
    if target is None or dtype_of(x) != "float32" or w.ndim != 2 or shape[-1] != w.shape[1]:
        return None
    n, k = w.shape
    m = int(np.prod(shape[:-1]))
    if min(m, n, k) == 0:
        return None
    lanes = 16 if has_zmm(target) else 8
    func = build_or_none(float_dense_func, m, n, k, lanes, exact)
    if func is None:
        return None
    x2 = bb.emit(R.reshape(x, (m, k))) if len(shape) != 2 else x
    y = call_kernel(bb, func, [x2, const(pack_float_weights(w, lanes), "float32")], (m, n),
                    "float32")
    return bb.emit(R.reshape(y, shape[:-1] + (n,))) if len(shape) != 2 else y


@functools.cache
def seq_bmm_func(batch: int, m: int, n: int, k: int, lanes: int) -> tirx.PrimFunc:
    """The scheduled kernel for a[batch, m, k] @ b[batch, k, n] in float32 where every
    dot product is summed in order k = 0, 1, ... and every product rounded on its own
    (docs/semantics.md: attention's products): a tile of rows x `lanes` outputs is
    vector registers, each step adds one rounded product per output, so vectorising over
    outputs keeps each output's order. b is read in place (n contiguous)."""
    from backends.tvm.exact import rounded_product

    most = MAX_ROWS_ZMM if lanes == 16 else MAX_ROWS
    rows = next(r for r in range(min(m, most), 0, -1) if m % r == 0)
    cols = next(c for c in (lanes, 8, 4, 2, 1) if n % c == 0)
    a = te.placeholder((batch, m, k), "float32", name="a")
    b = te.placeholder((batch, k, n), "float32", name="b")
    kk = te.reduce_axis((0, k), "k")
    y = te.compute((batch, m, n), lambda s, i, j: te.sum(
        rounded_product(a[s, i, kk], b[s, kk, j]), axis=kk), name="y")
    sch = tvm.s_tir.Schedule(te.create_prim_func([a, b, y]))
    block = sch.get_sblock("y")
    s, i, j, kr = sch.get_loops(block)
    io, ii = sch.split(i, [None, rows])
    jo, ji = sch.split(j, [None, cols])
    sch.reorder(s, io, jo, kr, ii, ji)
    tiles = sch.fuse(s, io, jo)
    if batch * m * n * k >= PARALLEL_WORK:
        sch.parallel(tiles)
    if cols > 1:
        sch.vectorize(ji)
    init = sch.decompose_reduction(block, kr)
    if cols > 1:
        sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(ii)
    return kernel_func(sch.mod["main"], f"qir_seqbmm_b{batch}_m{m}_n{n}_k{k}")


def seq_batch_matmul(bb: relax.BlockBuilder, a: relax.Expr, b: relax.Expr
                     ) -> relax.Expr | None:
    """a[..., m, k] @ b[..., k, n] in float32 with sequential dot products (equal batch
    dimensions), through the kernel; None when it does not apply."""
    target = kernel_target()
    a_shape, b_shape = shape_of(a), shape_of(b)
    if (target is None or dtype_of(a) != "float32" or dtype_of(b) != "float32"
            or len(a_shape) < 2 or a_shape[:-2] != b_shape[:-2]
            or a_shape[-1] != b_shape[-2]):
        return None
    (m, k), n = a_shape[-2:], b_shape[-1]
    batch = int(np.prod(a_shape[:-2]))
    if min(batch, m, n, k) == 0:
        return None
    func = build_or_none(seq_bmm_func, batch, m, n, k, 16 if has_zmm(target) else 8)
    if func is None:
        return None
    a3 = bb.emit(R.reshape(a, (batch, m, k)))
    b3 = bb.emit(R.reshape(b, (batch, k, n)))
    y = call_kernel(bb, func, [a3, b3], (batch, m, n), "float32")
    return bb.emit(R.reshape(y, a_shape[:-2] + (m, n)))
