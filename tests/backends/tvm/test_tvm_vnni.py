"""The VNNI kernels (vpdpbusd: uint8 activations x int8 weights, backends/tvm/kernels):

- their layouts (uint8 x - storage_min, channel quads, the zero-point correction folded
  into the bias, padding that reads zp) bit for bit against numpy on any CPU, with the
  reduction left untensorized (the intrinsic's description, Dot(tensorize=False));
- the code for a VNNI CPU (cascadelake) multiplies with vpdpbusd, and the lowering picks
  the VNNI kernels exactly when the target has VNNI and int32 holds the partial sums;
- on a CPU with VNNI, a whole int8 model bit for bit against the interpreter (skipped on
  other CPUs: this one runs where the hardware is)."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from test_tvm_kernels import conv, kernels_used, linear, ops_module
from tvm_helpers import compare, cpu_flags, randint, zoo_feeds, zoo_modules

from backends.numpy import run
from backends.tvm import build, llvm_target
from backends.tvm.kernels.common import Dot, has_vnni, vnni_bias
from backends.tvm.kernels.conv import (ConvShape, direct_func, input_offset,
                                       pack_direct_weights)
from backends.tvm.kernels.dense import dense_func, pack_weights

VNNI_CPU = tvm.target.Target({"kind": "llvm", "mcpu": "cascadelake", "num-cores": 2})
LAYOUT = Dot(vnni=True, tensorize=False)
RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


def reference_conv(x, w, bias, zp, stride, pad, dilation, groups):
    import torch

    pt, pl, pb, pr = pad
    xp = np.pad(x.astype(np.float64) - zp, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    y = torch.nn.functional.conv2d(torch.tensor(xp), torch.tensor(w.astype(np.float64)),
                                   torch.tensor(bias.astype(np.float64)), stride, 0,
                                   dilation, groups)
    return y.numpy().astype(np.int64)


@pytest.mark.parametrize("cols,lanes", [(4, 8), (8, 16)], ids=["4x8", "8x16"])
@pytest.mark.parametrize("x_dtype,zp,shape,o,k,stride,pad,dilation,groups", [
    ("int8", -5, (1, 10, 9, 12), 6, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ("uint8", 130, (2, 7, 8, 9), 9, 3, (2, 1), (2, 0, 1, 3), (1, 2), 1),
    ("int8", 127, (1, 8, 6, 16), 8, 1, (1, 1), (0, 0, 0, 0), (1, 1), 2),
    ("int8", 3, (1, 5, 17, 29), 7, 3, (2, 2), (1, 0, 2, 1), (1, 1), 1),
    ("uint8", 0, (1, 3, 20, 33), 9, 7, (1, 3), (3, 3, 3, 3), (1, 2), 1),
])
def test_direct_conv_vnni_layout(x_dtype, zp, shape, o, k, stride, pad, dilation, groups,
                                 cols, lanes):
    """Tiles of 4 channels x 8 pixels (16 vector registers), and of 8 channels x 16
    pixels (AVX-512's zmm and 32 registers)."""
    n, c, h, wd = shape
    s = ConvShape(n, c, h, wd, o, k, k, stride, pad, dilation, groups, x_dtype)
    x = randint(*RANGES[x_dtype], *shape, seed=1, dtype=np.dtype(x_dtype))
    w = randint(-128, 127, o, c // groups, k, k, seed=2)
    bias = randint(-9999, 9999, o, seed=3, dtype=np.int32)
    corrected = vnni_bias(bias, w.reshape(o, -1).astype(np.int64).sum(1), zp,
                          input_offset(x_dtype), w[0].size)
    layout = Dot(vnni=True, tensorize=False, lanes=lanes)
    with llvm_target():
        func = direct_func(s, None, layout, cols)
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      llvm_target())
    packed = pack_direct_weights(w, groups, layout, cols)
    b = np.pad(corrected.reshape(groups, -1), ((0, 0), (0, packed.shape[1] - o // groups)))
    out = tvm.runtime.tensor(np.zeros((n, o, *s.out_hw), np.int32))
    lib["main"](tvm.runtime.tensor(x), zp, tvm.runtime.tensor(packed), tvm.runtime.tensor(b),
                out)
    want = reference_conv(x, w, bias, zp, stride, pad, dilation, groups)
    np.testing.assert_array_equal(out.numpy(), want)


@pytest.mark.parametrize("x_dtype,zp", [("int8", -3), ("uint8", 255), ("int8", 127)])
def test_dense_vnni_layout(x_dtype, zp):
    m, n, k = 11, 19, 45  # no dimension divides a tile or a quad
    x = randint(*RANGES[x_dtype], m, k, seed=4, dtype=np.dtype(x_dtype))
    w = randint(-128, 127, n, k, seed=5)
    bias = randint(-99, 99, n, seed=6, dtype=np.int32)
    corrected = vnni_bias(bias, w.astype(np.int64).sum(1), zp, input_offset(x_dtype), k)
    with llvm_target():
        func = dense_func(m, n, k, x_dtype, None, LAYOUT)
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      llvm_target())
    out = tvm.runtime.tensor(np.zeros((m, n), np.int32))
    lib["main"](tvm.runtime.tensor(x), zp, tvm.runtime.tensor(pack_weights(w, LAYOUT)),
                tvm.runtime.tensor(corrected), out)
    want = (x.astype(np.int64) - zp) @ w.T.astype(np.int64) + bias
    np.testing.assert_array_equal(out.numpy(), want)


def test_vnni_code_multiplies_with_vpdpbusd():
    s = ConvShape(1, 16, 8, 16, 16, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, "int8")
    for func in (direct_func(s, None, Dot(vnni=True)),
                 dense_func(24, 32, 64, "uint8", None, Dot(vnni=True))):
        with VNNI_CPU:
            lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                              VNNI_CPU)
        asm = lib.mod.inspect_source("asm")
        assert "vpdpbusd" in asm and "vpmaddwd" not in asm


def test_lowering_picks_vnni_kernels_where_they_apply():
    specs = [linear((6, 40), 16, "i8", -3, seed=10),
             conv((1, 8, 8, 16), 8, 3, "u8", 7, seed=11),
             linear((6, 40), 16, "i16", 0, seed=12),       # int16 x: AVX2's vpmaddwd
             conv((1, 8, 16, 16), 8, 3, "i8", 1, seed=13, stride=2),  # stride phases
             conv((1, 8, 16, 3), 8, 3, "i8", 1, seed=14)]  # 3-pixel rows: grouped
    module, _ = ops_module(specs)
    vnni = kernels_used(module, VNNI_CPU)
    assert [n.split("_")[1] for n in vnni] == ["conv", "dense", "vconv", "vconv", "vdense"], vnni
    host = {n.split("_")[1] for n in kernels_used(module)}
    assert has_vnni(llvm_target()) or not host & {"vconv", "vdense"}, host


def test_vnni_falls_back_when_the_corrected_bias_leaves_int32():
    spec = linear((4, 64), 16, "i8", 127, seed=20)
    spec["bias"] = np.full(16, -(2**31) + 5, np.int32)  # minus 255 * sum w overflows
    spec["w"] = np.full((16, 64), 127, np.int8)
    module, _ = ops_module([spec])
    assert [n.split("_")[1] for n in kernels_used(module, VNNI_CPU)] == ["dense"]


@pytest.mark.skipif(not has_vnni(llvm_target()), reason="this CPU has no VNNI (vpdpbusd): "
                    "the VNNI kernels are checked above without the instruction")
@pytest.mark.parametrize("name", ["resnet_style", "bert_style"])
def test_vnni_build_is_bit_exact_on_this_cpu(name):
    _, module = zoo_modules(name)
    assert [n for n in kernels_used(module) if n.startswith(("qir_vconv", "qir_vdense"))]
    c = build(module, "llvm")
    for feed in zoo_feeds(name, module):
        want, got = run(module, feed), c.run(feed)
        for key, w in want.items():
            np.testing.assert_array_equal(got[key], w)


@pytest.mark.skipif(not has_vnni(llvm_target()), reason="this CPU has no VNNI")
def test_vnni_kernels_exact_on_this_cpu():
    specs = [linear((37, 33), 21, "i8", -3, seed=30), linear((5, 64), 48, "u8", 131, seed=31),
             conv((1, 16, 9, 11), 24, 3, "u8", 128, seed=32),
             conv((2, 10, 7, 13), 33, 1, "i8", -5, seed=33, pad=[0] * 4)]
    module, inputs = ops_module(specs)
    assert len([n for n in kernels_used(module) if n.startswith(("qir_vconv", "qir_vdense"))]
               ) == 4
    compare(module, inputs)


@pytest.mark.skipif(not has_vnni(llvm_target()), reason="this CPU has no VNNI (vpdpbusd)")
def test_large_inputs_take_the_direct_kernel_in_row_bands_bit_exact():
    """An input larger than the cache (kernels/conv.py DIRECT_MAX_INPUT) takes the VNNI
    direct kernel with its tiles ordered row band first; exact, odd sizes included."""
    specs = [conv((1, 32, 40, 40), 24, 3, "i8", -5, seed=40),
             conv((1, 48, 30, 37), 20, 3, "u8", 130, seed=41, pad=[1, 0, 2, 1])]
    module, inputs = ops_module(specs)
    assert [n.split("_")[1] for n in kernels_used(module)] == ["vconv", "vconv"]
    compare(module, inputs)


# --- AVX-512: 16-lane (zmm) dense tiles, and int16 pairs through vpdpwssd ---------------

AVX_VNNI_CPU = tvm.target.Target({"kind": "llvm", "mcpu": "alderlake", "num-cores": 2})
HASWELL = tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 2})


