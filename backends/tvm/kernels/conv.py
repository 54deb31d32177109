"""Integer convolution kernels: y[n, o, oh, ow] = sum (x - zp) * w + bias[o] in int32,
NCHW input and output, OIHW constant int8 weights, padding that reads zp (contributes
0), any stride, dilation and groups. conv1d runs as conv2d with H = 1.

Two kernels, chosen by `conv2d`:

- **grouped** (groups < channels, or a channel multiplier): a direct convolution in a
  packed layout. The input is repacked per call, centred, into xc[N, G, C/G/2, Hp, Wp, 2]
  int16 (channel pairs innermost, zero borders = zp padding); the weights at compile time
  into [G, O/G/16, C/G/2, KH, KW, 16, 2] int8. A tile of R output pixels along a row x 16
  output channels accumulates in 2R ymm registers over (channel pair, kh, kw) with
  `dot_pairs` (vpmaddwd, common.py), then is written back to NCHW with the bias.
- **depthwise** (groups == channels == outputs): no reduction over channels, so it
  vectorises over output pixels instead: xd[N, C, Hp, S, Wp/S] int16 (each row split
  into its S stride phases, so that a strided tap reads contiguous lanes), multiplied in
  int32 lanes by the tap's weight (vpmovsxwd, vpmulld, vpaddd), up to 32 pixels of a
  row per tile.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np
import tvm
from tvm import relax, te, tirx

from backends.tvm.common import R, const, dtype_of, shape_of
from backends.tvm.kernels.common import (AVX2, LANES, PARALLEL_WORK, Dot, build_or_none,
                                         call_kernel, ceil_div, centred, centred_fits_int16,
                                         choose_dot, conv_out_hw, dot_pairs, fits_int8,
                                         has_zmm, input_offset, kernel_func, kernel_target,
                                         row_tile, schedule_repack, unsigned_input, vectorize_inner,
                                         zero_point_var)
from backends.tvm.kernels import gpu
from backends.tvm.kernels.epilogue import Epilogue

COLS = 2 * LANES  # output channels per tile of the grouped kernel
L1_BYTES = 32 * 1024  # L1 data cache of current x86 cores
DW_PIXELS = 4 * LANES  # most output pixels per tile of the depthwise kernel
DIRECT_COLS = 4  # output channels per tile of the direct kernel (16 vector registers)
DIRECT_COLS_AVX512 = 8  # with AVX-512's 32: 16 accumulators (measured 1.1-1.3x faster)
DIRECT_ROWS = 2  # rows of output pixels per tile of the direct kernel
DIRECT_MAX_INPUT = 64 * 1024  # bytes of repacked input that stay in cache


@dataclass(frozen=True)
class ConvShape:
    """A 2-D convolution problem; padding is (top, left, bottom, right)."""

    n: int
    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilation: tuple[int, int]
    groups: int
    x_dtype: str

    @property
    def out_hw(self) -> tuple[int, int]:
        return conv_out_hw(self.h, self.w, self.kh, self.kw, self.stride, self.padding,
                           self.dilation)

    @property
    def depthwise(self) -> bool:
        return self.groups == self.c == self.o

    @property
    def name(self) -> str:
        kind = "dwconv" if self.depthwise else "conv"
        dims = "_".join(f"{k}{v}" for k, v in (
            ("n", self.n), ("c", self.c), ("h", self.h), ("w", self.w), ("o", self.o),
            ("k", f"{self.kh}x{self.kw}"), ("s", "x".join(map(str, self.stride))),
            ("p", "x".join(map(str, self.padding))), ("d", "x".join(map(str, self.dilation))),
            ("g", self.groups)))
        return f"qir_{kind}_{self.x_dtype}_{dims}"

    def macs(self) -> int:
        oh, ow = self.out_hw
        return self.n * self.o * oh * ow * (self.c // self.groups) * self.kh * self.kw


def _bounds(var, lo: int, size: int, extent: int) -> list:
    """Conditions for lo <= var < lo + size, leaving out those that always hold on
    [0, extent)."""
    conds = []
    if lo > 0:
        conds.append(var >= lo)
    if lo + size < extent:
        conds.append(var < lo + size)
    return conds


def _tile(sch: tvm.s_tir.Schedule, acc, stores: list, outer: tuple, inner: tuple,
          parallel: bool) -> None:
    """What the grouped and direct kernels share: tiles over the `outer` loops (fused,
    in parallel), the reduction and register tile `inner` below them, the `stores`
    (bias, epilogue) computed per tile, the input repacked (channel groups innermost)
    and the accumulator's initialisation split off and vectorised."""
    sch.reorder(*outer, *inner)
    for block in stores:
        sch.reverse_compute_at(block, outer[-1])
    tiles = sch.fuse(*outer)
    if parallel:  # parallel and vectorize come before decompose_reduction
        sch.parallel(tiles)
    schedule_repack(sch, "xc", 3, parallel, pairs=True)
    init = sch.decompose_reduction(acc, inner[0])
    sch.vectorize(sch.get_loops(init)[-1])


