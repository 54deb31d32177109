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
"""

from backends.tvm import float_ops, nn_ops, quant_ops, shape_ops  # noqa: F401  (registration)
from backends.tvm.build import build
from backends.tvm.lower import to_relax
from backends.tvm.registry import (LoweringError, TvmBuildError, relax_lowering,
                                   relax_lowerings)
from backends.tvm.runtime import Compiled, Signature, load
from backends.tvm.target import cuda_target, host_cpu, llvm_target, resolve_target
from backends.tvm.tune import Tuning

__all__ = ["Compiled", "LoweringError", "Signature", "TvmBuildError", "build", "cuda_target",
           "host_cpu", "llvm_target", "load", "relax_lowering", "relax_lowerings",
           "resolve_target", "to_relax", "Tuning"]
from backends.tvm import methods  # noqa: F401,E402  (lowerings of docs/methods.md ops)
