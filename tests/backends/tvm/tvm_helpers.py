"""Differential testing of the TVM backend against the numpy interpreter.

Ops are tested a family at a time: `Case`s become one module (each op on its own
arguments, every result an output), compiled once and compared output by output, so a
failure names the op while the suite pays one compile per family.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pytest

import qir
from backends.numpy import run
from backends.tvm import build
from qir.types import TensorType, elem_from_numpy

RTOL = 1e-5  # float outputs: max |got - want| <= RTOL * max |want|

# The CPU kernel families of the llvm build (backends/tvm/kernels), by the CPU targeted:
# AVX2's vpmaddwd kernels, or VNNI's vpdpbusd kernels for 8-bit inputs (AVX512-VNNI with
# AVX512-VL, or AVX-VNNI). Either family lowers on any machine; running one needs its
# instructions, and every x86-64 machine the project meets has AVX2, only some VNNI.
FAMILIES = {"avx2": {"kind": "llvm", "mcpu": "haswell", "num-cores": 2},
            "vnni": {"kind": "llvm", "mcpu": "cascadelake", "num-cores": 2}}


def family_target(family: str):
    import tvm

    return tvm.target.Target(FAMILIES[family])


def runs_here(family: str) -> bool:
    """Whether this CPU executes the family's code."""
    from backends.tvm import llvm_target
    from backends.tvm.kernels.common import has_vnni

    return family == "avx2" or has_vnni(llvm_target())


def cpu_flags() -> set[str]:
    """This CPU's feature flags as Linux names them (/proc/cpuinfo: "avx_vnni",
    "avx512_vnni", ...); empty elsewhere. LLVM's host CPU name can imply fewer features
    than the CPU has (a virtual machine's CPU model), so a test that runs code for a
    named target asks the CPU itself (as the artifact check does)."""
    from qir.cli.artifact import cpu_flags as proc_cpuinfo_flags

    return proc_cpuinfo_flags() or set()


needs_vnni = pytest.mark.skipif(not runs_here("vnni"), reason="this CPU has no VNNI "
                                "(AVX512-VNNI with AVX512-VL, or AVX-VNNI) to run the VNNI "
                                "kernels; they are lowered and checked without it elsewhere")


@dataclass
class Case:
    """One op applied to its own arguments: arrays (typed from their dtype) or
    (array, TensorType) pairs for quantized or otherwise typed arguments."""

    name: str
    args: tuple
    attrs: dict = field(default_factory=dict)
    result_types: list[TensorType] | None = None
    label: str = ""


def case(name: str, *args, attrs: dict | None = None, result_types=None, label: str = ""):
    return Case(name, args, attrs or {}, result_types, label)


def cases_module(cases: list[Case]) -> tuple[qir.Module, dict[str, np.ndarray], list[str]]:
    """One function running every case; returns (module, inputs, one label per output)."""
    arrays, types = [], []
    for c in cases:
        for a in c.args:
            if isinstance(a, tuple):
                arrays.append(np.asarray(a[0]))
                types.append(a[1])
            else:
                a = np.asarray(a)
                arrays.append(a)
                types.append(TensorType(a.shape, elem_from_numpy(a.dtype)))
    fn = qir.Function("main", [(f"a{i}", t) for i, t in enumerate(types)])
    module = qir.Module()
    module.add_function(fn)
    outputs, labels, k = [], [], 0
    for i, c in enumerate(cases):
        args = fn.args[k:k + len(c.args)]
        k += len(c.args)
        op = qir.Builder(fn).create(c.name, args, c.attrs, c.result_types)
        outputs.extend(op.results)
        labels.extend(f"case {i} {c.name} {c.label}".strip() for _ in op.results)
    fn.set_outputs(outputs)
    qir.verify(module)
    return module, {a.name: arr for a, arr in zip(fn.args, arrays)}, labels


def check_cases(cases: list[Case], *, rtol: float = RTOL, target: str = "llvm") -> None:
    module, inputs, labels = cases_module(cases)
    compare(module, inputs, labels=labels, rtol=rtol, target=target)


