"""CUDA specifics: GPU schedules, device code compiled with nvcc, and artifacts that carry
it even when built on a machine without a GPU.

- Schedules: dlight's default GPU rules, tried per kernel in order (Matmul, GEMV,
  Reduction, GeneralReduction, Fallback); a rule that raises is skipped for that kernel.
  The Matmul rule's int8 tensor-core path schedules but then fails in CUDA codegen in
  TVM 0.27, so kernels that touch int8 get the Matmul rule with tensor cores off (its
  SIMT schedule). A kernel with a float sum (softmax, norms, pooling, means) takes
  only the rules that keep every sum one thread's loop in index order (Matmul's SIMT
  tiles, Fallback): the GEMV and reduction rules split sums across threads, which
  reorders the additions and changes float32 bits, where the numpy interpreter and the
  llvm build add in index order (docs/backends.md, the bit-exactness contract).
- Device code: nvcc without --use_fast_math (TVM's default compile uses it), so that
  float division, sqrt and denormals are IEEE, as quantize's bit-exactness needs; and
  -fmad=false, so that float islands round like the CPU build.
- Without a CUDA driver TVM leaves the CUDA module as *source* (and `export_library`
  would write a library a GPU machine cannot run). `build` then compiles the source
  itself, and `export_library` packs the imported modules with the source replaced by the
  cubin, in the CUDA runtime's own serialization (format, function table, binary), so the
  library loads and runs on a machine with a GPU.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from contextlib import contextmanager

import tvm
import tvm_ffi
from tvm import tirx
from tvm.ir.transform import module_pass

from backends.tvm.registry import TvmBuildError

NVCC_FLAGS = ["-O3", "-fmad=false", "-prec-div=true", "-prec-sqrt=true", "-ftz=false",
              "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
              "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
              "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
              "--expt-relaxed-constexpr"]


# --- schedules ---------------------------------------------------------------------------------


def _rules(ordered_sums: bool = False):
    """dlight's GPU rules in the order they are tried; with `ordered_sums`, only those
    that keep each reduction sequential in index order."""
    from tvm.s_tir import dlight as dl

    if ordered_sums:
        return [dl.gpu.Matmul(), dl.gpu.Fallback()]
    return [dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(),
            dl.gpu.Fallback()]


def has_float_sum(func: tirx.PrimFunc) -> bool:
    """Whether a kernel reduces into a float buffer (its result then depends on the
    order of the additions)."""
    from tvm import s_tir

    found = []

    def visit(block) -> None:
        store = block.body
        if (block.init is not None and isinstance(store, tirx.BufferStore)
                and store.buffer.dtype.startswith(("float", "bfloat"))):
            found.append(block.name_hint)

    tvm_ffi.structural_walk(func.body, [(s_tir.SBlock, visit)], order="post")
    return bool(found)


def _without_tensor_cores(target: tvm.target.Target) -> tvm.target.Target:
    """The same target as seen by dlight's Matmul rule with tensor cores off (it only
    tensorizes from sm_70 on); the schedule it makes is plain TIR for any arch."""
    spec = dict(target.export())
    spec["arch"] = "sm_61"
    return tvm.target.Target(spec)


def _touches_int8(func: tirx.PrimFunc) -> bool:
    """Whether a kernel reads or writes 8-bit integer buffers (as the matmul rule's
    int8 tensor-core path would see them)."""
    return "int8" in func.script()  # "int8" and "uint8" buffers and casts


def schedule_kernel(func: tirx.PrimFunc, name: str, target: tvm.target.Target,
                    used: list[str] | None = None):
    """The first dlight GPU schedule that applies to `func` (rules that raise are
    skipped); appends the rule used to `used` ("Matmul/simt" for the retry)."""
    failures = []
    int8 = _touches_int8(func)
    for rule in _rules(ordered_sums=has_float_sum(func)):
        rule_name = type(rule).__name__
        targets = [(target, rule_name)]
        if rule_name == "Matmul" and int8:
            # The int8 tensor-core path schedules, then fails in CUDA codegen
            # (fragment_info_): never take it.
            targets = [(_without_tensor_cores(target), "Matmul/simt")]
        for tgt, label in targets:
            try:
                space = rule.apply(func, tgt, False)
            except Exception as e:  # noqa: BLE001  (a rule that cannot handle this kernel)
                lines = str(e).strip().splitlines()
                failures.append(f"{label}: {lines[-1][:200] if lines else type(e).__name__}")
                continue
            if space is None:
                break
            if used is not None:
                used.append(label)
            return space[0] if isinstance(space, list) else space
    raise TvmBuildError(f"no GPU schedule applies to kernel {name}: "
                        + "; ".join(failures or ["no rule matched"]))


def binds_threads(func: tirx.PrimFunc) -> bool:
    """Whether a kernel already launches its own threads (TVM's GPU implementations
    written with the IR builder, such as scatter_elements): it needs no schedule."""
    found = []

    def visit(node) -> None:
        if node.attr_key == "thread_extent":
            found.append(node)

    tvm_ffi.structural_walk(func.body, [(tirx.AttrStmt, visit)], order="post")
    return bool(found)


@module_pass(opt_level=0, name="QirGpuSchedule")
class ScheduleForGpu:
    """Give every unscheduled PrimFunc the first dlight GPU schedule that applies (those
    that bind their own threads are left as they are)."""

    def __init__(self, target: tvm.target.Target, used: list[str] | None = None):
        self.target = target
        self.used = used

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        updated = {}
        for gvar, func in mod.functions_items():
            if not isinstance(func, tirx.PrimFunc) or func.attrs is not None and int(
                    func.attrs.get("tirx.is_scheduled", 0)) == 1 or binds_threads(func):
                continue
            sch = schedule_kernel(func, gvar.name_hint, self.target, self.used)
            updated[gvar] = sch.mod["main"].with_attr("tirx.is_scheduled", True)
        for gvar, func in updated.items():
            mod[gvar] = func
        return mod


# --- device code -------------------------------------------------------------------------------


def nvcc_compile(source: str, arch: str, fmt: str = "cubin") -> bytes:
    """Compile CUDA C source to `fmt` ("cubin", "fatbin" or "ptx") for `arch` with IEEE
    float semantics (no fast math)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise TvmBuildError("nvcc is not on PATH: building for cuda needs the CUDA toolkit")
    with tempfile.TemporaryDirectory(prefix="qir_cuda_") as tmp:
        src, out = os.path.join(tmp, "kernels.cu"), os.path.join(tmp, f"kernels.{fmt}")
        with open(src, "w") as f:
            f.write(source)
        cmd = [nvcc, f"--{fmt}", f"-arch={arch}", *NVCC_FLAGS, "-o", out, src]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise TvmBuildError(f"nvcc failed ({' '.join(cmd)}):\n{proc.stdout}{proc.stderr}")
        with open(out, "rb") as f:
            return f.read()


