"""Integer conv and dense kernels for CUDA (sm_80 and newer), in gpu_kernels.cuh.

- `conv2d` (groups == 1) and `dense` with constant int8 weights and 8-bit activations:
  an implicit GEMM on the int8 tensor cores, its A operand gathered from the activation
  (im2col on the fly for a conv), multiplied by mma.sync m16n8k32 with exact int32
  accumulation (qir::igemm);
- grouped and depthwise convs: a direct kernel, one thread per output (qir::direct_conv).

Both store through a per-element epilogue: the accumulator plus bias, or with a fused
chain (backends/tvm/epilogue_fusion.py) the requantize and the residual qadd, in the
arithmetic of docs/semantics.md, so the int32 accumulator and the intermediate 8-bit
tensor never reach memory.

Each kernel is a traits struct generated here (sizes, tile shape, per-channel tables as
device arrays) plus the template's instance; TVM sees a TIR PrimFunc that launches the
grid and calls the kernel's entry function (`call_extern`), and carries the CUDA text in
its "qir_cuda_source" attribute, which the build prepends to TVM's CUDA source before
nvcc (backends/tvm/compiler.py, cuda.py). Shapes, dtypes or targets no kernel takes return
None: the op then lowers as before (dlight's schedules).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm
from tvm import ir, relax, tirx

from backends.tvm.common import R, const, dtype_of, shape_of
from backends.tvm.kernels.common import OP_PATTERN_OPAQUE, ceil_div, conv_out_hw, fits_int8
from backends.tvm.kernels.epilogue import Epilogue

SOURCE_ATTR = "qir_cuda_source"
HEADER = Path(__file__).with_name("gpu_kernels.cuh")
MIN_ARCH = 80  # mma.sync m16n8k32 with int8 operands
BK = 64  # bytes of K per shared-memory step
SMS = 132  # multiprocessors of the GPUs the tile choice aims at (H100/H200)
C_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t"}
INT32 = 2**31


@dataclass(frozen=True)
class Tile:
    """A block's BM x BN tile of C, each warp's WM x WN (128 or 256 threads)."""

    bm: int
    bn: int
    wm: int
    wn: int

    @property
    def threads(self) -> int:
        return 32 * (self.bm // self.wm) * (self.bn // self.wn)


TILES = (Tile(128, 128, 64, 32), Tile(128, 64, 64, 32), Tile(64, 64, 32, 32),
         Tile(32, 64, 16, 32), Tile(16, 64, 16, 16))  # by preference: A reused most first


def choose_tile(m: int, n: int) -> Tile:
    """The first tile of TILES (the biggest: each gathered value of A feeds the most
    multiplies) that still gives every multiprocessor 256 threads' worth of blocks and
    does not pad N by more than it computes, else the tile giving the most blocks
    (small problems: parallelism over tile efficiency)."""
    def blocks(t: Tile) -> int:
        return ceil_div(m, t.bm) * ceil_div(n, t.bn)

    for t in TILES:
        if (t.bn <= 64 or n >= t.bn) and blocks(t) * t.threads >= 2 * SMS * 128:
            return t
    return max(TILES, key=lambda t: (blocks(t), t.bn))


def target_arch() -> int | None:
    """The compute capability (e.g. 90) when the target being lowered for is CUDA with
    int8 mma (sm_80 or newer), else None."""
    target = tvm.target.Target.current(allow_none=True)
    if target is None or str(target.kind.name) != "cuda":
        return None
    arch = str(target.attrs.get("arch", ""))
    digits = arch.removeprefix("sm_").rstrip("a")
    if not digits.isdigit() or int(digits) < MIN_ARCH:
        return None
    return int(digits)


@functools.cache
def header() -> str:
    return HEADER.read_text()


# --- the generated C ---------------------------------------------------------------------------


def _table(name: str, values, ctype: str = "int") -> str:
    body = ",".join(str(int(v)) for v in values)
    return f"static __device__ const {ctype} {name}[{len(values)}] = {{{body}}};\n"


def _per_channel(name: str, values: tuple[int, ...], tables: list[str]) -> str:
    """A C expression for a per-channel constant at channel n: a literal when every
    channel shares it, else a device table."""
    if len(set(values)) == 1:
        return f"{int(values[0])}LL"
    tables.append(_table(name, values))
    return f"(long long){name}[n]"


def epilogue_code(name: str, bias: np.ndarray, epilogue: Epilogue | None, out_dtype: str,
                  tables: list[str]) -> str:
    """The body of P::store: `acc` (int) and channel `n` in, the stored value out."""
    tables.append(_table(f"{name}_bias", bias))
    lines = [f"const long long a = (long long)acc + {name}_bias[n];"]
    if epilogue is None:
        lines.append(f"(({C_TYPES[out_dtype]}*)out)[idx] = ({C_TYPES[out_dtype]})a;")
        return "\n    ".join(lines)
    r = epilogue.rescale
    mul = _per_channel(f"{name}_mul", r.multiplier, tables)
    shifts = tuple(31 - e for e in r.shift)
    shift = _per_channel(f"{name}_shift", shifts, tables)
    lines.append(f"long long q = qir::clamp64(qir::round_shift(a - {r.zp_in}LL, {mul}, "
                 f"(int){shift}) + {r.zp_out}LL, {r.lo}LL, {r.hi}LL);")
    if epilogue.add is not None:
        add = epilogue.add
        rt = C_TYPES[epilogue.residual_dtype]
        lines.append(f"const long long res = ((const {rt}*)residual)[idx];")
        lhs, rhs = ("res", "q") if epilogue.residual_lhs else ("q", "res")
        lines.append(f"q = qir::clamp64(qir::add_round({lhs}, {add.zp_a}LL, {add.m_a}LL, "
                     f"{add.n_a}, {rhs}, {add.zp_b}LL, {add.m_b}LL, {add.n_b}) + "
                     f"{add.zp_out}LL, {add.lo}LL, {add.hi}LL);")
    lines.append(f"(({C_TYPES[out_dtype]}*)out)[idx] = ({C_TYPES[out_dtype]})q;")
    return "\n    ".join(lines)


def kernel_source(name: str, constants: str, store: str, tables: list[str], call: str,
                  has_residual: bool) -> str:
    """The traits struct `<name>_P` (`constants`, then P::store with the body `store`)
    and the entry function `name(x, w, [residual,] out)` running `call<name_P>`."""
    residual = "const void* residual, " if has_residual else ""
    return (
        "".join(tables)
        + f"struct {name}_P {{\n{constants}"
        f"  QIR_DEV static void store(void* out, const void* residual, long long idx, int n, "
        f"int acc) {{\n    {store}\n  }}\n}};\n"
        f'extern "C" __device__ int {name}(const void* x, const void* w, {residual}void* out) {{\n'
        f"  {call}<{name}_P>((const uint8_t*)x, (const uint8_t*)w, "
        f"{'residual' if has_residual else 'nullptr'}, out);\n"
        "  return 0;\n}\n")


# --- the TVM side ------------------------------------------------------------------------------


def launch_shell(name: str, buffers: list[tirx.Buffer], grid: tuple[int, int], threads: int,
                 source: str) -> tirx.PrimFunc:
    """A PrimFunc over `buffers` (the output last) that launches `grid` blocks of
    `threads` threads, each calling the device function `name` with the buffers' data
    pointers; `source` (the function's CUDA text) rides along as an attribute."""
    call = tirx.Evaluate(tirx.call_extern("int32", name, *[b.data for b in buffers]))
    body = call
    for tag, extent in (("threadIdx.x", threads), ("blockIdx.y", grid[1]),
                        ("blockIdx.x", grid[0])):
        iv = tirx.IterVar(ir.Range(0, extent), tirx.Var(tag, "int32"),
                          tirx.IterVar.ThreadIndex, tag)
        body = tirx.AttrStmt(iv, "thread_extent", tirx.IntImm("int32", extent), body)
    func = tirx.PrimFunc(buffers, body)
    return func.with_attrs({"global_symbol": name, "tirx.noalias": True,
                            "op_pattern": OP_PATTERN_OPAQUE, "tirx.is_scheduled": True,
                            SOURCE_ATTR: source})


def _call(bb: relax.BlockBuilder, func: tirx.PrimFunc, args: list[relax.Expr],
          out_shape: tuple[int, ...], out_dtype: str) -> relax.Expr:
    gv = bb.add_func(func, str(func.attrs["global_symbol"]))
    return bb.emit(relax.call_tir(gv, args, relax.TensorType(out_shape, out_dtype)))


@dataclass(frozen=True)
class Gemm:
    """What both kernels share: the packed weights, the corrected bias, sizes."""

    w: np.ndarray  # [NP, KP] int8
    bias: np.ndarray  # [N] int32, zero point folded in
    m: int
    n: int
    k: int
    tile: Tile
    xor: int  # 0x80 for uint8 x (x - 128), else 0
    padv: int  # what padding reads: zp - off

    @property
    def kp(self) -> int:
        return self.w.shape[1]

    @property
    def grid(self) -> tuple[int, int]:
        return ceil_div(self.m, self.tile.bm), self.w.shape[0] // self.tile.bn


def prepare(w2: np.ndarray, bias: np.ndarray | None, x_dtype: str, zp: int, m: int,
            tile: Tile | None = None) -> Gemm | None:
    """Pack w2 [N, K] and fold zp into the bias; None when the kernel does not apply
    (weights outside int8, x not 8-bit, an int32 range the kernel cannot keep). `tile`
    overrides choose_tile (tests)."""
    if x_dtype not in ("int8", "uint8") or m <= 0 or not fits_int8(w2):
        return None
    n, k = w2.shape
    if k >= INT32 // 2**14:  # a partial sum of k products of int8 could leave int32
        return None
    off = 128 if x_dtype == "uint8" else 0
    b = np.zeros(n, np.int64) if bias is None else bias.astype(np.int64)
    b = b - (zp - off) * w2.astype(np.int64).sum(axis=1)
    if b.size and np.max(np.abs(b)) >= INT32:
        return None
    tile = tile or choose_tile(m, n)
    packed = np.zeros((ceil_div(n, tile.bn) * tile.bn, ceil_div(k, BK) * BK), np.int8)
    packed[:n, :k] = w2
    return Gemm(packed, b.astype(np.int32), m, n, k, tile, 0x80 if off else 0, zp - off)


def _name(kind: str, *parts) -> str:
    digest = hashlib.sha1(repr(parts).encode()).hexdigest()[:12]
    return f"qir_tc_{kind}_{digest}"


@dataclass(frozen=True)
class Kernel:
    """One generated kernel: its entry function `name(x, w, [residual,] out)` in
    `source`, launched as `grid` blocks of `threads`, with the packed weights `w`."""

    name: str
    source: str
    grid: tuple[int, int]
    threads: int
    w: np.ndarray
    x_shape: tuple[int, ...]
    x_dtype: str
    out_shape: tuple[int, ...]
    out_dtype: str
    residual_dtype: str | None


def _kernel(kind: str, key: tuple, bias: np.ndarray, epilogue: Epilogue | None,
            constants: str, call: str, grid: tuple[int, int], threads: int, w: np.ndarray,
            x_shape, x_dtype: str, out_shape) -> Kernel:
    """A generated kernel: its name (from `key`, what makes it unique), the traits struct
    (`constants`, then the epilogue of `bias` and `epilogue`) and the entry function
    running the template `call`."""
    out_dtype = epilogue.out_dtype if epilogue is not None else "int32"
    name = _name(kind, key, w.tobytes(), bias.tobytes(), epilogue, out_dtype)
    tables: list[str] = []
    store = epilogue_code(name, bias, epilogue, out_dtype, tables)
    residual = epilogue.residual_dtype if epilogue is not None and epilogue.add else None
    source = kernel_source(name, constants, store, tables, call, residual is not None)
    return Kernel(name, source, grid, threads, w, tuple(x_shape), x_dtype, tuple(out_shape),
                  out_dtype, residual)


def _gemm_kernel(kind: str, g: Gemm, rows: str, x_shape, x_dtype: str, out_shape,
                 epilogue: Epilogue | None) -> Kernel:
    t = g.tile
    constants = (f"  static constexpr int M = {g.m}, N = {g.n}, KP = {g.kp}, BK = {BK};\n"
                 f"  static constexpr int BM = {t.bm}, BN = {t.bn}, WM = {t.wm}, WN = {t.wn}, "
                 f"NT = {t.threads};\n  using Rows = {rows};\n")
    return _kernel(kind, (rows, g.m, g.n, g.kp, t), g.bias, epilogue, constants, "qir::igemm",
                   g.grid, t.threads, g.w, x_shape, x_dtype, out_shape)


def conv2d_kernel(x_shape, x_dtype: str, zp: int, w: np.ndarray, bias: np.ndarray | None,
                  stride, padding, dilation, groups: int, epilogue: Epilogue | None = None,
                  tile: Tile | None = None) -> Kernel | None:
    """The kernel of an NCHW convolution (groups == 1; padding (top, left, bottom,
    right) reading zp), or None when it does not apply."""
    if groups != 1 or min(padding) < 0:
        return None
    n, c, h, wd = x_shape
    o, _, kh, kw = w.shape
    pt, pl = padding[:2]
    oh, ow = conv_out_hw(h, wd, kh, kw, stride, padding, dilation)
    if min(oh, ow) <= 0:
        return None
    # K as (kh, kw, c) when channels come in whole words (ConvRowsTapMajor), else OIHW's
    tap_major = c % 4 == 0
    w2 = (w.transpose(0, 2, 3, 1) if tap_major else w).reshape(o, -1)
    g = prepare(w2, bias, x_dtype, zp, n * oh * ow, tile)
    if g is None:
        return None
    rows = (f"qir::{'ConvRowsTapMajor' if tap_major else 'ConvRows'}<{c}, {h}, {wd}, {kh}, "
            f"{kw}, {stride[0]}, {stride[1]}, {pt}, {pl}, {dilation[0]}, {dilation[1]}, {oh}, "
            f"{ow}, {g.m}, {g.k}, {g.xor}u, {g.padv}>")
    return _gemm_kernel("conv", g, rows, x_shape, x_dtype, (n, o, oh, ow), epilogue)


DIRECT_THREADS = 256
DIRECT_DTYPES = ("int8", "uint8", "int16")


def direct_conv_kernel(x_shape, x_dtype: str, zp: int, w: np.ndarray,
                       bias: np.ndarray | None, stride, padding, dilation, groups: int,
                       epilogue: Epilogue | None = None) -> Kernel | None:
    """The direct kernel of a grouped NCHW convolution (gpu_kernels.cuh, qir::direct_conv: one
    thread per output), or None when it does not apply."""
    if x_dtype not in DIRECT_DTYPES or not fits_int8(w) or min(padding) < 0:
        return None
    n, c, h, wd = x_shape
    o, cg, kh, kw = w.shape
    oh, ow = conv_out_hw(h, wd, kh, kw, stride, padding, dilation)
    if min(oh, ow) <= 0 or c != cg * groups or o % groups:
        return None
    b = np.zeros(o, np.int32) if bias is None else bias.astype(np.int32)
    geometry = dict(N=n, C=c, H=h, W=wd, O=o, G=groups, KH=kh, KW=kw, SH=stride[0],
                    SW=stride[1], PT=padding[0], PL=padding[1], DH=dilation[0],
                    DW=dilation[1], OH=oh, OW=ow, ZP=zp, NT=DIRECT_THREADS)
    constants = ("  static constexpr int " + ", ".join(f"{k} = {v}" for k, v in geometry.items())
                 + f";\n  using XT = {C_TYPES[x_dtype]};\n")
    grid = (ceil_div(n * o * oh * ow, DIRECT_THREADS), 1)
    return _kernel("dwconv" if groups == c == o else "gconv", (geometry, x_dtype), b, epilogue,
                   constants, "qir::direct_conv", grid, DIRECT_THREADS, w.astype(np.int8),
                   x_shape, x_dtype, (n, o, oh, ow))


def dense_kernel(m: int, k: int, x_dtype: str, zp: int, w: np.ndarray,
                 bias: np.ndarray | None, epilogue: Epilogue | None = None,
                 tile: Tile | None = None) -> Kernel | None:
    """The kernel of x[m, k] times w[n, k], or None when it does not apply."""
    if w.shape[1] != k:
        return None
    g = prepare(w, bias, x_dtype, zp, m, tile)
    if g is None:
        return None
    rows = f"qir::DenseRows<{m}, {k}, {g.xor}u>"
    return _gemm_kernel("dense", g, rows, (m, k), x_dtype, (m, w.shape[0]), epilogue)


def _emit(bb: relax.BlockBuilder, kern: Kernel, x: relax.Expr,
          residual: relax.Expr | None) -> relax.Expr:
    buffers = [tirx.decl_buffer(kern.x_shape, kern.x_dtype, name="x"),
               tirx.decl_buffer(kern.w.shape, "int8", name="w")]
    args = [x, const(kern.w, "int8")]
    if kern.residual_dtype is not None:
        buffers.append(tirx.decl_buffer(kern.out_shape, kern.residual_dtype, name="residual"))
        args.append(residual)
    buffers.append(tirx.decl_buffer(kern.out_shape, kern.out_dtype, name="out"))
    func = launch_shell(kern.name, buffers, kern.grid, kern.threads, kern.source)
    return _call(bb, func, args, kern.out_shape, kern.out_dtype)


def conv2d(bb: relax.BlockBuilder, x: relax.Expr, zp: int, w: np.ndarray,
           bias: np.ndarray | None, stride, padding, dilation, groups: int,
           epilogue: Epilogue | None = None, residual: relax.Expr | None = None
           ) -> relax.Expr | None:
    """An NCHW convolution through the tensor-core kernel (groups == 1) or the direct
    kernel (grouped, depthwise): the int32 accumulator, or with `epilogue` its stored
    output; None when no kernel applies."""
    builder = conv2d_kernel if groups == 1 else direct_conv_kernel
    kern = builder(shape_of(x), dtype_of(x), zp, w, bias, stride, padding, dilation, groups,
                   epilogue)
    return None if kern is None else _emit(bb, kern, x, residual)


def dense(bb: relax.BlockBuilder, x: relax.Expr, zp: int, w: np.ndarray,
          bias: np.ndarray | None, epilogue: Epilogue | None = None,
          residual: relax.Expr | None = None) -> relax.Expr | None:
    """sum_k (x[..., k] - zp) * w[n, k] + bias[n] through the tensor-core kernel (or with
    `epilogue` its stored output); None when the kernel does not apply."""
    shape = shape_of(x)
    n, k = w.shape
    m = int(np.prod(shape[:-1]))
    kern = dense_kernel(m, k, dtype_of(x), zp, w, bias, epilogue)
    if kern is None or shape[-1] != k:
        return None
    x2 = bb.emit(R.reshape(x, (m, k))) if len(shape) != 2 else x
    if residual is not None and len(shape) != 2:
        residual = bb.emit(R.reshape(residual, (m, n)))
    y = _emit(bb, kern, x2, residual)
    return bb.emit(R.reshape(y, shape[:-1] + (n,))) if len(shape) != 2 else y


def sources(mod: tvm.IRModule) -> str:
    """The CUDA text the tensor-core kernels of `mod` need ahead of TVM's own source
    (empty when it has none)."""
    texts = []
    for _, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc) and func.attrs is not None \
                and SOURCE_ATTR in func.attrs:
            text = str(func.attrs[SOURCE_ATTR])
            if text not in texts:
                texts.append(text)
    return header() + "\n" + "\n".join(texts) if texts else ""
