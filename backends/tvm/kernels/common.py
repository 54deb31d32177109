"""What the kernels share: the target test, the dot-product intrinsics they tensorize
with, tile-size choice, and the Relax call of a kernel.

The micro-kernel of every kernel is `dot_pairs`: c[i] += a[0] * b[i, 0] + a[1] * b[i, 1]
for i < 8, with a: two int16 activations (broadcast as one 32-bit word), b: sixteen int8
weights (sign-extended to int16 by `vpmovsxbw`) or int16 values, and c: eight int32
accumulators held in registers; one `vpmaddwd` + `vpaddd`. With |a| <= 2^15 and
|b| <= 2^7 each pair sum is below 2^23: exact, unlike `vpmaddubsw`, whose int16 pair sums
saturate; int16 b must keep a pair sum below 2^31 (batch_matmul checks it).

Where the CPU has VNNI (AVX512-VNNI with AVX512-VL, or AVX-VNNI), the dense and direct
conv kernels use `dot_quads` instead: c[i] += sum_k a[k] * b[i, k] over 4 steps, one of a
and b uint8 and the other int8, one `vpdpbusd` on ymm registers (32 multiply-adds, no
intermediate saturation: exact). The activations enter it as uint8, x - storage_min
(x + 128 for int8), and the kernels subtract (zp - storage_min) * sum_k w[n, k] through
the bias instead of centring x: the IR's semantics stay (x - zp) * w.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np
import tvm
from tvm import relax, te, tirx
from tvm.target import codegen

DOT_PAIRS = "qir_dot_pairs"
DOT_QUADS = "qir_dot_quads"
LANES = 8  # int32 lanes of a ymm register
MAX_ROWS = 6  # accumulator rows of a tile: 6 x 2 ymm + 2 weights + 1 broadcast <= 16
MAX_ROWS_ZMM = 16  # zmm dense tiles: 16 x 1 zmm of the 32 (measured 5-10% faster than 12)
OP_PATTERN_OPAQUE = 8  # relax.transform.FuseOps leaves opaque calls alone
PARALLEL_WORK = 1 << 20  # multiply-adds below which a kernel runs on one thread


def kernel_target() -> tvm.target.Target | None:
    """The target being lowered for when the kernels apply to it (llvm with AVX2), else
    None. backends/tvm/compiler.py makes the build's target current while lowering."""
    target = tvm.target.Target.current(allow_none=True)
    if target is None or str(target.kind.name) != "llvm":
        return None
    return target if codegen.target_has_features("avx2", target) else None


def has_zmm(target: tvm.target.Target | None, vnni: bool = False) -> bool:
    """Whether `target` (an AVX2 kernel target) has AVX-512 for 16-lane int32 kernels
    (with `vnni`: also 512-bit vpdpbusd / vpdpwssd)."""
    if target is None or not all(codegen.target_has_features(f, target)
                                 for f in ("avx512f", "avx512bw")):
        return False
    return not vnni or codegen.target_has_features("avx512vnni", target)


def has_vnni(target: tvm.target.Target | None) -> bool:
    """Whether `target` (an AVX2 kernel target) has 256-bit vpdpbusd."""
    if target is None:
        return False
    return (codegen.target_has_features("avxvnni", target)
            or (codegen.target_has_features("avx512vnni", target)
                and codegen.target_has_features("avx512vl", target)))


KERNEL_FEATURES = ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512vnni", "avxvnni")
# The x86 features LLVM may use anywhere in an llvm build (its kernels, and what it
# vectorises on its own), as LLVM names them -> as Linux's /proc/cpuinfo does: what a
# machine must have to run the build (the manifest's cpu.requires).
CPU_FLAGS = {"sse4.2": "sse4_2", "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c",
             "bmi2": "bmi2", "avx512f": "avx512f", "avx512bw": "avx512bw",
             "avx512vl": "avx512vl", "avx512dq": "avx512dq", "avx512cd": "avx512cd",
             "avx512vnni": "avx512_vnni", "avxvnni": "avx_vnni", "avx512bf16": "avx512_bf16",
             "avx512fp16": "avx512_fp16", "avx512vbmi": "avx512vbmi",
             "avx512vbmi2": "avx512_vbmi2", "avx512ifma": "avx512ifma",
             "avx512bitalg": "avx512_bitalg", "avx512vpopcntdq": "avx512_vpopcntdq",
             "amx-tile": "amx_tile", "amx-int8": "amx_int8", "gfni": "gfni", "vaes": "vaes",
             "vpclmulqdq": "vpclmulqdq"}


