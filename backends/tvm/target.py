"""Compilation targets: this machine's CPU through LLVM, and NVIDIA GPUs through CUDA.

    llvm_target()              # {"kind": "llvm", "mcpu": <host cpu>, "num-cores": <cpus>,
                               #  "opt-level": 2}
    cuda_target("sm_90")       # {"kind": "cuda", "arch": "sm_90"}
    resolve_target("llvm" | "cpu" | "cuda" | "cuda:sm_80" | dict | tvm.target.Target)

TVM 0.27 rejects the old string form ("llvm -mcpu=..."): targets are JSON dicts.
"""

from __future__ import annotations

import os

import tvm
from tvm.target import codegen

from qir import QirError

DEFAULT_CUDA_ARCH = "sm_90"
# LLVM -O2, not TVM's default -O3: on the unscheduled kernels of this backend -O3 spent
# 2-5x longer compiling the fused integer epilogues of the int8 transformers (bert_style:
# 26 s -> 14 s of CPU) and ran no faster (measured: equal or faster at -O2).
LLVM_OPT_LEVEL = 2


def host_cpu() -> str | None:
    """LLVM's name for this machine's CPU (e.g. "znver3", "cascadelake"), or None when
    LLVM does not know it."""
    cpu = str(codegen.llvm_get_system_cpu())
    if not cpu or cpu == "generic":
        return None
    return cpu


def llvm_target(mcpu: str | None = None, num_cores: int | None = None,
                opt_level: int = LLVM_OPT_LEVEL) -> tvm.target.Target:
    """The host CPU target: LLVM code for `mcpu` (default: this machine's CPU, so its
    vector extensions are used; the code may not run on older CPUs)."""
    spec: dict = {"kind": "llvm", "num-cores": num_cores or os.cpu_count() or 1,
                  "opt-level": opt_level}
    mcpu = mcpu or host_cpu()
    if mcpu:
        spec["mcpu"] = mcpu
    return tvm.target.Target(spec)


def cuda_target(arch: str = DEFAULT_CUDA_ARCH) -> tvm.target.Target:
    """An NVIDIA GPU target for compute capability `arch` ("sm_80", "sm_90", ...)."""
    if not arch.startswith("sm_"):
        raise QirError(f"CUDA arch must look like 'sm_90', got {arch!r}")
    # 48 KiB of static shared memory per block holds on every arch since sm_20 (TVM warns
    # and assumes it when the key is missing).
    return tvm.target.Target({"kind": "cuda", "arch": arch, "max_threads_per_block": 1024,
                              "max_shared_memory_per_block": 49152})


def resolve_target(target) -> tvm.target.Target:
    """A tvm Target from "llvm"/"cpu", "cuda", "cuda:<arch>", a JSON dict, or a Target."""
    if isinstance(target, tvm.target.Target):
        return target
    if isinstance(target, dict):
        return tvm.target.Target(target)
    if isinstance(target, str):
        if target in ("llvm", "cpu"):
            return llvm_target()
        if target == "cuda":
            return cuda_target()
        if target.startswith("cuda:"):
            return cuda_target(target.split(":", 1)[1])
    raise QirError(f"unknown target {target!r}: use 'llvm', 'cuda', 'cuda:<arch>' (e.g. "
                   "'cuda:sm_80'), a target dict or a tvm.target.Target")


def target_kind(target: tvm.target.Target) -> str:
    return str(target.kind.name)
