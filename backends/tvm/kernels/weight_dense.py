"""Float32 dense kernels whose constant weights stay stored as int8, packed int4, fp8 or
codebook indices and are dequantized in registers (the weight-only and fp8 schemes), bit
for bit the numpy interpreter's `linear {accumulate = "sequential"}` (docs/semantics.md):

    w[n, k] = float32(q[n, k]) * s[n, k // group]   (the qir.dequantize rule, zp = 0)
    w[n, k] = table[q[n, k]] * s[n, k // group]     (a codebook: NF4, k-means)
    y[m, n] = ((0 + x[m, 0] * w[n, 0]) + x[m, 1] * w[n, 1]) + ...  each product rounded

Operands: x [M, K] float32; the weights packed by `pack` into tiles of `cols` output
channels (`vecs` vectors of `lanes`), k-major inside a tile so that a step of k reads
one contiguous run of bytes:
- int8 and fp8: [N/cols, K, cols], one byte per weight;
- int4: [N/cols, K, cols/2], two per byte: byte (v // 2) * lanes + l holds channel
  v * lanes + l of an even vector v in its low nibble and of vector v + 1 in its high
  nibble (both two's complement), so one vector load of bytes serves two vectors of
  weights (sign extension and two shifts unpack them);
- 4-bit codebook indices (`cb4`): as int4, unsigned nibbles, looked up in the 16-entry
  table held in registers by a variable permute: one `vpermps` of a zmm (AVX-512), or
  two of ymm halves and a blend on the index's bit 3 (AVX2). (A vector gather, which
  TVM scalarizes, made NF4 decoding 3.7x slower than int4; a tree of 15 selects, 2x.)
  8-bit (`cb8`): as int8, the 256-entry table read by the index (a gather).
  Either table is an operand and repeats the last level past the codebook's end (numpy
  clips indices);
- scales [N/cols, ceil(K/group), cols] float32 (one group: per output channel).
Padded channels have zero weights and scales, and are not written out.

Schedule: per step of k the tile's weights are unpacked and scaled once (`vecs` vector
registers), then each of the `rows` rows broadcasts x[m, k] and adds its rounded
products into `vecs` accumulator registers. Every output's sum stays in order k = 0,
1, ..., so vectorising over output channels and tiling over rows keeps the numpy
interpreter's result; no product is fused into a multiply-add (exact.rounded_product).
A single row (decoding one token) takes wider tiles, for enough independent
accumulators to hide the add latency, and prefetches its weights a kilobyte ahead
(`_prefetch`). Rows are padded up to the tile with zeros (copied out
of the product loops). Tiles run in parallel.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax, te, tirx

from backends.tvm.common import R, const, dtype_of, shape_of
from backends.tvm.kernels.common import (
    PARALLEL_WORK,
    build_or_none,
    call_kernel,
    ceil_div,
    has_zmm,
    kernel_func,
    kernel_target,
    schedule_repack,
)

FORMATS = ("i8", "i4", "float8_e4m3fn", "float8_e5m2", "cb4", "cb8")
TABLE = {"cb4": 16, "cb8": 256}  # codebook formats: table entries


@dataclass(frozen=True)
class Tile:
    rows: int
    vecs: int
    lanes: int

    @property
    def cols(self) -> int:
        return self.vecs * self.lanes


def choose_tile(m: int, zmm: bool) -> Tile:
    """rows x vecs accumulators, rows as even as the row count allows (rows are padded
    up to a multiple). Measured on a 128x1024x1024 int4 prefill (AVX-512): 16 rows x 2
    zmm (150 GFLOP/s) beat 8 x 2 (124) and 4 x 4 (103) although 32 accumulators
    spill: the tile's weights are unpacked once per 16 rows. One row (decoding a token)
    takes 8 vectors (4 with ymm) for independent accumulators; vecs stays even (int4)."""
    lanes = 16 if zmm else 8
    if m == 1:
        return Tile(1, 8 if zmm else 4, lanes)
    most = 16 if zmm else 6
    return Tile(ceil_div(m, ceil_div(m, most)), 2, lanes)


def pack(q: np.ndarray, scales: np.ndarray, fmt: str, tile: Tile
         ) -> tuple[np.ndarray, np.ndarray]:
    """(weights, scales) in the kernel's layout from q [N, K] stored values (fp8: their
    bytes as uint8) and per-group scales [N, G]."""
    n, k = q.shape
    cols = tile.cols
    nt = ceil_div(n, cols)
    wide = np.zeros((nt * cols, k), np.int8 if fmt not in ("i4", "cb4") else np.int16)
    wide[:n] = q.view(np.int8) if q.dtype == np.uint8 and fmt != "cb4" else q
    tiles = wide.reshape(nt, cols, k).transpose(0, 2, 1)  # [nt, K, cols]
    if fmt in ("i4", "cb4"):
        lanes = tile.lanes
        v = tiles.reshape(nt, k, tile.vecs // 2, 2, lanes)
        lo, hi = v[:, :, :, 0, :] & 0xF, v[:, :, :, 1, :] & 0xF
        weights = (lo | (hi << 4)).astype(np.uint8).view(np.int8).reshape(nt, k, cols // 2)
    else:
        weights = tiles.astype(np.int8)
    s = np.zeros((nt * cols, scales.shape[1]), np.float32)
    s[:n] = scales
    return (np.ascontiguousarray(weights),
            np.ascontiguousarray(s.reshape(nt, cols, -1).transpose(0, 2, 1)))


def _permute(table, idx, lanes: int, c):
    """table[idx] for a vector of 4-bit indices, the table in registers: `table[c % lanes]`
    is a vector load of it once the dequantize loop is vectorized by `lanes`, as both
    schedules do (these intrinsics take whole vectors)."""
    if lanes == 16:
        return tirx.call_llvm_pure_intrin("float32", "llvm.x86.avx512.permvar.sf.512",
                                          table[c % 16], idx)
    lo = tirx.call_llvm_pure_intrin("float32", "llvm.x86.avx2.permps", table[c % 8], idx)
    hi = tirx.call_llvm_pure_intrin("float32", "llvm.x86.avx2.permps", table[8 + c % 8], idx)
    return tirx.Select((idx & 8) != 0, hi, lo)


def _weight(w: te.Tensor, s: te.Tensor, tab: te.Tensor | None, fmt: str, group: int,
            tile: Tile, t, kk, c):
    """The dequantized float32 weight of tile t, step kk, column c."""
    if fmt == "cb4":
        lanes = tile.lanes
        b = w[t, kk, (c // (2 * lanes)) * lanes + c % lanes].astype("int32")
        q = _permute(tab, (b >> (4 * ((c // lanes) % 2))) & 0xF, lanes, c)
    elif fmt == "cb8":
        q = tab[w[t, kk, c].astype("int32") & 0xFF]
    elif fmt == "i4":
        lanes = tile.lanes
        b = w[t, kk, (c // (2 * lanes)) * lanes + c % lanes].astype("int32")
        q = ((b << (28 - 4 * ((c // lanes) % 2))) >> 28).astype("float32")
    elif fmt == "i8":
        q = w[t, kk, c].astype("float32")
    else:
        from backends.tvm.fp8 import FORMATS as FP8, decode_bits

        q = decode_bits(w[t, kk, c].astype("int32") & 0xFF, FP8[fmt])
    return q * s[t, kk // group, c]


@functools.cache
def weight_dense_func(m: int, n: int, k: int, fmt: str, group: int, tile: Tile
                      ) -> tirx.PrimFunc:
    """The scheduled kernel: (x[m, k], packed weights, packed scales[, a codebook's
    table]) -> y[m, n]."""
    from backends.tvm.exact import rounded_product

    cols, nt, groups = tile.cols, ceil_div(n, tile.cols), ceil_div(k, group)
    mp = ceil_div(m, tile.rows) * tile.rows
    x = te.placeholder((m, k), "float32", name="x")
    w = te.placeholder((nt, k, cols // 2 if fmt in ("i4", "cb4") else cols), "int8", name="w")
    s = te.placeholder((nt, groups, cols), "float32", name="s")
    tab = te.placeholder((TABLE[fmt],), "float32", name="tab") if fmt in TABLE else None
    xp = x if mp == m else te.compute((mp, k), lambda i, kk: tirx.if_then_else(
        i < m, x[i, kk], tirx.const(0.0, "float32")), name="xp")
    wf = te.compute((nt, k, cols),
                    lambda t, kk, c: _weight(w, s, tab, fmt, group, tile, t, kk, c), name="wf")
    r = te.reduce_axis((0, k), "k")
    acc = te.compute((mp, nt, cols), lambda i, t, c: te.sum(
        rounded_product(xp[i, r], wf[t, r, c]), axis=r), name="acc")
    y = te.compute((m, n), lambda i, j: acc[i, j // cols, j % cols], name="y")
    sch = tvm.s_tir.Schedule(te.create_prim_func([x, w, s] + ([tab] if fmt in TABLE else [])
                                                 + [y]))
    parallel = m * n * k >= PARALLEL_WORK
    if mp != m:  # rows padded with zeros, copied apart from the product loops
        schedule_repack(sch, "xp", 1, parallel)
    block, out, deq = sch.get_sblock("acc"), sch.get_sblock("y"), sch.get_sblock("wf")
    i, t, c, kr = sch.get_loops(block)
    io, ii = sch.split(i, [None, tile.rows])
    cv, cl = sch.split(c, [None, tile.lanes])
    if mp == tile.rows:  # one row tile: unpack each step's weights into registers
        sch.reorder(io, t, kr, ii, cv, cl)
        sch.reverse_compute_at(out, t)
        sch.compute_at(deq, kr)
        sch.set_scope(deq, 0, "local")
        tiles = sch.fuse(io, t)
    else:  # unpack the column tile once, for every row tile (held in cache)
        sch.reorder(t, io, kr, ii, cv, cl)
        sch.reverse_compute_at(out, io)
        sch.compute_at(deq, t)
        tiles = t
    dv, dl = sch.split(sch.get_loops(deq)[-1], [None, tile.lanes])
    if parallel:
        sch.parallel(tiles)
    sch.vectorize(sch.get_loops(out)[-1])
    sch.vectorize(cl)  # (before decompose_reduction, as parallel)
    sch.vectorize(dl)
    sch.unroll(dv)
    init = sch.decompose_reduction(block, kr)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(ii)
    sch.unroll(cv)
    if mp == tile.rows:
        _prefetch(sch, tiles, kr, k)
    return kernel_func(sch.mod["main"],
                       f"qir_wdense_{fmt}_g{group}_m{m}_n{n}_k{k}_r{tile.rows}x{tile.cols}")


PREFETCH_BYTES = 1024  # how far ahead of its step the decode loop asks for weights


def _prefetch(sch: tvm.s_tir.Schedule, tile_loop, k_loop, k: int) -> None:
    """At each step of K, prefetch the weights PREFETCH_BYTES ahead (every cache line of
    that step's row of the tile). Decoding one row does little work per weight, so the
    out-of-order window covers only a few steps: without it the kernel waited on memory
    at 3.3 G weights/s per core (int4, 2048x2048, weights not in cache); with it, 9.6."""
    w = next(r.source for r in sch.get(sch.get_sblock("wf")).reads if r.source.name == "w")
    row = int(w.ty.shape[-1])  # bytes of one step of K in a tile
    loop = sch.get(k_loop)
    t, kv = sch.get(tile_loop).loop_var, loop.loop_var
    ahead = tirx.min(kv + max(1, PREFETCH_BYTES // row), k - 1)
    calls = [tirx.stmt.Evaluate(tirx.call_llvm_intrin(
        "void", "llvm.prefetch.p0", tirx.address_of(tirx.BufferLoad(w, [t, ahead, byte])),
        0, 3, 1)) for byte in range(0, row, 64)]
    body = tirx.stmt.SeqStmt([*calls, loop.body])
    sch.state.replace(sch.get_sref(k_loop), tirx.stmt.For(
        kv, loop.min, loop.extent, loop.kind, body, loop.thread_binding, loop.annotations))


def weight_dense(bb: relax.BlockBuilder, x: relax.Expr, q: np.ndarray, scales: np.ndarray,
                 group: int, fmt: str, levels: tuple[float, ...] | None = None
                 ) -> relax.Expr | None:
    """x[..., k] @ w^T in float32 with w[n, k] = float32(q) * scales[n, k // group]
    (a codebook format: levels[q] * scales[...]) dequantized in the kernel (q: stored
    values [N, K], int8, fp8 bytes or codebook indices as uint8; scales [N, ceil(K /
    group)]); None when it does not apply (not an AVX2 llvm target, x not float32)."""
    target = kernel_target()
    shape = shape_of(x)
    if (target is None or fmt not in FORMATS or dtype_of(x) != "float32" or q.ndim != 2
            or shape[-1] != q.shape[1]):
        return None
    n, k = q.shape
    m = int(np.prod(shape[:-1]))
    if min(m, n, k) == 0 or scales.shape != (n, ceil_div(k, group)):
        return None
    tile = choose_tile(m, has_zmm(target))
    table = None
    if fmt in TABLE:  # the table, its last level repeated (numpy clips indices to it)
        table = np.full(TABLE[fmt], levels[-1], np.float32)
        table[:len(levels)] = levels
    func = build_or_none(weight_dense_func, m, n, k, fmt, group, tile)
    if func is None:
        return None
    packed, packed_scales = pack(q, scales, fmt, tile)
    x2 = bb.emit(R.reshape(x, (m, k))) if len(shape) != 2 else x
    operands = [x2, const(packed, "int8"), const(packed_scales, "float32")]
    if table is not None:
        operands.append(const(table, "float32"))
    y = call_kernel(bb, func, operands, (m, n), "float32")
    return bb.emit(R.reshape(y, shape[:-1] + (n,))) if len(shape) != 2 else y