def _dense_asm(target, x_dtype: str, vnni: bool) -> str:
    from backends.tvm.kernels.common import widest

    with target:
        dot = widest(Dot(vnni=vnni))
        func = dense_func(24, 32, 64, x_dtype, None, dot)
        lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                          target)
    return lib.mod.inspect_source("asm")


@pytest.mark.parametrize("target, zmm, dpwssd", [(VNNI_CPU, True, True),
                                                 (AVX_VNNI_CPU, False, True),
                                                 (HASWELL, False, False)],
                         ids=["avx512-vnni", "avx-vnni", "avx2"])
def test_dense_takes_the_widest_vectors_the_target_has(target, zmm, dpwssd):
    """AVX-512 targets get zmm tiles (512-bit vpdpbusd, and vpdpwssd for int16 inputs);
    AVX-VNNI keeps ymm and multiplies int16 pairs with its vpdpwssd; AVX2 keeps
    vpmaddwd."""
    int8, int16 = _dense_asm(target, "uint8", vnni=dpwssd), _dense_asm(target, "int16", False)
    assert ("zmm" in int8) == zmm and ("zmm" in int16) == zmm
    assert ("vpdpwssd" in int16) == dpwssd and (dpwssd or "vpmaddwd" in int16)
    if dpwssd:
        assert "vpdpbusd" in int8


