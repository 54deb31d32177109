"""A float32 convolution kernel for constant weights (the float scheme's conv1d/conv2d,
groups = 1): a GEMM over output channels x output pixels, NCHW in and out.

For each tile of `lanes` output pixels (of one image) the kernel first gathers the
tile's input column, col[k, l] = x[c, oy * sy + ky * dy - pad_top, ox * sx + kx * dx -
pad_left] for k = (c, ky, kx), zero outside the image (im2col, one tile at a time, so it
stays in cache: K x lanes floats); then tiles of `rows` output channels accumulate in
`rows` vector registers over k, each step one vector load of the column and `rows`
broadcasts of a weight (w[o, k], the weights as [O, K]). Output pixels are contiguous in
NCHW, so the tile is stored as it is. Pixel tiles (over the batch) run in parallel.

Float convolutions are not bit-specified (docs/semantics.md): LLVM may fuse the
multiply-adds.
"""

from __future__ import annotations

import functools

import numpy as np
import tvm
from tvm import relax, te, tirx

from backends.tvm.common import R, const, dtype_of, shape_of
from backends.tvm.kernels.common import (
    MAX_ROWS,
    MAX_ROWS_ZMM,
    PARALLEL_WORK,
    build_or_none,
    call_kernel,
    ceil_div,
    conv_out_hw,
    has_zmm,
    kernel_func,
    kernel_target,
)


@functools.cache
def float_conv_func(n: int, c: int, h: int, w: int, o: int, kh: int, kw: int,
                    stride: tuple, padding: tuple, dilation: tuple, lanes: int
                    ) -> tirx.PrimFunc:
    """(x[n, c, h, w], weights[o, c * kh * kw]) -> y[n, o, oh * ow]; padding (top, left,
    bottom, right)."""
    oh, ow = conv_out_hw(h, w, kh, kw, stride, padding, dilation)
    pixels, k = oh * ow, c * kh * kw
    pt = ceil_div(pixels, lanes)
    most = MAX_ROWS_ZMM if lanes == 16 else MAX_ROWS
    rows = next(r for r in range(min(o, most), 0, -1) if o % r == 0)
    x = te.placeholder((n, c, h, w), "float32", name="x")
    wt = te.placeholder((o, k), "float32", name="w")

    def column(b, t, kk, lane):
        p = t * lanes + lane
        ci, ky, kx = kk // (kh * kw), (kk // kw) % kh, kk % kw
        iy = (p // ow) * stride[0] + ky * dilation[0] - padding[0]
        ix = (p % ow) * stride[1] + kx * dilation[1] - padding[1]
        inside = tirx.all(p < pixels, iy >= 0, iy < h, ix >= 0, ix < w)
        return tirx.if_then_else(inside, x[b, ci, iy, ix], tirx.const(0.0, "float32"))

    col = te.compute((n, pt, k, lanes), column, name="col")
    r = te.reduce_axis((0, k), "k")
    acc = te.compute((n, o, pt, lanes), lambda b, oc, t, lane: te.sum(
        wt[oc, r] * col[b, t, r, lane], axis=r), name="acc")
    y = te.compute((n, o, pixels), lambda b, oc, p: acc[b, oc, p // lanes, p % lanes],
                   name="y")
    sch = tvm.s_tir.Schedule(te.create_prim_func([x, wt, y]))
    block, out, gather = sch.get_sblock("acc"), sch.get_sblock("y"), sch.get_sblock("col")
    b, oc, t, lane, kr = sch.get_loops(block)
    oo, oi = sch.split(oc, [None, rows])
    sch.reorder(b, t, oo, kr, oi, lane)
    sch.reverse_compute_at(out, oo)
    tiles = sch.fuse(b, t)
    sch.compute_at(gather, tiles)
    if n * o * pixels * k >= PARALLEL_WORK:
        sch.parallel(tiles)
    sch.vectorize(sch.get_loops(gather)[-1])
    sch.vectorize(sch.get_loops(out)[-1])
    sch.vectorize(lane)  # (before decompose_reduction, as parallel)
    init = sch.decompose_reduction(block, kr)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(oi)
    name = (f"qir_fconv_n{n}_c{c}_{h}x{w}_o{o}_k{kh}x{kw}_s{stride[0]}x{stride[1]}"
            f"_p{'x'.join(map(str, padding))}_d{dilation[0]}x{dilation[1]}")
    return kernel_func(sch.mod["main"], name)


def float_conv(bb: relax.BlockBuilder, x: relax.Expr, w: np.ndarray, stride, padding,
               dilation, groups: int) -> relax.Expr | None:
    """conv1d/conv2d of x (NCW/NCHW float32) with constant weights w (OIW/OIHW) through
    the kernel; padding all begins then all ends. None when it does not apply (not an
    AVX2 llvm target, not float32, groups != 1)."""
    target = kernel_target()
    shape = shape_of(x)
    if target is None or dtype_of(x) != "float32" or groups != 1 or w.ndim != len(shape):
        return None
    if len(shape) == 3:  # conv1d as a conv2d of height 1
        n, c, wd = shape
        h, kh, kw = 1, 1, w.shape[2]
        stride2, dilation2 = (1, stride[0]), (1, dilation[0])
        padding2 = (0, padding[0], 0, padding[1])
    else:
        n, c, h, wd = shape
        kh, kw = w.shape[2:]
        stride2, dilation2 = tuple(stride), tuple(dilation)
        padding2 = (padding[0], padding[1], padding[2], padding[3])
    o = w.shape[0]
    oh, ow = conv_out_hw(h, wd, kh, kw, stride2, padding2, dilation2)
    if min(n, c, o, oh, ow) <= 0 or w.shape[1] != c:
        return None
    func = build_or_none(float_conv_func, n, c, h, wd, o, kh, kw, stride2, padding2,
                         dilation2, 16 if has_zmm(target) else 8)
    if func is None:
        return None
    x4 = bb.emit(R.reshape(x, (n, c, h, wd))) if len(shape) == 3 else x
    y = call_kernel(bb, func, [x4, const(np.ascontiguousarray(
        w.reshape(o, -1), dtype=np.float32), "float32")], (n, o, oh * ow), "float32")
    return bb.emit(R.reshape(y, (n, o, oh, ow) if len(shape) == 4 else (n, o, ow)))