# --- grouped convolution ------------------------------------------------------------------


def _grouped_dims(s: ConvShape) -> dict:
    oh, ow = s.out_hw
    rows = row_tile(ow)
    owp = ceil_div(ow, rows) * rows
    cg, og = s.c // s.groups, s.o // s.groups
    pt, pl, pb, pr = s.padding
    wx = max(s.w + pl + pr, (owp - 1) * s.stride[1] + s.dilation[1] * (s.kw - 1) + 1)
    return dict(oh=oh, ow=ow, rows=rows, owp=owp, cg=cg, og=og, ch=ceil_div(cg, 2),
                ot=ceil_div(og, COLS), hx=s.h + pt + pb, wx=wx)


def pack_grouped_weights(w: np.ndarray, groups: int) -> np.ndarray:
    """w[O, C/G, KH, KW] as int8 [G, ceil(O/G/16), ceil(C/G/2), KH, KW, 16, 2]."""
    o, cg, kh, kw = w.shape
    og = o // groups
    ot, ch = ceil_div(og, COLS), ceil_div(cg, 2)
    padded = np.zeros((groups, ot * COLS, ch * 2, kh, kw), np.int8)
    padded[:, :og, :cg] = w.reshape(groups, og, cg, kh, kw)
    packed = padded.reshape(groups, ot, COLS, ch, 2, kh, kw).transpose(0, 1, 3, 5, 6, 2, 4)
    return np.ascontiguousarray(packed)


