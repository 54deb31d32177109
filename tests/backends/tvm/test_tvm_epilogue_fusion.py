"""Epilogue fusion (backends/tvm/epilogue_fusion.py): conv/linear -> requantize [-> qadd]
chains lowered to one kernel call, bit for bit against the numpy interpreter, and the
chains that must not fuse (or that no kernel takes) lowered op by op, still exact."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
from test_tvm_kernels import activation, conv, linear, ops_module
from tvm_helpers import (compare, family_target, needs_vnni, runs_here, zoo_feeds,
                         zoo_modules)

import qir
from backends.numpy import run
from backends.tvm import build, llvm_target, to_relax
from backends.tvm.epilogue_fusion import plan
from qir.types import QuantType, TensorType

OUT = {"i8": (-128, 127), "u8": (0, 255)}


def rq_attrs(o: int, seed: int, axis, zp_out: int, storage: str, relu: bool,
             shifts=(-9, -6)) -> dict:
    rng = np.random.default_rng(seed)
    n = 1 if axis is None else o
    lo, hi = OUT[storage]
    return {"multiplier": [int(v) for v in rng.integers(1 << 30, 1 << 31, n)],
            "shift": [int(v) for v in rng.integers(*shifts, n, endpoint=True)],
            "axis": axis, "input_zp": 0, "output_zp": zp_out,
            "clamp_min": zp_out if relu else lo, "clamp_max": hi}


def chain_module(specs: list[dict]) -> tuple[qir.Module, dict[str, np.ndarray]]:
    """@main with one chain per spec: the integer op of test_tvm_kernels.ops_module, then
    a requantize (spec["rq"]: rq_attrs), then, with spec["add"] in ("lhs", "rhs"), a qadd
    whose other operand is an input r<i> of the output's type."""
    module, inputs = ops_module(specs)
    fn = module.main
    b = qir.Builder(fn)
    outputs = []
    for i, (s, acc) in enumerate(zip(specs, list(fn.outputs))):
        rq = b.create("qir.requantize", [acc], s["rq"], [s["rq_ty"]]).result
        if s.get("add"):
            r = fn.add_arg(f"r{i}", s["r_ty"])
            inputs[f"r{i}"] = s["r"]
            operands = [rq, r] if s["add"] == "rhs" else [r, rq]
            rq = b.create("qir.qadd", operands, s["qadd"], [s["add_ty"]]).result
        outputs.append(rq)
    fn.set_outputs(outputs)
    qir.verify(module)
    return module, inputs


def chain(spec: dict, *, axis="channels", storage="i8", zp_out=-128, relu=False, add=None,
          seed=0, shifts=(-9, -6)) -> dict:
    """A conv or linear spec (test_tvm_kernels) extended with its requantize (per output
    channel by default, None: per tensor), and qadd when `add`."""
    s = dict(spec, attrs=spec.get("attrs", {}))
    o = s["w"].shape[0]
    acc_shape = qir_shape(s)
    if axis == "channels":
        axis = len(acc_shape) - 1 if s["op"] == "qir.qlinear" else 1
    s["rq"] = rq_attrs(o, seed, axis, zp_out, storage, relu, shifts)
    s["rq_ty"] = TensorType(acc_shape, QuantType(storage, "f32", (0.05,), (zp_out,)))
    if add:
        zp_r, zp_y = 3, -20
        s["add"] = add
        s["r"], s["r_ty"] = activation(acc_shape, "i8", zp_r, seed + 7)
        s["add_ty"] = TensorType(acc_shape, QuantType("i8", "f32", (0.1,), (zp_y,)))
        s["qadd"] = {"lhs_multiplier": 1132618148, "lhs_shift": 0,
                     "rhs_multiplier": 1216232963, "rhs_shift": 1, "output_zp": zp_y,
                     "clamp_min": zp_y if relu else -128, "clamp_max": 127}
    return s


def qir_shape(s: dict) -> tuple[int, ...]:
    """The conv's output shape, by the IR's shape inference."""
    fn = qir.Function("shape", [("x", s["x_ty"])])
    m = qir.Module()
    m.add_function(fn)
    m.params["w"] = s["w"]
    b = qir.Builder(fn)
    w = b.create("qir.param", [], {"name": "w"}, [s["w_ty"]]).result
    return tuple(b.create(s["op"], [fn.args[0], w], s["attrs"]).result.type.shape)


