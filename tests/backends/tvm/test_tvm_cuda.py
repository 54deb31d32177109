"""CUDA builds: every zoo model (float and int8) compiles for sm_90 on this machine, with
or without a GPU, and the exported library carries real device code (a cubin), not the
CUDA source TVM leaves behind when no driver is present. Running needs a GPU: those tests
skip without one."""

from __future__ import annotations

import functools
import re
import struct

import numpy as np
import pytest
import tvm
from tvm_helpers import RTOL, mismatch, zoo_feeds, zoo_modules

from backends.numpy import run
from backends.tvm import TvmBuildError, build, load
from backends.tvm.cuda import parse_blob, parse_cuda_payload, read_library_blob
from tests.zoo import ZOO

HAS_GPU = tvm.cuda(0).exist
EM_CUDA = 190  # ELF machine number of NVIDIA CUDA binaries


@functools.cache
def cuda_build(name: str, kind: str):
    float_module, int8_module = zoo_modules(name)
    module = float_module if kind == "float" else int8_module
    return module, build(module, "cuda")


def kernel_names(source: str) -> list[str]:
    return re.findall(r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(',
                      source)


@pytest.mark.parametrize("kind", ["float", "int8"])
@pytest.mark.parametrize("name", sorted(ZOO))
def test_cuda_build_exports_device_code(name, kind, tmp_path):
    _, c = cuda_build(name, kind)
    path = c.export_library(tmp_path / f"{name}_{kind}.so")
    _, modules = parse_blob(read_library_blob(path))
    kinds = [k for k, _ in modules]
    assert kinds.count("cuda") == 1 and "relax.VMExecutable" in kinds
    fmt, rest = parse_cuda_payload(dict(modules)["cuda"])
    assert fmt == "cubin"
    cubin = rest[rest.index(b"\x7fELF"):]
    assert struct.unpack_from("<H", cubin, 18)[0] == EM_CUDA
    if c.device_code:  # built without a driver: qir compiled the kernels itself
        source = c.device_code[0][0]
        names = kernel_names(source)
        assert names and all(n.encode() in cubin for n in names)
        assert source.encode() not in rest  # the source was replaced, not carried along


@pytest.mark.skipif(HAS_GPU, reason="checks the error on a machine without a GPU")
def test_loading_or_running_cuda_without_a_gpu_says_so(tmp_path):
    module, c = cuda_build("mlp", "int8")
    path = c.export_library(tmp_path / "mlp.so")
    with pytest.raises(TvmBuildError, match="CUDA driver"):
        load(path)
    with pytest.raises(TvmBuildError, match="no CUDA device"):
        c.run(zoo_feeds("mlp", module)[0])


@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind", ["float", "int8"])
@pytest.mark.parametrize("name", sorted(ZOO))
def test_cuda_build_runs_and_matches_the_interpreter(name, kind, tmp_path):
    module, c = cuda_build(name, kind)
    loaded = load(c.export_library(tmp_path / "m.so"))
    for feed in zoo_feeds(name, module):
        want = run(module, feed)
        for compiled in (c, loaded):
            got = compiled.run(feed)
            for key, w in want.items():
                assert mismatch(got[key], w, RTOL) is None, (key, mismatch(got[key], w, RTOL))
                if kind == "int8":  # float islands included (bench/gpu_check.py checks it)
                    assert np.array_equal(got[key], w), key


def test_int8_matmul_above_the_tensor_core_threshold_builds(tmp_path):
    """dlight's int8 tensor-core matmul path fails in TVM 0.27's CUDA codegen; big int8
    matmuls get its SIMT schedule instead."""
    from tvm_helpers import case, cases_module, randint

    from qir.types import QuantType, TensorType

    a, b = randint(-128, 127, 128, 256), randint(-128, 127, 256, 192, seed=1)
    qa = TensorType(a.shape, QuantType("i8", "f32", (0.1,), (0,)))
    qb = TensorType(b.shape, QuantType("i8", "f32", (0.1,), (0,)))
    module, inputs, _ = cases_module([case("qir.qmatmul", (a, qa), (b, qb))])
    c = build(module, "cuda")
    c.export_library(tmp_path / "mm.so")
    if HAS_GPU:
        np.testing.assert_array_equal(c.run(inputs)[module.main.outputs[0].name],
                                      run(module, inputs)[module.main.outputs[0].name])


@pytest.mark.parametrize("name", ["scatter", "index_put", "embedding_bag_mean", "fold",
                                  "sort_topk"])
def test_scatter_and_sort_build_for_cuda(name):
    """TVM's GPU scatter and sort launch their own threads: they are taken as they are
    (no dlight rule applies to them), and sort does not call the CPU sort library."""
    from tests.frontends.helpers import check
    from tests.frontends.test_import_writes import MODELS

    model, args = MODELS[name]
    c = build(check(model, args, "export"), "cuda")
    if c.device_code:
        assert "__global__" in c.device_code[0][0]
    if HAS_GPU:
        module = check(model, args, "export")
        inputs = [a.numpy() for a in args]
        want, got = run(module, inputs), c.run(inputs)
        for key, w in want.items():
            if w.dtype.kind in "biu":
                np.testing.assert_array_equal(got[key], w, err_msg=key)
            else:
                np.testing.assert_allclose(got[key], w, rtol=0, atol=RTOL * np.abs(w).max())


def test_activation_matmuls_stay_unfused_on_cuda():
    """Attention's integer matmuls (qmatmul of two activations) are kernels of their own
    on CUDA: fused with the requantize, scale and causal mask after them, dlight's
    matmul schedule gave wrong integers on an H200 (gpt_style, 57% of the outputs); split,
    the GPU check found every value exact."""
    from backends.tvm import to_relax
    from backends.tvm.compiler import fuse
    from backends.tvm.target import cuda_target

    _, module = zoo_modules("gpt_style")
    assert sum(op.name == "qir.qmatmul" for op in module.main.ops) >= 2
    target = cuda_target()
    with target:  # lowerings pick target-specific arithmetic, as build() lowers
        mod, _ = fuse(to_relax(module), target)
    names = [str(gv.name_hint) for gv, f in mod.functions_items()
             if isinstance(f, tvm.tirx.PrimFunc)]
    assert any(n.startswith("int_matmul") for n in names), names
    assert not [n for n in names if n.startswith("fused_") and "int_matmul" in n], names
