"""The TVM backend: qir modules (float or integer) lowered to Relax and compiled for the
host CPU (llvm) or NVIDIA GPUs (cuda).

    from backends.tvm import build, load, to_relax
    compiled = build(module, "llvm")             # or "cuda", "cuda:sm_80"
    outputs = compiled.run({"x": x})             # keyed like backends.numpy.run
    compiled.export_library("model.so"); load("model.so").run({"x": x})
    irmod = to_relax(module)                     # the Relax IRModule alone

Integer ops lower to explicit integer arithmetic and reproduce the numpy interpreter bit
for bit (docs/semantics.md); float ops match it to float rounding. Lowerings register
with `@relax_lowering("dialect.op")`; see docs/backends.md.

Running a compiled library (`load`, `Compiled`) needs only TVM's runtime library: the
compiler half of this package (build, to_relax, targets, tuning) is imported on first
use, so `load` and `run` work where TVM is installed without its compiler (a GPU machine
given the runtime alone, docs/backends.md).
"""

from importlib import import_module

from backends.tvm.registry import LoweringError, TvmBuildError
from backends.tvm.runtime import Compiled, Signature, load

# name -> the module defining it; imported (with every built-in lowering) on first use
_COMPILER = {"build": "compiler", "to_relax": "lower", "relax_lowering": "registry",
             "relax_lowerings": "registry", "cuda_target": "target", "host_cpu": "target",
             "llvm_target": "target", "resolve_target": "target", "Tuning": "tune"}

__all__ = ["Compiled", "LoweringError", "Signature", "TvmBuildError", "load", *_COMPILER]


def __getattr__(name: str):
    if name not in _COMPILER:
        raise AttributeError(f"module 'backends.tvm' has no attribute {name!r}")
    import_module("backends.tvm.lowerings")
    value = getattr(import_module(f"backends.tvm.{_COMPILER[name]}"), name)
    globals()[name] = value
    return value