def compare(module: qir.Module, inputs: dict[str, np.ndarray], *, labels=None,
            rtol: float = RTOL, target: str = "llvm", compiled=None) -> dict:
    """Run `module` with numpy and TVM: integer and bool outputs must be identical, float
    outputs within `rtol` of the largest reference magnitude (NaN where numpy has NaN).
    Returns the TVM outputs."""
    want = run(module, inputs)
    compiled = compiled or build(module, target)
    got = compiled.run(inputs)
    assert list(got) == list(want)
    problems = []
    for i, (key, w) in enumerate(want.items()):
        g = got[key]
        label = labels[i] if labels else key
        if g.shape != w.shape or g.dtype != w.dtype:
            problems.append(f"{label}: got {g.dtype}{list(g.shape)}, want {w.dtype}"
                            f"{list(w.shape)}")
            continue
        err = mismatch(g, w, rtol)
        if err:
            problems.append(f"{label}: {err}")
    assert not problems, "\n".join(problems)
    return got


def is_float_dtype(dtype: np.dtype) -> bool:
    return dtype.kind == "f" or dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2")


def mismatch(got: np.ndarray, want: np.ndarray, rtol: float) -> str | None:
    """Why `got` differs from `want` (None when it matches)."""
    if not is_float_dtype(want.dtype) or want.dtype.name.startswith("float8"):
        g, w = got, want
        if want.dtype.name.startswith("float8"):  # bit-exact, compared as bits
            g, w = got.view(np.uint8), want.view(np.uint8)
        if np.array_equal(g, w):
            return None
        bad = np.argwhere(g != w)
        idx = tuple(bad[0])
        return (f"{len(bad)} of {w.size} values differ (first at {list(idx)}: got "
                f"{got[idx]}, want {want[idx]})")
    g, w = got.astype(np.float64), want.astype(np.float64)
    nan_w, nan_g = np.isnan(w), np.isnan(g)
    if not np.array_equal(nan_w, nan_g):
        return f"NaN at different places ({nan_g.sum()} vs {nan_w.sum()} NaNs)"
    finite = ~nan_w
    if not finite.any():
        return None
    inf_w = np.isinf(w)
    if not np.array_equal(g[inf_w], w[inf_w]):
        return "infinities differ"
    ok = finite & ~inf_w
    scale = np.abs(w[ok]).max() if ok.any() else 0.0
    err = np.abs(g[ok] - w[ok]).max() if ok.any() else 0.0
    if err <= rtol * max(scale, np.finfo(np.float32).tiny):
        return None
    return f"max abs diff {err:.3g} > {rtol} * max abs ref {scale:.3g}"


def rand(*shape: int, seed: int = 0, dtype=np.float32, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def randint(lo: int, hi: int, *shape: int, seed: int = 0, dtype=np.int8) -> np.ndarray:
    """Uniform integers in [lo, hi] (inclusive)."""
    return np.random.default_rng(seed).integers(lo, hi, shape, endpoint=True).astype(dtype)


# --- zoo models ------------------------------------------------------------------------------

SEEDS = (101, 202)


@functools.cache
def zoo_modules(name: str) -> tuple[qir.Module, qir.Module]:
    """(float module, int8 module) of a zoo model, imported and quantized as
    tests/passes/test_int8_zoo.py does (built once per test session)."""
    import frontends
    from passes import PassContext, PassManager
    from tests.zoo import ZOO, calibration_batches

    entry = ZOO[name]
    model = entry.build()
    float_module = frontends.from_torch(model, entry.example_inputs(0))
    module = frontends.from_torch(model, entry.example_inputs(0))
    calib = [zoo_inputs(module, b) for b in calibration_batches(name, 16)]
    PassManager("int8", ctx=PassContext(calibration_data=calib, progress=False)).run(module)
    return float_module, module


def zoo_inputs(module: qir.Module, tensors) -> dict[str, np.ndarray]:
    return {a.name: t.numpy() for a, t in zip(module.main.args, tensors)}


def zoo_feeds(name: str, module: qir.Module) -> list[dict[str, np.ndarray]]:
    from tests.zoo import ZOO

    return [zoo_inputs(module, ZOO[name].example_inputs(seed)) for seed in SEEDS]


def with_probes(module: qir.Module) -> tuple[qir.Module, int]:
    """A copy of `module` that also returns every integer (incl. quantized) value its ops
    compute, so that a differential test sees the whole integer path, not only the float
    outputs after the last dequantize. Returns (copy, number of original outputs)."""
    copy = qir.parse(qir.print_module(module))
    copy.params = dict(module.params)
    fn = copy.main
    n = len(fn.outputs)
    probes = [v for op in fn.ops if op.name not in ("qir.param", "qir.constant")
              for v in op.results
              if v.type.is_int or (v.type.is_quantized and not v.type.quant.is_fp8)]
    fn.set_outputs(list(fn.outputs) + [v for v in probes if v not in fn.outputs])
    qir.verify(copy)
    return copy, n