def relax_kernels(module: qir.Module, target: tvm.target.Target | None = None) -> list[str]:
    target = target or llvm_target()
    with target:
        mod = to_relax(module)
    return sorted(str(gv.name_hint) for gv in mod.functions)


def fused(names: list[str]) -> list[str]:
    """The kernels that carry an epilogue (its tag: _rq<digest> or _rqadd<digest>),
    whatever their family."""
    return [n for n in names if re.search(r"_rq(add)?[0-9a-f]{8}$", n)]


def check_fused(module: qir.Module, inputs: dict, family: str, chains: int) -> None:
    """Lowered for `family`, each chain is one fused kernel and nothing else is left
    (the integer op, the requantize and the add all inside it); where this CPU runs the
    family, the build is bit-exact against the interpreter."""
    target = family_target(family)
    names = relax_kernels(module, target)
    assert len(fused(names)) == chains, names
    assert [n for n in names if not n.startswith("qir_")] == ["main"], names  # nothing else
    if runs_here(family):
        compare(module, inputs, target=target)


CONV_CHAINS = [
    dict(conv=((1, 16, 12, 16), 16, 3, "i8", -128), kw=dict(seed=1)),          # per-channel
    dict(conv=((1, 8, 9, 11), 10, 3, "u8", 7), kw=dict(seed=2), chain=dict(axis=None,
                                                                         relu=True)),
    dict(conv=((1, 5, 7, 9), 6, 3, "i8", 2), kw=dict(seed=3),                   # u8 out
         chain=dict(storage="u8", zp_out=9)),
    dict(conv=((2, 12, 6, 8), 9, 1, "i8", 0), kw=dict(seed=4, pad=[0] * 4),     # 1x1, odd O
         chain=dict(add="rhs", relu=True, seed=5)),
    dict(conv=((1, 8, 10, 12), 8, 3, "i8", -3), kw=dict(seed=6, groups=2),      # grouped
         chain=dict(add="lhs", seed=7)),
    dict(conv=((1, 6, 11, 10), 7, 3, "u8", 120), kw=dict(seed=8, dilation=2,    # dilated,
                                                         pad=[2, 1, 0, 3]),     # uneven pad
         chain=dict(seed=9)),
    dict(conv=((1, 4, 9, 8), 8, 3, "i16", 0), kw=dict(seed=10),                 # i16 in,
         chain=dict(seed=11, shifts=(1, 6))),                                   # shifts < 32
    dict(conv=((2, 6, 19), 5, 3, "u8", 100), kw=dict(seed=12),                  # conv1d
         chain=dict(add="rhs", seed=13)),
]


@pytest.mark.parametrize("family", ["avx2", pytest.param("vnni", marks=needs_vnni)])
def test_fused_conv_chains_are_one_kernel_each_and_exact(family):
    specs = [chain(conv(*c["conv"], **c["kw"]), **c.get("chain", {})) for c in CONV_CHAINS]
    module, inputs = chain_module(specs)
    check_fused(module, inputs, family, len(specs))


def test_fused_conv_chains_lower_for_vnni_on_any_cpu():
    """The VNNI family's fusion, checked where the CPU cannot run it (above, where it can,
    the same chains also run bit for bit)."""
    specs = [chain(conv(*c["conv"], **c["kw"]), **c.get("chain", {})) for c in CONV_CHAINS]
    module, _ = chain_module(specs)
    names = relax_kernels(module, family_target("vnni"))
    assert len(fused(names)) == len(specs), names
    assert any(n.startswith("qir_vconv") for n in fused(names)), names  # VNNI took some


def linear_chains() -> list[dict]:
    return [chain(linear((37, 33), 21, "i8", -3, seed=50), seed=51),            # odd tiles
            chain(linear((2, 5, 64), 48, "u8", 131, seed=52), add="lhs", seed=53),  # 3-D
            chain(linear((1, 70), 10, "i8", 0, seed=54, bias=False), axis=None,  # no bias
                  relu=True, seed=55),
            chain(linear((7, 96), 130, "i16", 0, seed=56), add="rhs", storage="i8",
                  shifts=(2, 5), seed=57)]                                      # i16 in


