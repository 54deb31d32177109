"""Compile a qir module with TVM for the host CPU (llvm) or an NVIDIA GPU (cuda).

- llvm: legalize every op to TIR (float products rounded on their own:
  backends/tvm/exact.py), then Relax's "zero" pipeline (annotate, fold constants, fuse
  elementwise chains into their producers), then qir's CPU schedules for every fused
  kernel (backends/tvm/cpu.py; the integer kernels come scheduled), then `tvm.compile`.
  With `tune`, meta-schedule searches first, kernel by kernel, and a schedule it finds
  replaces qir's where it is faster (backends/tvm/tune.py).
  TVM's default llvm build neither fuses nor schedules: every intermediate would sit in
  memory, every loop scalar and single-threaded.
- cuda: the same legalize + fuse, then dlight's GPU schedules per kernel
  (backends/tvm/cuda.py), then `tvm.compile` with qir's exact nvcc settings. On a machine
  without a CUDA driver the device code is compiled here with nvcc and packed into
  exported libraries (see cuda.py), so `build(module, "cuda")` works without a GPU.

Between fusing and scheduling, the build notes which qir ops each kernel computes
(backends/tvm/trace.py) and puts that in the signature, for `qir bench --profile`.
"""

from __future__ import annotations

import tvm
from tvm import relax

from backends.tvm import cpu, exact
from backends.tvm.common import const
from backends.tvm.kernels import gpu
from backends.tvm.lower import to_relax
from backends.tvm.registry import TvmBuildError, error_summary
from backends.tvm.runtime import SIGNATURE_FUNCTION, Compiled, Signature
from backends.tvm.target import resolve_target, target_kind
from backends.tvm.trace import describe_kernels, kernel_groups
from backends.tvm.tune import Tuning, tune_and_apply
from qir import QirError
from qir.ir import Module

CUDA_FORMATS = ("cubin", "fatbin", "ptx")


def build(module: Module, target="llvm", *, function: str = "main",
          cuda_format: str = "cubin", tune: Tuning | None = None,
          cuda_graph: bool = False) -> Compiled:
    """Lower `function` of `module` to Relax and compile it for `target` ("llvm",
    "cuda", "cuda:sm_80", a target dict or a tvm Target). `cuda_format` is the device
    binary shipped for cuda: "cubin" (this arch only), "fatbin" or "ptx" (JIT-compiled by
    the driver, so it also runs on newer GPUs). `tune` (llvm only) tunes the kernels
    with meta-schedule first (backends/tvm/tune.py); its `outcomes` say what it did.
    `cuda_graph` (cuda only): the VM captures the model's kernels as CUDA graphs on the
    first run and replays them (TVM's RewriteCUDAGraph), saving a launch per kernel."""
    tgt = resolve_target(target)
    kind = target_kind(tgt)
    if kind not in ("llvm", "cuda"):
        raise QirError(f"the TVM backend builds for llvm or cuda, not {kind}")
    if tune is not None and kind != "llvm":
        raise QirError("tuning times kernels on this machine's CPU, so it is for llvm "
                       f"builds only, not {kind}: build without tuning")
    if cuda_graph and kind != "cuda":
        raise QirError(f"CUDA graphs are for cuda builds, not {kind}")
    if cuda_format not in CUDA_FORMATS:
        raise QirError(f"cuda_format must be one of {', '.join(CUDA_FORMATS)}")
    with tgt:  # lowerings pick target-specific arithmetic (backends/tvm/exact.py)
        mod = to_relax(module, function=function)
    fn = module.function(function)
    try:
        mod, kernels = fuse(mod, tgt)
        signature = Signature.of(fn, kind, describe_kernels(kernels, fn))
        if kind == "llvm":
            mod, _ = schedule_llvm(mod, tgt, tune)
            return Compiled(tvm.compile(_with_signature(mod, signature), tgt).mod, signature)
        return _build_cuda(mod, tgt, signature, cuda_format, cuda_graph)
    except QirError:
        raise
    except Exception as e:  # noqa: BLE001  (a TVM failure: report it as ours, readably)
        raise TvmBuildError(f"TVM failed to compile @{function} for {kind}: "
                            f"{type(e).__name__}: {error_summary(e)}") from e


def fuse(mod: tvm.IRModule, tgt: tvm.target.Target) -> tuple[tvm.IRModule, dict[str, list[int]]]:
    """Relax to TIR, as Relax's "zero" pipeline does it: legalize (exact float products:
    backends/tvm/exact.py), annotate, fold constants and fuse elementwise chains into
    their producers. Also returns, for each kernel, the lowering groups it computes
    (backends/tvm/trace.py), read between FuseOps and FuseTIR."""
    with tgt:
        mod = tvm.transform.Sequential([
            relax.transform.LegalizeOps(exact.legalize_map()),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant()])(mod)
        fused = relax.transform.FuseOps()(mod)
        kernels = kernel_groups(mod["main"], fused)
        return relax.transform.FuseTIR()(fused), kernels


def schedule_llvm(mod: tvm.IRModule, tgt: tvm.target.Target, tune: Tuning | None = None
                  ) -> tuple[tvm.IRModule, cpu.ScheduleForCpu]:
    """The llvm build's steps after `fuse`: put in the tuned schedules (with `tune`), and
    schedule every other kernel (backends/tvm/cpu.py); also returns the scheduling pass,
    whose `unscheduled` names the kernels left without a schedule."""
    schedule = cpu.ScheduleForCpu()
    if tune is not None:
        mod = tune_and_apply(mod, tgt, tune)
    with tgt:
        mod = schedule(mod)
    return mod, schedule


def _with_signature(mod: tvm.IRModule, signature: Signature) -> tvm.IRModule:
    """Add the function "qir_signature" returning the signature as JSON bytes."""
    bb = relax.BlockBuilder(mod)
    with bb.function(SIGNATURE_FUNCTION, []):
        bb.emit_func_output(const(signature.as_constant(), "uint8"))
    return bb.get()


def _build_cuda(mod: tvm.IRModule, tgt: tvm.target.Target, signature: Signature,
                fmt: str, cuda_graph: bool = False) -> Compiled:
    from backends.tvm import cuda

    arch = str(tgt.attrs["arch"])
    with tgt:
        mod = _with_signature(cuda.ScheduleForGpu(tgt)(mod), signature)
    prelude = gpu.sources(mod)  # hand-written kernels the TIR calls into
    config = {"relax.backend.use_cuda_graph": True} if cuda_graph else {}
    with cuda.exact_cuda_compiler(arch, prelude), tvm.transform.PassContext(config=config):
        rt = tvm.compile(mod, tgt).mod
    device_code = []
    for m in cuda.cuda_modules(rt):
        if cuda.source_only(m):
            source = m.inspect_source("cuda")
            device_code.append((source, cuda.nvcc_compile(prelude + source, arch, fmt)))
    return Compiled(rt, signature, device_code=device_code, device_format=fmt)