@functools.cache
def grouped_func(s: ConvShape) -> tirx.PrimFunc:
    """The scheduled grouped kernel: (x, zp, packed weights, bias[G, O/G]) -> y[N, G, O/G,
    OH, OW] (a free reshape away from NCHW)."""
    d = _grouped_dims(s)
    (sh, sw), (dh, dw), g = s.stride, s.dilation, s.groups
    pt, pl, _, _ = s.padding
    x = te.placeholder((s.n, s.c, s.h, s.w), s.x_dtype, name="x")
    zp = zero_point_var()
    w = te.placeholder((g, d["ot"], d["ch"], s.kh, s.kw, COLS, 2), "int8", name="w")
    bias = te.placeholder((g, d["og"]), "int32", name="bias")

    def repack(n, gi, ch, hi, wi, ci):
        c = 2 * ch + ci
        inside = (_bounds(c, 0, d["cg"], 2 * d["ch"]) + _bounds(hi, pt, s.h, d["hx"])
                  + _bounds(wi, pl, s.w, d["wx"]))
        return centred(x, zp, (n, gi * d["cg"] + c, hi - pt, wi - pl), inside)

    xc = te.compute((s.n, g, d["ch"], d["hx"], d["wx"], 2), repack, name="xc")
    rc = te.reduce_axis((0, d["ch"]), "rc")
    rh = te.reduce_axis((0, s.kh), "rh")
    rw = te.reduce_axis((0, s.kw), "rw")
    ri = te.reduce_axis((0, 2), "ri")
    acc = te.compute(
        (s.n, g, d["ot"], d["oh"], d["owp"], COLS),
        lambda n, gi, t, oh, ow, j: te.sum(
            xc[n, gi, rc, oh * sh + rh * dh, ow * sw + rw * dw, ri].astype("int32")
            * w[gi, t, rc, rh, rw, j, ri].astype("int32"), axis=[rc, rh, rw, ri]),
        name="acc")
    y = te.compute((s.n, g, d["og"], d["oh"], d["ow"]), lambda n, gi, c, oh, ow: acc[
        n, gi, c // COLS, oh, ow, c % COLS] + bias[gi, c], name="y")
    sch = tvm.s_tir.Schedule(te.create_prim_func([x, zp, w, bias, y]))
    group_weights = d["ot"] * d["ch"] * s.kh * s.kw * COLS * 2
    _schedule_grouped(sch, d["rows"], channels_inner=group_weights <= L1_BYTES // 2,
                      parallel=s.macs() >= PARALLEL_WORK)
    return kernel_func(sch.mod["main"], s.name)


def _schedule_grouped(sch: tvm.s_tir.Schedule, rows: int, channels_inner: bool,
                      parallel: bool) -> None:
    """Tiles of `rows` pixels x 16 output channels; with `channels_inner` the channel
    tiles of one pixel tile run back to back (their input stays in L1), else the pixel
    tiles of one channel tile (its weights stay in L1)."""
    acc, y = sch.get_sblock("acc"), sch.get_sblock("y")
    n, g, t, oh, ow, j, rc, rh, rw, ri = sch.get_loops(acc)
    owo, owi = sch.split(ow, [None, rows])
    jq, ji = sch.split(j, [None, LANES])
    outer = (n, g, oh, owo, t) if channels_inner else (n, g, t, oh, owo)
    _tile(sch, acc, [y], outer, (rc, rh, rw, owi, jq, ji, ri), parallel)
    sch.unroll(owi)
    sch.unroll(jq)
    sch.tensorize(ji, dot_pairs())


# --- direct convolution, output pixels in lanes ----------------------------------------------


def use_direct(s: ConvShape, dot: Dot) -> bool:
    """Whether the direct kernel suits `s`: rows long enough that vectors of 8 pixels
    leave at most half their lanes idle (the grouped kernel pads output channels to 16
    instead). With VNNI it takes every size (measured 1.5-1.9x faster than the grouped
    kernel on ResNet-18's 3x3 convs from 64 x 56 x 56 to 512 x 7 x 7, Xeon Sapphire
    Rapids) and strides along rows too (the input repacked into its stride phases);
    with AVX2's vpmaddwd only stride 1 along rows and a repacked input that stays in
    cache while every 4-channel tile sweeps it (larger layers: the grouped kernel
    measured 10-20% faster, and up to 3x at 512 x 7 x 7)."""
    _, ow = s.out_hw
    return (not s.depthwise and (dot.vnni or s.stride[1] == 1)
            and (dot.vnni or _repacked_bytes(s) <= DIRECT_MAX_INPUT)
            and 2 * ow >= ceil_div(ow, LANES) * LANES)


def direct_lanes(s: ConvShape, dot: Dot) -> Dot:
    """The direct kernel's VNNI dot on 16 pixels (zmm) where the target has 512-bit
    vpdpbusd, the window has more than one tap, and rows of 16 waste at most a quarter
    more lanes than rows of 8 (56, 28, 14 pixels: yes; 7: no): twice the multiply-adds
    per instruction (3x3 at 64 x 56 x 56: 0.41 -> 0.29 ms). 1x1 convs are bound by
    memory, and measured slower on zmm (24 -> 144 channels at 56 x 56: 0.059 against
    0.101 ms), so they keep ymm."""
    _, ow = s.out_hw
    if (dot.vnni and dot.tensorize and s.kh * s.kw > 1
            and has_zmm(kernel_target(), vnni=True)
            and 4 * ceil_div(ow, 16) * 16 <= 5 * ceil_div(ow, LANES) * LANES):
        return replace(dot, lanes=16)
    return dot


def _repacked_bytes(s: ConvShape) -> int:
    pt, pl, pb, pr = s.padding
    return 2 * s.n * s.c * (s.h + pt + pb) * (s.w + pl + pr)  # int16, before rounding


def _rows_outer(s: ConvShape) -> bool:
    """Tiles ordered row band first, then output channels, for inputs larger than the
    cache: each band of input rows is reused by every channel tile while it is in L1
    (64 x 56 x 56: 0.41 ms against 0.55 ms channels first)."""
    return _repacked_bytes(s) > DIRECT_MAX_INPUT


def direct_cols() -> int:
    """Output channels per direct-kernel tile for the current target."""
    return DIRECT_COLS_AVX512 if has_zmm(kernel_target()) else DIRECT_COLS


def _direct_dims(s: ConvShape, dot: Dot, cols: int) -> dict:
    oh, ow = s.out_hw
    rows = DIRECT_ROWS if oh > 1 else 1
    ohp, owp = ceil_div(oh, rows) * rows, ceil_div(ow, dot.lanes) * dot.lanes
    cg, og = s.c // s.groups, s.o // s.groups
    pt, pl, pb, pr = s.padding
    (sh, sw), (dh, dw) = s.stride, s.dilation
    return dict(oh=oh, ow=ow, rows=rows, ohp=ohp, owp=owp, cg=cg, og=og,
                ch=ceil_div(cg, dot.group), ogp=ceil_div(og, cols) * cols,
                hx=max(s.h + pt + pb, (ohp - 1) * sh + dh * (s.kh - 1) + 1),
                wx=max(s.w + pl + pr, owp + dw * (s.kw - 1)),
                wq=owp + (dw * (s.kw - 1)) // sw)  # a stride phase's columns


def pack_direct_weights(w: np.ndarray, groups: int, dot: Dot = AVX2,
                        cols: int = DIRECT_COLS) -> np.ndarray:
    """w[O, C/G, KH, KW] as [G, O/G (padded to `cols`), C/G/q, KH, KW, q] (q = dot.group
    channels a broadcast multiplies, innermost): int16 pairs, or int8 quads for VNNI."""
    o, cg, kh, kw = w.shape
    og, q = o // groups, dot.group
    ogp, ch = ceil_div(og, cols) * cols, ceil_div(cg, q)
    padded = np.zeros((groups, ogp, ch * q, kh, kw), dot.weight_dtype)
    padded[:, :og, :cg] = w.reshape(groups, og, cg, kh, kw)
    packed = padded.reshape(groups, ogp, ch, q, kh, kw).transpose(0, 1, 2, 4, 5, 3)
    return np.ascontiguousarray(packed)


@functools.cache
def direct_func(s: ConvShape, epilogue: Epilogue | None = None,
                dot: Dot = AVX2, cols: int = DIRECT_COLS) -> tirx.PrimFunc:
    """The scheduled direct kernel: (x, zp, packed weights, bias[G, O/G padded to 4],
    epilogue inputs...) -> y[N, O, OH, OW], int32 accumulators or, with an epilogue, its
    stored values. With VNNI the bias must come with (zp - storage_min) * sum w taken
    off (common.vnni_bias). Tiles hold `cols` output channels (pack the weights with
    the same)."""
    d = _direct_dims(s, dot, cols)
    (sh, _), (dh, dw), g, q = s.stride, s.dilation, s.groups, dot.group
    pt, pl, _, _ = s.padding
    x = te.placeholder((s.n, s.c, s.h, s.w), s.x_dtype, name="x")
    zp = zero_point_var()
    w = te.placeholder((g, d["ogp"], d["ch"], s.kh, s.kw, q), dot.weight_dtype, name="w")
    bias = te.placeholder((g, d["ogp"]), "int32", name="bias")
    out_shape = (s.n, s.o, d["oh"], d["ow"])
    extra = epilogue.placeholders(out_shape) if epilogue is not None else []
    offset = input_offset(s.x_dtype)

    sw = s.stride[1]

    def load(n, gi, ch, hi, wi, ci, wx):
        c = q * ch + ci
        inside = (_bounds(c, 0, d["cg"], q * d["ch"]) + _bounds(hi, pt, s.h, d["hx"])
                  + _bounds(wi, pl, s.w, wx))
        index = (n, gi * d["cg"] + c, hi - pt, wi - pl)
        if dot.vnni:  # padding reads zp - offset: x - zp = 0 there
            return unsigned_input(x, offset, index, inside, (zp - offset).astype("uint8"))
        return centred(x, zp, index, inside)

    if sw == 1:
        xc = te.compute((s.n, g, d["ch"], d["hx"], d["wx"], q),
                        lambda n, gi, ch, hi, wi, ci: load(n, gi, ch, hi, wi, ci, d["wx"]),
                        name="xc")

        def tap(n, gi, rc, hi, rw, ow, ri):
            return xc[n, gi, rc, hi, ow + rw * dw, ri]
    else:  # the columns split into stride phases: a phase's pixels are contiguous
        xc = te.compute((s.n, g, d["ch"], d["hx"], sw, d["wq"], q),
                        lambda n, gi, ch, hi, p, wq, ci: load(n, gi, ch, hi, wq * sw + p, ci,
                                                              d["wq"] * sw),
                        name="xc")

        def tap(n, gi, rc, hi, rw, ow, ri):
            return xc[n, gi, rc, hi, (rw * dw) % sw, ow + (rw * dw) // sw, ri]

    rc = te.reduce_axis((0, d["ch"]), "rc")
    rh = te.reduce_axis((0, s.kh), "rh")
    rw = te.reduce_axis((0, s.kw), "rw")
    ri = te.reduce_axis((0, q), "ri")
    # weights first: the dot broadcasts its first operand (a weight group here) and
    # loads eight pixels' channel groups as the second
    acc = te.compute(
        (s.n, g, d["ogp"], d["ohp"], d["owp"]),
        lambda n, gi, o, oh, ow: te.sum(
            w[gi, o, rc, rh, rw, ri].astype("int32")
            * tap(n, gi, rc, oh * sh + rh * dh, rw, ow, ri).astype("int32"),
            axis=[rc, rh, rw, ri]),
        name="acc")
    y = te.compute(out_shape, lambda n, o, oh, ow: acc[n, o // d["og"], o % d["og"], oh, ow]
                   + bias[o // d["og"], o % d["og"]], name="y")
    outputs = [y] if epilogue is None else [epilogue.compute(y, 1, extra)]
    sch = tvm.s_tir.Schedule(te.create_prim_func([x, zp, w, bias, *extra, *outputs]))
    _schedule_direct(sch, d["rows"], parallel=s.macs() >= PARALLEL_WORK,
                     with_epilogue=epilogue is not None, dot=dot, rows_outer=_rows_outer(s),
                     cols=cols)
    name = s.name.replace("qir_conv", ("qir_vconv" + ("_zmm" if dot.lanes == 16 else ""))
                          if dot.vnni else "qir_dconv")
    return kernel_func(sch.mod["main"], name + (f"_{epilogue.tag}" if epilogue else ""))


def _schedule_direct(sch: tvm.s_tir.Schedule, rows: int, parallel: bool,
                     with_epilogue: bool, dot: Dot, rows_outer: bool = False,
                     cols: int = DIRECT_COLS) -> None:
    """Tiles of `cols` output channels x `rows` rows x dot.lanes pixels: cols x `rows`
    accumulators over (channel group, kh, kw), each step broadcasting `cols` weight
    groups and loading `rows` vectors of the pixels' channel groups; bias and epilogue
    store whole vectors."""
    acc, y = sch.get_sblock("acc"), sch.get_sblock("y")
    epilogue = sch.get_sblock("epilogue") if with_epilogue else None
    n, g, o, oh, ow, rc, rh, rw, ri = sch.get_loops(acc)
    oo, oi = sch.split(o, [None, cols])
    ho, hi = sch.split(oh, [None, rows])
    wo, wi = sch.split(ow, [None, dot.lanes])
    stores = [y, epilogue] if epilogue is not None else [y]
    outer = (n, g, ho, oo, wo) if rows_outer else (n, g, oo, ho, wo)
    _tile(sch, acc, stores, outer, (rc, rh, rw, oi, hi, wi, ri), parallel)
    sch.unroll(oi)
    sch.unroll(hi)
    if dot.tensorize:
        sch.tensorize(wi, dot.intrinsic("uint8" if dot.vnni else "int16"))
    for block in stores:
        vectorize_inner(sch, sch.get_loops(block)[-1], dot.lanes)


# --- depthwise convolution ----------------------------------------------------------------


def pixel_tile(ow: int) -> int:
    """Output pixels per depthwise tile (int32 lanes, up to 4 ymm): a divisor of the row
    so that tiles are never partial (a partial tile's bounds test keeps the write-back
    scalar), else 16 lanes and a padded last tile."""
    divisor = max(d for d in range(1, min(ow, DW_PIXELS) + 1) if ow % d == 0)
    return divisor if divisor >= LANES or divisor == ow else 2 * LANES


def _depthwise_dims(s: ConvShape) -> dict:
    oh, ow = s.out_hw
    lanes = pixel_tile(ow)
    owp = ceil_div(ow, lanes) * lanes
    pt, _, pb, _ = s.padding
    sw, dw = s.stride[1], s.dilation[1]
    wq = owp + (dw * (s.kw - 1)) // sw
    return dict(oh=oh, ow=ow, lanes=lanes, owp=owp, hx=s.h + pt + pb, wq=wq)


def depthwise_weight_dtype(x_range: tuple[int, int], zp: int, w: np.ndarray) -> str:
    """int16 where every product (x - zp) * w fits int16 (8-bit inputs: |x - zp| <= 255,
    |w| <= 128, at most 32640): one vpmullw per 16 pixels (measured 1.15-1.4x faster on
    stride-1 layers); else int32."""
    reach = max(abs(x_range[0] - zp), abs(x_range[1] - zp)) * int(np.abs(w).max(initial=0))
    return "int16" if reach < 2**15 else "int32"


@functools.cache
def depthwise_func(s: ConvShape, wt: str = "int32") -> tirx.PrimFunc:
    """The scheduled depthwise kernel: (x, zp, weights [C, KH, KW] of `wt`, bias[C]) ->
    y[N, C, OH, OW]; products in `wt` (depthwise_weight_dtype), sums in int32."""
    d = _depthwise_dims(s)
    (sh, sw), (dh, dw) = s.stride, s.dilation
    pt, pl, _, _ = s.padding
    x = te.placeholder((s.n, s.c, s.h, s.w), s.x_dtype, name="x")
    zp = zero_point_var()
    w = te.placeholder((s.c, s.kh, s.kw), wt, name="w")
    bias = te.placeholder((s.c,), "int32", name="bias")

    def repack(n, c, hi, p, q):
        wi = q * sw + p
        inside = _bounds(hi, pt, s.h, d["hx"]) + _bounds(wi, pl, s.w, d["wq"] * sw)
        return centred(x, zp, (n, c, hi - pt, wi - pl), inside)

    xd = te.compute((s.n, s.c, d["hx"], sw, d["wq"]), repack, name="xd")
    rh = te.reduce_axis((0, s.kh), "rh")
    rw = te.reduce_axis((0, s.kw), "rw")
    acc = te.compute(
        (s.n, s.c, d["oh"], d["owp"]),
        lambda n, c, oh, ow: te.sum(
            (xd[n, c, oh * sh + rh * dh, (rw * dw) % sw, ow + (rw * dw) // sw].astype(wt)
             * w[c, rh, rw]).astype("int32"), axis=[rh, rw]),
        name="acc")
    y = te.compute((s.n, s.c, d["oh"], d["ow"]),
                   lambda n, c, oh, ow: acc[n, c, oh, ow] + bias[c], name="y")
    sch = tvm.s_tir.Schedule(te.create_prim_func([x, zp, w, bias, y]))
    _schedule_depthwise(sch, d["lanes"], parallel=s.macs() >= PARALLEL_WORK)
    return kernel_func(sch.mod["main"], s.name)


def _schedule_depthwise(sch: tvm.s_tir.Schedule, lanes: int, parallel: bool) -> None:
    """Channel planes in parallel; each plane's input repacked just before its rows are
    computed, so it is read back from cache (a separate pass over the whole input,
    then the conv, measured 1.3-2x slower on MobileNetV2's stride-2 layers)."""
    acc, y = sch.get_sblock("acc"), sch.get_sblock("y")
    n, c, oh, ow, rh, rw = sch.get_loops(acc)
    owo, owi = sch.split(ow, [None, lanes])
    sch.reorder(n, c, oh, owo, rh, rw, owi)
    sch.reverse_compute_at(y, owo)
    planes = sch.fuse(n, c)
    if parallel:  # parallel and vectorize come before decompose_reduction
        sch.parallel(planes)
    sch.vectorize(owi)
    vectorize_inner(sch, sch.get_loops(y)[-1])
    xd = sch.get_sblock("xd")
    sch.compute_at(xd, planes)
    at = sch.get_loops(xd)[1]
    if sch.can_decompose_padding(xd, at):
        inner = sch.decompose_padding(xd, at)
        vectorize_inner(sch, sch.get_loops(inner)[-1])
    vectorize_inner(sch, sch.get_loops(xd)[-1])
    init = sch.decompose_reduction(acc, rh)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(rh)
    sch.unroll(rw)


# --- max pooling (the depthwise kernel's loops, max instead of multiply-add) ------------------


@functools.cache
def max_pool_func(shape: tuple[int, int, int, int], dtype: str, kernel: tuple[int, int],
                  stride: tuple[int, int], dilation: tuple[int, int],
                  out_hw: tuple[int, int]) -> tirx.PrimFunc:
    """The scheduled max pool of an integer NCHW input already padded to exactly what
    its windows cover: x -> y[N, C, OH, OW]. The columns split into stride phases (a
    window's pixels in a phase are contiguous, so vectors of output pixels load whole),
    each channel plane repacked just before use, planes in parallel; max is exact in any
    order."""
    n, c, h, w = shape
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    lanes = pixel_tile(ow)
    owp = ceil_div(ow, lanes) * lanes
    wq = owp + (dw * (kw - 1)) // sw
    lowest = tirx.const(int(np.iinfo(dtype).min), dtype)
    x = te.placeholder(shape, dtype, name="x")
    xd = te.compute((n, c, h, sw, wq), lambda b, ch, hi, p, q: tirx.if_then_else(
        q * sw + p < w, x[b, ch, hi, q * sw + p], lowest), name="xd")
    rh = te.reduce_axis((0, kh), "rh")
    rw = te.reduce_axis((0, kw), "rw")
    acc = te.compute((n, c, oh, owp), lambda b, ch, i, j: te.max(
        xd[b, ch, i * sh + rh * dh, (rw * dw) % sw, j + (rw * dw) // sw], axis=[rh, rw]),
        name="acc")
    y = te.compute((n, c, oh, ow), lambda b, ch, i, j: acc[b, ch, i, j], name="y")
    sch = tvm.s_tir.Schedule(te.create_prim_func([x, y]))
    _schedule_depthwise(sch, lanes, parallel=n * c * oh * ow * kh * kw >= PARALLEL_WORK)
    name = (f"qir_maxpool_{dtype}_n{n}_c{c}_h{h}_w{w}_k{kh}x{kw}_s{sh}x{sw}"
            f"_d{dh}x{dw}")
    return kernel_func(sch.mod["main"], name)


def max_pool(bb: relax.BlockBuilder, x: relax.Expr, kernel, stride, dilation,
             out_hw) -> relax.Expr | None:
    """The max pool of padded integer NCHW `x` through the kernel; None where it does
    not apply (not an AVX2 llvm target, not 4-d, a float input)."""
    shape, dtype = shape_of(x), dtype_of(x)
    if (kernel_target() is None or len(shape) != 4 or dtype not in ("int8", "uint8", "int16")
            or min(out_hw) <= 0):
        return None
    func = build_or_none(max_pool_func, tuple(shape), dtype, tuple(kernel), tuple(stride),
                         tuple(dilation), tuple(out_hw))
    if func is None:
        return None
    return call_kernel(bb, func, [x], (*shape[:2], *out_hw), dtype)


# --- entry ------------------------------------------------------------------------------------


def conv2d(bb: relax.BlockBuilder, x: relax.Expr, x_range: tuple[int, int], zp: int,
           w: np.ndarray, bias: np.ndarray | None, stride, padding, dilation,
           groups: int, epilogue: Epilogue | None = None,
           residual: relax.Expr | None = None) -> relax.Expr | None:
    """The int32 accumulator of an NCHW convolution through a kernel, or with `epilogue`
    (and its `residual`) the epilogue's stored output; None when no kernel applies (not
    an AVX2 llvm target, weights outside int8, x - zp outside int16, an epilogue the
    chosen kernel cannot take). `x_range` is the stored range of x; padding is (top,
    left, bottom, right)."""
    if gpu.target_arch() is not None:  # CUDA with int8 tensor cores
        return gpu.conv2d(bb, x, zp, w, bias, stride, padding, dilation, groups,
                                 epilogue, residual)
    x_dtype = dtype_of(x)
    if (kernel_target() is None or not fits_int8(w)
            or not centred_fits_int16(x_dtype, *x_range, zp)):
        return None
    n, c, h, wd = shape_of(x)
    o, _, kh, kw = w.shape
    s = ConvShape(n, c, h, wd, o, kh, kw, tuple(stride), tuple(padding), tuple(dilation),
                  groups, x_dtype)
    oh, ow = s.out_hw
    if min(oh, ow, n) <= 0 or min(padding) < 0:
        return None
    b = np.zeros(o, np.int32) if bias is None else bias.astype(np.int32)
    out_shape, out_dtype = (n, o, oh, ow), "int32"
    extra = []
    dot, vnni_b = choose_dot(w.reshape(o, -1), b, x_dtype, zp)
    if use_direct(s, dot):
        b = vnni_b
        cols = direct_cols()
        func = build_or_none(direct_func, s, epilogue, direct_lanes(s, dot), cols)
        packed = pack_direct_weights(w, groups, dot, cols)
        b = np.pad(b.reshape(groups, o // groups),
                   ((0, 0), (0, packed.shape[1] - o // groups)))
        if epilogue is not None:
            extra, out_dtype = epilogue.relax_args(residual), epilogue.out_dtype
    elif epilogue is not None:
        return None
    elif s.depthwise:
        wt = depthwise_weight_dtype(x_range, zp, w)
        func = build_or_none(depthwise_func, s, wt)
        packed = w.reshape(o, kh, kw).astype(wt)
    else:
        func = build_or_none(grouped_func, s)
        packed = pack_grouped_weights(w, groups)
        b = b.reshape(groups, o // groups)
        out_shape = (n, groups, o // groups, oh, ow)
    if func is None:
        return None
    args = [x, relax.prim_value(zp, "int32"), const(packed, str(packed.dtype)),
            const(b, "int32"), *extra]
    y = call_kernel(bb, func, args, out_shape, out_dtype)
    return y if len(out_shape) == 4 else bb.emit(R.reshape(y, (n, o, oh, ow)))