def kernel_family(target: tvm.target.Target) -> dict | None:
    """Which integer kernels an llvm build for `target` gets, for the manifest: the LLVM
    CPU name, the family ("avx512-vnni": zmm vpdpbusd / vpdpwssd; "avx-vnni": ymm
    vpdpbusd; "avx512": zmm vpmaddwd; "avx2": ymm vpmaddwd; "none": TVM's default
    schedules), the x86 features it was chosen by, and every feature the build may use,
    as /proc/cpuinfo names them (`requires`: a machine without one of them would stop
    with an illegal instruction). None for other targets."""
    if target is None or str(target.kind.name) != "llvm":
        return None
    features = [f for f in KERNEL_FEATURES if codegen.target_has_features(f, target)]
    if "avx2" not in features:
        family = "none"
    elif has_zmm(target, vnni=True):
        family = "avx512-vnni"
    elif has_vnni(target):
        family = "avx-vnni"
    else:
        family = "avx512" if has_zmm(target) else "avx2"
    mcpu = target.attrs.get("mcpu")
    requires = sorted(flag for feature, flag in CPU_FLAGS.items()
                      if codegen.target_has_features(feature, target))
    return {"mcpu": str(mcpu) if mcpu else None, "kernels": family, "features": features,
            "requires": requires}


@dataclass(frozen=True)
class Dot:
    """A kernel's multiply: AVX2 (`vnni` False: channel pairs of int16 x - zp,
    int16 weights, `dot_pairs`) or VNNI (channel quads of uint8 x - storage_min, int8
    weights, `dot_quads`). `lanes`: int32 accumulators per vector, 8 (ymm) or 16 (zmm,
    AVX-512); `dpwssd`: the pairs multiply-accumulate in one VNNI vpdpwssd. `tensorize`
    False leaves the reduction as plain TIR (the intrinsic's description): the VNNI
    layouts can then be checked, bit for bit, on a CPU without VNNI."""

    vnni: bool = False
    tensorize: bool = True
    lanes: int = LANES
    dpwssd: bool = False

    @property
    def group(self) -> int:
        return 4 if self.vnni else 2

    @property
    def weight_dtype(self) -> str:
        return "int8" if self.vnni else "int16"

    def intrinsic(self, b_dtype: str) -> str:
        """The tensor intrinsic for b of `b_dtype` (the operand loaded as a vector)."""
        if self.vnni:
            return dot_quads(b_dtype, self.lanes)
        return dot_pairs(b_dtype, self.lanes, self.dpwssd)


AVX2 = Dot()


def input_offset(x_dtype: str) -> int:
    """What the VNNI kernels subtract from x to make it uint8: its storage minimum."""
    return -128 if x_dtype == "int8" else 0


def choose_dot(w: np.ndarray, bias: np.ndarray, x_dtype: str, zp: int
               ) -> tuple[Dot, np.ndarray]:
    """VNNI for 8-bit x when the target has it and int32 holds every partial sum, with
    the bias corrected for it (vnni_bias); else AVX2 and the bias as it is. w is [N, K]
    (output channels by reduction)."""
    if has_vnni(kernel_target()) and x_dtype in ("int8", "uint8"):
        sums = w.astype(np.int64).sum(axis=1)
        corrected = vnni_bias(bias, sums, zp, input_offset(x_dtype), w.shape[1])
        if corrected is not None:
            return Dot(vnni=True), corrected
    return AVX2, bias


