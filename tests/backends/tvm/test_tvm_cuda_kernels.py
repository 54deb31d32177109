"""The CUDA tensor-core kernels (backends/tvm/kernels/gpu_kernels.cuh, gpu.py), run on this
machine's CPU by compiling their CUDA C++ as host code with tests/backends/tvm/
cuda_emulation.h (each block's threads as host threads, mma.sync computed from the PTX
fragment layout), against the numpy interpreter bit for bit: conv and dense, int8 and
uint8 inputs with zero points, every tile shape, padding, strides, dilation, sizes that
divide no tile, and the fused epilogues (requantize per tensor and per channel, u8 out,
residual qadd on either side). The lowering's choices (which convs take the kernel, and
that a CUDA build carries its source) are checked too. On a GPU the same kernels run for
real in bench/gpu_check.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_tvm_epilogue_fusion import chain, chain_module
from test_tvm_kernels import conv, linear, ops_module

from backends.numpy import run
from backends.tvm import cuda_target, to_relax
from backends.tvm.epilogue_fusion import epilogue_of, plan
from backends.tvm.kernels import gpu
from backends.tvm.kernels.gpu import (TILES, Kernel, conv2d_kernel, dense_kernel,
                                             direct_conv_kernel)
from qir.ops.core import constant_array

HERE = Path(__file__).resolve().parent
KERNELS = Path(gpu.__file__).resolve().parent
GXX = shutil.which("g++")

pytestmark = pytest.mark.skipif(GXX is None, reason="needs g++ (C++20) to emulate the kernels")

MAIN = """
#include "cuda_emulation.h"
#include "gpu_kernels.cuh"
{source}
int main(int argc, char** argv) {{
  std::vector<uint8_t> x = emu::read_file(argv[1]), w = emu::read_file(argv[2]);
  std::vector<uint8_t> res = argc > 4 ? emu::read_file(argv[3]) : std::vector<uint8_t>();
  std::vector<uint8_t> out({out_bytes});
  emu::launch({gx}, {gy}, {threads}, [&] {{ {name}(x.data(), w.data(), {res}out.data()); }});
  emu::write_file(argv[argc - 1], out.data(), out.size());
  return 0;
}}
"""


def emulate(kern: Kernel, x: np.ndarray, residual: np.ndarray | None, tmp: Path) -> np.ndarray:
    """Compile the kernel for the host and run it on x (and the residual)."""
    out_dtype = np.dtype(kern.out_dtype)
    size = int(np.prod(kern.out_shape)) * out_dtype.itemsize
    main = MAIN.format(source=kern.source, out_bytes=size, gx=kern.grid[0], gy=kern.grid[1],
                       threads=kern.threads, name=kern.name,
                       res="res.data(), " if kern.residual_dtype else "")
    (tmp / "main.cpp").write_text(main)
    exe = tmp / "main"
    subprocess.run([GXX, "-std=c++20", "-O1", "-pthread", f"-I{HERE}", f"-I{KERNELS}",
                    "-o", str(exe), str(tmp / "main.cpp")], check=True)
    files = [tmp / "x.bin", tmp / "w.bin"]
    files[0].write_bytes(np.ascontiguousarray(x).tobytes())
    files[1].write_bytes(kern.w.tobytes())
    if kern.residual_dtype:
        files.append(tmp / "r.bin")
        files[-1].write_bytes(np.ascontiguousarray(residual).astype(kern.residual_dtype)
                              .tobytes())
    subprocess.run([str(exe), *map(str, files), str(tmp / "out.bin")], check=True,
                   timeout=300)
    return np.frombuffer((tmp / "out.bin").read_bytes(), out_dtype).reshape(kern.out_shape)


def anchor_kernel(op, x_dtype: str, epilogue=None, tile=None) -> Kernel | None:
    """The kernel the lowering would build for a qconv2d / qlinear op."""
    w = constant_array(op.operands[1])
    bias = constant_array(op.operands[2]) if len(op.operands) > 2 else None
    tx = op.operands[0].type
    zp = tx.quant.zero_point
    if op.name == "qir.qlinear":
        shape = tx.shape
        return dense_kernel(int(np.prod(shape[:-1])), shape[-1], x_dtype, zp, w, bias,
                            epilogue, tile)
    groups = op.attr("groups")
    if groups != 1:
        return direct_conv_kernel(tx.shape, x_dtype, zp, w, bias, op.attr("stride"),
                                  op.attr("padding"), op.attr("dilation"), groups, epilogue)
    return conv2d_kernel(tx.shape, x_dtype, zp, w, bias, op.attr("stride"),
                         op.attr("padding"), op.attr("dilation"), groups, epilogue, tile)


def check_chains(specs: list[dict], tmp_path: Path, tile=None) -> None:
    module, inputs = chain_module(specs)
    want = run(module, inputs)
    chains = plan(module.main)
    assert len(chains) == len(specs)
    for i, c in enumerate(chains.values()):
        x = inputs[c.anchor.operands[0].name]
        kern = anchor_kernel(c.anchor, str(x.dtype), epilogue_of(c), tile)
        assert kern is not None, c.anchor
        r = c.residual()
        got = emulate(kern, x, None if r is None else inputs[r.name], tmp_path)
        expect = want[c.tail.result.name]
        np.testing.assert_array_equal(got.reshape(expect.shape), expect, err_msg=f"chain {i}")


def test_fused_conv_chains_bit_exact(tmp_path):
    specs = [chain(conv((1, 16, 12, 16), 16, 3, "i8", -128, seed=1), seed=2),   # per-channel
             chain(conv((1, 8, 9, 11), 10, 3, "u8", 7, seed=3), axis=None, relu=True),
             chain(conv((1, 5, 7, 9), 6, 3, "i8", 2, seed=4), storage="u8", zp_out=9),
             chain(conv((2, 12, 6, 8), 9, 1, "i8", 0, seed=5, pad=[0] * 4), add="rhs",
                   relu=True, seed=6),                                        # 1x1, odd O
             chain(conv((1, 6, 11, 10), 7, 3, "u8", 120, seed=8, dilation=2,
                        pad=[2, 1, 0, 3]), add="lhs", seed=9),                # dilated
             chain(conv((1, 8, 16, 16), 8, 3, "i8", -128, seed=10, stride=2), add="rhs",
                   seed=11),                                                  # strided
             chain(conv((1, 3, 13, 13), 20, 7, "u8", 0, seed=12, stride=2,
                        pad=[3] * 4), seed=13, shifts=(1, 6))]                 # stem-like
    check_chains(specs, tmp_path)


def test_fused_linear_chains_bit_exact(tmp_path):
    specs = [chain(linear((37, 33), 21, "i8", -3, seed=50), seed=51),          # K % 4 != 0
             chain(linear((2, 5, 64), 48, "u8", 131, seed=52), add="lhs", seed=53),
             chain(linear((1, 70), 10, "i8", 0, seed=54, bias=False), axis=None,
                   relu=True, seed=55),
             chain(linear((70, 130), 72, "u8", 255, seed=56), add="rhs", seed=57)]
    check_chains(specs, tmp_path)


@pytest.mark.parametrize("tile", TILES, ids=lambda t: f"{t.bm}x{t.bn}")
def test_every_tile_shape(tile, tmp_path):
    """Sizes that divide no tile, K spanning several steps of 64; channels in whole
    words (K ordered by tap, a thread's chunk within one tap for 64 channels) or not."""
    specs = [chain(conv((2, 24, 9, 10), 70, 3, "u8", 100, seed=60), add="rhs", seed=61),
             chain(linear((45, 200), 67, "i8", -7, seed=62), seed=63),
             chain(conv((1, 64, 6, 7), 130, 3, "i8", 5, seed=64, stride=2), seed=65),
             chain(conv((1, 6, 8, 5), 20, 3, "u8", 9, seed=66), seed=67)]
    check_chains(specs, tmp_path, tile)


def test_plain_accumulators(tmp_path):
    """Without an epilogue the kernel stores acc + bias as int32 (an unfused qconv)."""
    specs = [conv((1, 10, 7, 9), 12, 3, "u8", 128, seed=70),
             conv((2, 6, 5, 5), 8, 1, "i8", -5, seed=71, pad=[0] * 4),
             linear((9, 40), 24, "u8", 3, seed=72),
             conv((1, 32, 6, 6), 16, 3, "i8", 127, seed=73, extreme="min")]  # extremes
    specs[-1]["w"] = np.where(specs[-1]["w"] >= 0, 127, -127).astype(np.int8)
    module, inputs = ops_module(specs)
    want = run(module, inputs)
    for i, op in enumerate(o for o in module.main.ops if o.name.startswith("qir.q")):
        x = inputs[f"x{i}"]
        got = emulate(anchor_kernel(op, str(x.dtype)), x, None, tmp_path)
        np.testing.assert_array_equal(got.reshape(want[op.result.name].shape),
                                      want[op.result.name], err_msg=f"op {i}")


def test_grouped_and_depthwise_convs_bit_exact(tmp_path):
    """The direct kernel: depthwise (strided, dilated, 5x5), grouped, channel multiplier
    2, int16 input, with and without epilogues."""
    specs = [chain(conv((1, 12, 11, 11), 12, 3, "i8", -1, seed=90, groups=12), seed=91),
             chain(conv((2, 12, 9, 14), 12, 5, "u8", 77, seed=92, stride=2, groups=12,
                        dilation=2), add="rhs", relu=True, seed=93),
             chain(conv((1, 8, 9, 10), 8, 3, "i8", 4, seed=94, groups=2), add="lhs",
                   seed=95, storage="u8", zp_out=3),
             chain(conv((1, 6, 8, 8), 12, 3, "i8", 2, seed=96, groups=6), axis=None, seed=97),
             chain(conv((1, 8, 7, 9), 8, 3, "i16", 0, seed=98, groups=4), seed=99,
                   shifts=(1, 6))]
    check_chains(specs, tmp_path)
    module, inputs = ops_module([conv((1, 16, 9, 9), 16, 3, "u8", 0, seed=33, extreme="max",
                                      groups=16)])
    op = next(o for o in module.main.ops if o.name == "qir.qconv2d")
    got = emulate(anchor_kernel(op, "uint8"), inputs["x0"], None, tmp_path)
    np.testing.assert_array_equal(got, run(module, inputs)[op.result.name])


def test_which_ops_take_the_kernel():
    """int16 inputs to an ungrouped conv, and a bias that leaves int32 once the zero point
    is folded in, keep TVM's lowering; the rest take a kernel, on CUDA targets from sm_80
    (int8 mma) only."""
    taken = [conv((1, 8, 6, 6), 8, 3, "i8", 1, seed=80), linear((4, 16), 8, "u8", 3, seed=81),
             conv((1, 8, 6, 6), 8, 3, "i8", 1, seed=82, groups=2),
             conv((1, 8, 6, 6), 8, 3, "i8", 1, seed=83, groups=8)]
    kept = [conv((1, 8, 6, 6), 8, 3, "i16", 0, seed=84),
            linear((4, 64), 16, "i8", 127, seed=85)]
    kept[-1]["bias"] = np.full(16, -(2**31) + 5, np.int32)
    kept[-1]["w"] = np.full((16, 64), 127, np.int8)
    module, _ = ops_module(taken + kept)

    def kernels(target) -> list[str]:
        with target:
            mod = to_relax(module)
        return [str(gv.name_hint) for gv in mod.functions if "qir_tc_" in str(gv.name_hint)]

    gemms = 2  # the ungrouped conv and the linear

    assert len(kernels(cuda_target("sm_90"))) == len(taken)
    assert len(kernels(cuda_target("sm_80"))) == len(taken)
    assert kernels(cuda_target("sm_75")) == []  # no int8 m16n8k32 before Ampere
    with cuda_target():
        source = gpu.sources(to_relax(module))
    assert source.count("qir::igemm<qir_tc_") == gemms
    assert source.count("qir::direct_conv<qir_tc_") == len(taken) - gemms