@contextmanager
def exact_cuda_compiler(arch: str, prelude: str = ""):
    """While active, TVM's CUDA compile callback (used when a CUDA driver is present) is
    `nvcc_compile` of `prelude` (device functions TVM's kernels call) and TVM's source;
    the previous callback is restored afterwards."""
    name = "tvm_callback_cuda_compile"
    old = tvm_ffi.get_global_func(name, allow_missing=True)
    tvm_ffi.register_global_func(name, lambda code, *_: nvcc_compile(prelude + code, arch),
                                 override=True)
    try:
        yield
    finally:
        if old is not None:
            tvm_ffi.register_global_func(name, old, override=True)


def cuda_modules(mod: tvm.runtime.Module) -> list[tvm.runtime.Module]:
    return mod._collect_from_import_tree(lambda m: m.kind == "cuda")


def source_only(mod: tvm.runtime.Module) -> bool:
    """Whether the CUDA module is TVM's source placeholder (no driver at build time)."""
    return not mod.is_runnable()


# --- library blobs -------------------------------------------------------------------------------
# tvm-ffi's packed imports: <nbytes u64> <indptr vec<u64>> <children vec<u64>> then per module
# <kind str> [<bytes str>] ("_lib" has none); str/vec are a u64 length then the items.
# A CUDA module's bytes: <fmt str> <function table> <binary str>.