@pytest.mark.parametrize("family", ["avx2", pytest.param("vnni", marks=needs_vnni)])
def test_fused_linear_chains(family):
    specs = linear_chains()
    module, inputs = chain_module(specs)
    check_fused(module, inputs, family, len(specs))


def test_fused_linear_chains_lower_for_vnni_on_any_cpu():
    module, _ = chain_module(linear_chains())
    names = relax_kernels(module, family_target("vnni"))
    assert len(fused(names)) == 4 and any(n.startswith("qir_vdense") for n in names), names


@pytest.mark.parametrize("family", ["avx2", pytest.param("vnni", marks=needs_vnni)])
def test_which_convs_take_the_fused_direct_kernel(family):
    """Strided rows of output (not pixels), yes; the rest lower unfused, still exact:
    3-pixel rows, and with AVX2 stride 2 along rows of pixels. With VNNI the direct
    kernel takes strided rows of pixels too (the input split into stride phases), and
    an input too big to stay in cache (kernels/conv.py DIRECT_MAX_INPUT: its band of
    rows stays in cache while every channel tile uses it); AVX2 does neither."""
    s2_rows = conv((1, 8, 12, 16), 8, 3, "i8", -128, seed=20)
    s2_rows["attrs"]["stride"] = [2, 1]
    specs = [chain(s2_rows, seed=21),
             chain(conv((1, 8, 16, 16), 8, 3, "i8", -128, seed=22, stride=2), add="rhs",
                   seed=23),
             chain(conv((1, 8, 6, 3), 8, 3, "i8", -128, seed=24), seed=25),
             chain(conv((1, 64, 24, 24), 16, 1, "i8", -128, seed=26, pad=[0] * 4), seed=27)]
    module, inputs = chain_module(specs)
    target = family_target(family)
    names = relax_kernels(module, target)
    direct = 3 if family == "vnni" else 1
    assert len(fused(names)) == direct, names
    assert len([n for n in names if n.startswith("qir_conv")]) == 4 - direct, names
    if runs_here(family):
        compare(module, inputs, target=target)


def test_what_must_not_fuse():
    base = chain(conv((1, 8, 8, 16), 8, 3, "i8", -128, seed=30), seed=31)
    gemmlowp = dict(base, rq=dict(base["rq"], rounding="gemmlowp"))
    module, inputs = chain_module([base, gemmlowp])
    chains = plan(module.main)
    assert [c.anchor.operands[0].name for c in chains.values()] == ["x0"]
    # an intermediate that is also an output keeps its own op
    fn = module.main
    acc = chains[next(iter(chains))].anchor.result
    fn.set_outputs(list(fn.outputs) + [acc])
    assert plan(fn) == {}
    compare(module, inputs)


def test_a_chain_whose_kernel_cannot_build_is_lowered_op_by_op():
    """No AVX2 llvm target: the planned chain falls back, same numbers."""
    import tvm

    module, inputs = chain_module([chain(conv((1, 8, 8, 16), 8, 3, "i8", -128, seed=40),
                                         add="lhs", seed=41)])
    assert len(plan(module.main)) == 1
    want = run(module, inputs)
    got = build(module, tvm.target.Target({"kind": "llvm", "mcpu": "x86-64"})).run(inputs)
    for k, w in want.items():
        np.testing.assert_array_equal(got[k], w)


@pytest.mark.parametrize("name", ["resnet_style", "mobilenet_style", "bert_style"])
def test_zoo_outputs_exact_with_fused_epilogues(name):
    """Without probes (which would make every intermediate an output, and unfusable),
    zoo models fuse their conv/linear -> requantize [-> qadd] chains and stay
    bit-exact."""
    _, module = zoo_modules(name)
    chains = plan(module.main)
    assert chains
    c = build(module, "llvm")
    for feed in zoo_feeds(name, module):
        want, got = run(module, feed), c.run(feed)
        for k, w in want.items():
            np.testing.assert_array_equal(got[k], w)
