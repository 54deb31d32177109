"""Float products that every target rounds on their own, as the numpy interpreter does.

TVM's targets contract a multiply feeding an add into one fused multiply-add, which
rounds once where numpy rounds twice: LowerIntrin rewrites `a * b + c` into
`llvm.fmuladd`; the LLVM TargetOptions TVM sets fuse plain fmul/fadd pairs as well, even
across TIR blocks once LLVM has promoted a small intermediate buffer to registers; no
target option turns this off. qir therefore computes float products through
`rounded_product`: on llvm the product goes through `llvm.arithmetic.fence`, which LLVM
never fuses or reassociates across; on CUDA it is a plain product, which nvcc, run with
`-fmad=false`, never contracts (the host side of a CUDA build, FoldConstant included,
is llvm code and cannot call CUDA's `__fmul_rn`). `legalize_map()` gives Relax's
LegalizeOps a `relax.multiply` built that way; the formulas of backends/tvm/floatmath.py
use `rounded_product` directly.

Float conv, linear and matmul keep TVM's own kernels (their multiply-accumulate may
fuse): their summation order differs from numpy's BLAS anyway (docs/semantics.md).
"""

from __future__ import annotations

import tvm
from tvm import te, topi
from tvm import tirx as tir

def target_kind() -> str:
    target = tvm.target.Target.current(allow_none=True)
    return str(target.kind.name) if target is not None else "llvm"


def rounded_product(a: tir.PrimExpr, b: tir.PrimExpr) -> tir.PrimExpr:
    """a * b, rounded to its dtype before any use (integers: a plain product)."""
    p = a * b
    dtype = str(p.ty)
    if not dtype.startswith(("float", "bfloat")):
        return p
    if target_kind() == "cuda":  # nvcc runs with -fmad=false (backends/tvm/cuda.py)
        return p
    return tir.call_llvm_pure_intrin(dtype, "llvm.arithmetic.fence", p)


def _multiply(a, b) -> te.Tensor:
    """Broadcasting multiply of two tensors (or a tensor and a Python scalar) whose
    float products are rounded on their own."""
    tensors = [t for t in (a, b) if isinstance(t, te.Tensor)]
    dtype = str(tensors[0].dtype)
    if not dtype.startswith(("float", "bfloat")):
        return topi.multiply(a, b)
    rank = max(len(t.shape) for t in tensors)
    shape = []
    for d in range(rank):
        sizes = [int(t.shape[d - rank + len(t.shape)]) for t in tensors
                 if d - rank + len(t.shape) >= 0]
        shape.append(max(sizes))

    def value(t, index):
        if not isinstance(t, te.Tensor):
            return tir.const(t, dtype)
        lead = rank - len(t.shape)
        return t(*[0 if int(t.shape[d]) == 1 else index[lead + d]
                   for d in range(len(t.shape))])

    return te.compute(shape, lambda *i: rounded_product(value(a, i), value(b, i)),
                      name="T_multiply")


_FLOAT_BITS = {"float16": ("int16", 0x7C00), "bfloat16": ("int16", 0x7F80),
               "float32": ("int32", 0x7F800000), "float64": ("int64", 0x7FF0000000000000)}


def isnan(x: tir.PrimExpr) -> tir.PrimExpr:
    """Whether x is a NaN, from its bits: |bits| above the infinity's. TIR's own isnan
    stops TVM's loop vectorizer (the whole loop turns scalar), and `x != x` is folded
    to false by TVM's simplifier."""
    dtype = str(x.ty)
    if dtype not in _FLOAT_BITS:
        return tir.isnan(x)
    int_dtype, inf = _FLOAT_BITS[dtype]
    bits = tir.reinterpret(int_dtype, x) & tir.const((1 << (int(int_dtype[3:]) - 1)) - 1,
                                                      int_dtype)
    return bits > tir.const(inf, int_dtype)


def round_even(x: tir.PrimExpr) -> tir.PrimExpr:
    """x rounded to the nearest integer, ties to even. TIR's nearbyint does this too, but
    TVM's loop vectorizer does not vectorise it (the loop turns scalar); on llvm
    `llvm.roundeven` is the same rounding and vectorises (vroundps)."""
    dtype = str(x.ty)
    if target_kind() == "cuda" or not dtype.startswith("float"):
        return tir.nearbyint(x)
    return tir.call_llvm_pure_intrin(dtype, "llvm.roundeven", x)


def _round(x: te.Tensor) -> te.Tensor:
    if not str(x.dtype).startswith("float"):
        return x
    return te.compute(x.shape, lambda *i: round_even(x(*i)), name="T_round")


def _isnan(x: te.Tensor) -> te.Tensor:
    return te.compute(x.shape, lambda *i: isnan(x(*i)), name="T_isnan")


def legalize_map() -> dict:
    """LegalizeOps overrides: relax.multiply with rounded products; relax.isnan and
    relax.round in forms that vectorise."""
    return {"relax.multiply": lambda bb, call: bb.call_te(_multiply, *call.args,
                                                           primfunc_name_hint="multiply"),
            "relax.isnan": lambda bb, call: bb.call_te(_isnan, call.args[0],
                                                        primfunc_name_hint="isnan"),
            "relax.round": lambda bb, call: bb.call_te(_round, call.args[0],
                                                        primfunc_name_hint="round")}