def _u64(buf: bytes, pos: int) -> tuple[int, int]:
    return struct.unpack_from("<Q", buf, pos)[0], pos + 8


def _str(buf: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = _u64(buf, pos)
    return buf[pos:pos + n], pos + n


def _pack_str(b: bytes) -> bytes:
    return struct.pack("<Q", len(b)) + b


def parse_blob(blob: bytes) -> tuple[bytes, list[tuple[str, bytes | None]]]:
    """(import tree bytes, [(kind, payload)]) of a packed-imports blob."""
    nbytes, pos = _u64(blob, 0)
    end = 8 + nbytes
    start = pos
    n_ptr, pos = _u64(blob, pos)
    pos += 8 * n_ptr
    n_child, pos = _u64(blob, pos)
    pos += 8 * n_child
    tree = blob[start:pos]
    modules = []
    for _ in range(n_ptr - 1):
        kind, pos = _str(blob, pos)
        payload = None
        if kind != b"_lib":
            payload, pos = _str(blob, pos)
        modules.append((kind.decode(), payload))
    if pos != end:
        raise TvmBuildError("unexpected layout of TVM's packed imports")
    return tree, modules


def pack_blob(tree: bytes, modules: list[tuple[str, bytes | None]]) -> bytes:
    body = tree + b"".join(_pack_str(k.encode()) + (b"" if p is None else _pack_str(p))
                           for k, p in modules)
    return struct.pack("<Q", len(body)) + body


def parse_cuda_payload(payload: bytes) -> tuple[str, bytes]:
    """(format, everything after it) of a serialized CUDA module."""
    fmt, pos = _str(payload, 0)
    return fmt.decode(), payload[pos:]


def with_device_code(payload: bytes, source: bytes, code: bytes, fmt: str) -> bytes | None:
    """The serialized CUDA module `payload` with its binary `source` replaced by `code` in
    format `fmt`; None when the payload does not end with that source."""
    tail = _pack_str(source)
    if not payload.endswith(tail):
        return None
    _, rest = parse_cuda_payload(payload)
    fmap = rest[:len(rest) - len(tail)]
    return _pack_str(fmt.encode()) + fmap + _pack_str(code)


def packer(device_code: list[tuple[str, bytes]], fmt: str):
    """An `fpack_imports` for export_library: TVM's C packing of the imported modules,
    with each source-only CUDA module's source replaced by its compiled code
    (`device_code`: (source, binary) pairs)."""

    def replace(payload: bytes) -> bytes:
        for source, code in device_code:
            patched = with_device_code(payload, source.encode(), code, fmt)
            if patched is not None:
                return patched
        raise TvmBuildError("a CUDA module of the artifact has no compiled device code")

    def pack(mod, is_system_lib, prefix, workspace_dir):
        from tvm.runtime import _ffi_api

        text = _ffi_api.ModulePackImportsToC(mod, is_system_lib, prefix)
        head, body = text.split("= {", 1)
        body, tail = body.rsplit("};", 1)
        blob = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-fA-F]{2})", body))
        tree, modules = parse_blob(blob)
        modules = [(k, replace(p) if k == "cuda" else p) for k, p in modules]
        blob = pack_blob(tree, modules)
        head = re.sub(r"\[\d+\]\s*$", f"[{len(blob)}] ", head.rstrip())
        path = os.path.join(workspace_dir, f"{prefix}devc.c")
        with open(path, "w") as f:
            f.write(head + " = {\n")
            for i in range(0, len(blob), 4096):
                f.write(",".join(str(b) for b in blob[i:i + 4096]) + ",\n")
            f.write("};" + tail)
        return path

    return pack


def read_library_blob(path: str) -> bytes:
    """The packed-imports blob of an exported library (for inspecting artifacts), read
    through the dynamic loader without running TVM's module loaders."""
    import ctypes

    lib = ctypes.CDLL(os.path.abspath(path), mode=os.RTLD_LAZY | os.RTLD_LOCAL)
    addr = ctypes.addressof(ctypes.c_char.in_dll(lib, "__tvm_ffi__library_bin"))
    nbytes = struct.unpack("<Q", ctypes.string_at(addr, 8))[0]
    return ctypes.string_at(addr, 8 + nbytes)