def test_kernel_family_per_target():
    """What the manifest records: the family each CPU's build gets."""
    from backends.tvm.kernels.common import kernel_family

    assert kernel_family(VNNI_CPU)["kernels"] == "avx512-vnni"
    assert kernel_family(AVX_VNNI_CPU)["kernels"] == "avx-vnni"
    assert kernel_family(HASWELL) == {
        "mcpu": "haswell", "kernels": "avx2", "features": ["avx2"],
        "requires": ["avx", "avx2", "bmi2", "f16c", "fma", "sse4_2"]}  # no AVX-512
    assert "avx512_vnni" in kernel_family(VNNI_CPU)["requires"]
    assert "avx_vnni" in kernel_family(AVX_VNNI_CPU)["requires"]
    assert kernel_family(tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"})
                         )["kernels"] == "avx512"
    assert kernel_family(tvm.target.Target({"kind": "llvm"}))["kernels"] == "none"
    assert kernel_family(tvm.target.Target({"kind": "cuda", "arch": "sm_90"})) is None


def test_direct_conv_takes_zmm_where_rows_fill_it():
    """AVX-512 VNNI: 3x3 rows of 56 and 14 pixels in zmm (16 lanes), rows of 7 and 1x1
    convs (memory-bound) stay on ymm; AVX-VNNI: ymm. Strided convs take the direct
    kernel too (stride phases)."""
    specs = [conv((1, 16, 56, 56), 16, 3, "i8", -5, seed=60),
             conv((1, 16, 14, 14), 16, 3, "u8", 3, seed=61),
             conv((1, 16, 7, 7), 16, 3, "i8", 0, seed=62),
             conv((1, 16, 56, 56), 16, 1, "i8", 0, seed=63, pad=[0] * 4),
             conv((1, 16, 56, 56), 16, 3, "i8", 0, seed=64, stride=2)]
    module, _ = ops_module(specs)
    used = kernels_used(module, VNNI_CPU)
    assert all(n.startswith("qir_vconv") for n in used), used
    assert sorted(n.split("_")[2] == "zmm" for n in used) == [False, False, True, True, True]
    assert not any("_zmm_" in n for n in kernels_used(module, AVX_VNNI_CPU))


@pytest.mark.parametrize("target", [VNNI_CPU, AVX_VNNI_CPU], ids=["avx512-vnni", "avx-vnni"])
def test_wide_tiles_exact_where_this_cpu_runs_them(target):
    """Dense rows that do not divide the tile (16 on zmm), every activation type, and
    direct convs on zmm rows; run where this CPU has the target's instructions."""
    need = ({"avx512f", "avx512bw", "avx512vl", "avx512_vnni"} if target is VNNI_CPU
            else {"avx_vnni"})
    if not need <= cpu_flags():
        pytest.skip(f"this CPU lacks {', '.join(sorted(need - cpu_flags()))} to run them")
    specs = [linear((37, 70), 45, "i8", -3, seed=50), linear((13, 384), 48, "i16", 0, seed=51),
             linear((25, 33), 17, "u8", 140, seed=52), linear((12, 100), 16, "i16", 0, seed=53),
             linear((300, 64), 40, "i8", 7, seed=54),
             conv((1, 24, 30, 29), 20, 3, "i8", -7, seed=55),
             conv((1, 40, 14, 14), 36, 1, "u8", 128, seed=56, pad=[0] * 4),
             conv((1, 3, 45, 50), 20, 7, "i8", 5, seed=57, stride=2, pad=[3] * 4),
             conv((2, 12, 19, 23), 8, 5, "u8", 200, seed=58, stride=3, pad=[2, 1, 0, 2])]
    module, inputs = ops_module(specs)
    assert len(kernels_used(module, target)) == 9
    compare(module, inputs, target=target)