def widest(dot: Dot) -> Dot:
    """`dot` on the widest vectors the target has: 16 lanes (zmm) with AVX-512 (512-bit
    vpdpbusd for VNNI quads), and int16 pairs through vpdpwssd where VNNI has it."""
    target = kernel_target()
    if not dot.tensorize:
        return dot
    lanes = 16 if has_zmm(target, vnni=dot.vnni) else 8
    dpwssd = not dot.vnni and (has_zmm(target, vnni=True) if lanes == 16
                               else has_vnni(target))
    return replace(dot, lanes=lanes, dpwssd=dpwssd)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def conv_out_hw(h: int, w: int, kh: int, kw: int, stride, padding, dilation
                ) -> tuple[int, int]:
    """A 2-D convolution's output height and width; padding is (top, left, bottom,
    right)."""
    pt, pl, pb, pr = padding
    return ((h + pt + pb - dilation[0] * (kh - 1) - 1) // stride[0] + 1,
            (w + pl + pr - dilation[1] * (kw - 1) - 1) // stride[1] + 1)


def row_tile(rows: int, most: int = MAX_ROWS) -> int:
    """Accumulator rows per tile: all of them up to `most`, else the tile size that
    pads least (the larger on ties)."""
    if rows <= most:
        return rows
    return min(range(most, 3, -1), key=lambda r: (ceil_div(rows, r) * r, -r))


def zero_point_var() -> tirx.Var:
    """The input zero point: a scalar parameter of a kernel (passed as a PrimValue), so
    that layers differing only in it share one compiled kernel."""
    return tirx.Var("zp", "int32")


def centred(x: te.Tensor, zp: tirx.Var, index, inside: list) -> tirx.PrimExpr:
    """int16(x[index] - zp), or 0 where the conditions `inside` do not all hold."""
    v = (x[index].astype("int32") - zp).astype("int16")
    return tirx.if_then_else(tirx.all(*inside), v, tirx.const(0, "int16")) if inside else v


def fits_int8(w: np.ndarray) -> bool:
    return w.size > 0 and int(w.min()) >= -128 and int(w.max()) <= 127


def centred_fits_int16(dtype: str, lo: int, hi: int, zp: int) -> bool:
    """Whether x - zp fits int16 for every stored x in [lo, hi]."""
    return dtype in ("int8", "uint8", "int16") and -(2**15) <= lo - zp and hi - zp < 2**15


def _dot_desc(group: int, a_dtype: str, b_dtype: str, lanes: int):
    """The description every dot intrinsic shares: c[i] += sum_k a[k] * b[i, k] for
    i < lanes, k < group, in int32."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(a: T.Buffer((group,), a_dtype, offset_factor=1),
             b: T.Buffer((lanes, group), b_dtype, offset_factor=1),
             c: T.Buffer((lanes,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:group], b[0:lanes, 0:group])
            T.writes(c[0:lanes])
            for i, k in T.grid(lanes, group):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    c[vi] = c[vi] + T.cast(a[vk], "int32") * T.cast(b[vi, vk], "int32")

    return desc


@functools.cache
def dot_pairs(b_dtype: str = "int8", lanes: int = 8, dpwssd: bool = False) -> str:
    """Register the pair dot intrinsic, c[i] += a[0] * b[i, 0] + a[1] * b[i, 1] for
    i < lanes (8: ymm, 16: zmm), for int8 (sign-extended) or int16 b (once, on first
    use: TVMScript parsing is slow, see /work/shared/tvm-0.27-notes.md) and return its
    name: vpmaddwd + vpaddd, or with `dpwssd` one VNNI vpdpwssd (the same exact int32
    sums: each pair sum is below 2^23 for int8 b)."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    halves = f"int16x{2 * lanes}"
    if dpwssd:
        name = f"llvm.x86.avx512.vpdpwssd.{512 if lanes == 16 else 256}"
    else:
        name = "llvm.x86.avx512.pmaddw.d.512" if lanes == 16 else "llvm.x86.avx2.pmadd.wd"

    # one expression per branch (a static branch: TVMScript folds it): names bound here
    # would become buffers allocated per call
    @T.prim_func(s_tir=True)
    def impl(a: T.Buffer((2,), "int16", offset_factor=1),
             b: T.Buffer((lanes, 2), b_dtype, offset_factor=1),
             c: T.Buffer((lanes,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:2], b[0:lanes, 0:2])
            T.writes(c[0:lanes])
            if dpwssd:
                c[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(name), c.vload([0], f"int32x{lanes}"),
                    T.reinterpret(T.broadcast(T.reinterpret(a.vload([0], "int16x2"),
                                                            dtype="int32"), lanes),
                                  dtype=halves),
                    T.Cast(halves, b.vload([0, 0], f"{b_dtype}x{2 * lanes}")),
                    dtype=f"int32x{lanes}")
            else:
                c[T.ramp(T.int32(0), 1, lanes)] = c.vload(
                    [0], f"int32x{lanes}") + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(name),
                    T.reinterpret(T.broadcast(T.reinterpret(a.vload([0], "int16x2"),
                                                            dtype="int32"), lanes),
                                  dtype=halves),
                    T.Cast(halves, b.vload([0, 0], f"{b_dtype}x{2 * lanes}")),
                    dtype=f"int32x{lanes}")

    intrin = f"{DOT_PAIRS}_{b_dtype}_{lanes}{'_dpwssd' if dpwssd else ''}"
    TensorIntrin.register(intrin, _dot_desc(2, "int16", b_dtype, lanes), impl, override=True)
    return intrin


@functools.cache
def dot_quads(vector_dtype: str, lanes: int = 8) -> str:
    """Register the quad dot intrinsic (vpdpbusd on ymm, or zmm with 16 lanes) and
    return its name. `vector_dtype` is b's: "int8" (b the weights, a four uint8
    activations broadcast: dense) or "uint8" (b the lanes' pixels' activations, a four
    int8 weights broadcast: the direct conv kernel)."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    a_dtype = "uint8" if vector_dtype == "int8" else "int8"
    broadcast_unsigned = a_dtype == "uint8"  # a static branch below: TVMScript folds it
    name = f"llvm.x86.avx512.vpdpbusd.{512 if lanes == 16 else 256}"
    quads = f"int8x{4 * lanes}"

    # vpdpbusd multiplies the unsigned bytes of its second operand by the signed bytes of
    # its third; LLVM 22 types both as byte vectors
    @T.prim_func(s_tir=True)
    def impl(a: T.Buffer((4,), a_dtype, offset_factor=1),
             b: T.Buffer((lanes, 4), vector_dtype, offset_factor=1),
             c: T.Buffer((lanes,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:4], b[0:lanes, 0:4])
            T.writes(c[0:lanes])
            if broadcast_unsigned:
                c[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(name), c.vload([0], f"int32x{lanes}"),
                    T.reinterpret(T.broadcast(T.reinterpret(a.vload([0], f"{a_dtype}x4"),
                                                            dtype="int32"), lanes),
                                  dtype=quads),
                    T.reinterpret(b.vload([0, 0], f"{vector_dtype}x{4 * lanes}"),
                                  dtype=quads),
                    dtype=f"int32x{lanes}")
            else:
                c[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(name), c.vload([0], f"int32x{lanes}"),
                    T.reinterpret(b.vload([0, 0], f"{vector_dtype}x{4 * lanes}"),
                                  dtype=quads),
                    T.reinterpret(T.broadcast(T.reinterpret(a.vload([0], f"{a_dtype}x4"),
                                                            dtype="int32"), lanes),
                                  dtype=quads),
                    dtype=f"int32x{lanes}")

    intrin = f"{DOT_QUADS}_{vector_dtype}_{lanes}"
    TensorIntrin.register(intrin, _dot_desc(4, a_dtype, vector_dtype, lanes), impl,
                          override=True)
    return intrin


def unsigned_input(x: te.Tensor, offset: int, index, inside: list,
                   outside: tirx.PrimExpr) -> tirx.PrimExpr:
    """uint8(x[index] - offset) (x's storage minimum: in [0, 255]), or `outside` (a
    uint8) where the conditions `inside` do not all hold."""
    v = (x[index].astype("int32") - offset).astype("uint8")
    return tirx.if_then_else(tirx.all(*inside), v, outside) if inside else v


def vnni_bias(bias: np.ndarray, w_sums: np.ndarray, zp: int, offset: int, k: int
              ) -> np.ndarray | None:
    """The bias of a VNNI kernel: bias - (zp - offset) * sum_k w, so that
    sum (x - offset) w + it = sum (x - zp) w + bias; None when it, or a partial sum of k
    uint8 x int8 products, could leave int32."""
    b = bias.astype(np.int64) - (zp - offset) * w_sums.astype(np.int64)
    if k * 255 * 128 >= 2**31 or (b.size and np.max(np.abs(b)) >= 2**31):
        return None
    return b.astype(np.int32)


def build_or_none(builder, *args) -> tirx.PrimFunc | None:
    """builder(*args), or None when TVM fails to build or schedule the kernel for these
    arguments: the lowering then falls back to the plain Relax ops (the tests check that
    the kernels are used where expected)."""
    try:
        return builder(*args)
    except Exception:  # noqa: BLE001  (a TVM error for an unforeseen shape)
        return None


def schedule_repack(sch: tvm.s_tir.Schedule, block: str, outer: int, parallel: bool,
                    pairs: bool = False) -> None:
    """Schedule a repacking block (the input centred, with zero borders): its first
    `outer` loops fused into one, parallel; below them the zero borders are filled apart
    from the in-bound copy (decompose_padding), so that neither tests bounds per element;
    innermost loops vectorised. With outer == 0 each of the two parts runs its first loop
    in parallel. `pairs`: the innermost loop interleaves two source rows (channel pairs);
    it is unrolled around the vectorised loop before it instead."""
    rv = sch.get_sblock(block)
    loops = sch.get_loops(rv)
    if outer:
        fused = sch.fuse(*loops[:outer]) if outer > 1 else loops[0]
        if parallel:
            sch.parallel(fused)
    blocks = [rv]
    at = sch.get_loops(rv)[min(outer, 1)]
    if sch.can_decompose_padding(rv, at):
        blocks.append(sch.decompose_padding(rv, at))
    for b in blocks:
        if parallel and not outer:
            sch.parallel(sch.get_loops(b)[0])
        loops = sch.get_loops(b)
        if pairs:
            sch.reorder(loops[-1], loops[-2])
            sch.unroll(loops[-1])
        vectorize_inner(sch, loops[-2] if pairs else loops[-1])


def vectorize_inner(sch: tvm.s_tir.Schedule, loop, lanes: int = 16) -> None:
    """Vectorise `loop` in chunks of at most `lanes` that divide it (a partial chunk's
    bounds test would make TVM scalarise the whole loop); left alone when only tiny
    chunks divide it."""
    extent = int(sch.get(loop).extent)
    chunk = max(d for d in range(1, min(extent, lanes) + 1) if extent % d == 0)
    if chunk < 4:
        return
    if chunk < extent:
        loop = sch.split(loop, [None, chunk])[1]
    sch.vectorize(loop)


def kernel_func(func: tirx.PrimFunc, name: str) -> tirx.PrimFunc:
    """A scheduled PrimFunc ready for a Relax module: its own symbol, kept out of
    fusion."""
    return func.with_attrs({"global_symbol": name, "op_pattern": OP_PATTERN_OPAQUE,
                            "tirx.is_scheduled": True})


def call_kernel(bb: relax.BlockBuilder, func: tirx.PrimFunc, args: list[relax.Expr],
                out_shape: tuple[int, ...], out_dtype: str = "int32") -> relax.Expr:
    """Emit `func(*args) -> out` through call_tir (identical kernels are added once)."""
    gv = bb.add_func(func, str(func.attrs["global_symbol"]))
    return bb.emit(relax.call_tir(gv, args, relax.TensorType(out_shape, out_dtype)))
