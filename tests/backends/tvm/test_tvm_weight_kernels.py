"""The weight-dequantizing dense kernels (backends/tvm/kernels/weight_dense.py) against
the numpy interpreter, bit for bit: `linear`/`matmul {accumulate = "sequential"}` on
dequantize(int8, int4, fp8 or codebook parameter: NF4, a 200-level table), per tensor, per channel and per group (groups
that do not divide K), decoding one row or many (rows not a multiple of the tile), on
the AVX2 (ymm) and AVX-512 (zmm) builds; the fallbacks where the kernel does not apply;
and whole zoo transformers in every weight-quantized scheme."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import tvm
from tvm_helpers import family_target, needs_vnni

import qir
from backends.numpy import run
from backends.tvm import build, to_relax
from qir.types import CODEBOOKS, QuantType, TensorType

QMAX = {"i4": 7, "i8": 127}
FP8 = {"f8e4m3": ml_dtypes.float8_e4m3fn, "f8e5m2": ml_dtypes.float8_e5m2}
CODEBOOK = {"nf4": ("u4", CODEBOOKS["nf4"]),  # storage, levels
            "cb200": ("u8", tuple(np.sort(np.random.default_rng(9).standard_normal(200))))}


def stored(storage: str, n: int, k: int, rng) -> np.ndarray:
    if storage in CODEBOOK:
        return rng.integers(0, len(CODEBOOK[storage][1]), (n, k)).astype(np.uint8)
    if storage in FP8:
        return (rng.standard_normal((n, k)) * 4).astype(FP8[storage])
    return rng.integers(-QMAX[storage], QMAX[storage], (n, k), endpoint=True).astype(np.int8)


def weight_type(storage: str, shape, group, rng, transposed=False) -> QuantType:
    """Per tensor (group None), per output channel (0) or per `group` inputs."""
    n, k = shape if not transposed else shape[::-1]
    k_axis, n_axis = (0, 1) if transposed else (1, 0)
    lo, hi = (None, None) if storage in FP8 or storage in CODEBOOK else \
        (-QMAX[storage], QMAX[storage])
    storage, levels = CODEBOOK.get(storage, (storage, None))
    if group is None:
        count, axis, block = 1, None, None
    elif group == 0:
        count, axis, block = n, n_axis, None
    else:
        count, axis, block = n * -(-k // group), k_axis, group
    scales = tuple(float(s) for s in rng.uniform(0.001, 0.05, count).astype(np.float32))
    return QuantType(storage, "f32", scales, (0,) * count, lo, hi, axis, block, levels)


def weight_module(specs: list[dict], seed: int = 0):
    """@main: per spec an input x<i> through linear (or matmul on a [K, N] weight) of a
    dequantized parameter, accumulate = sequential, with bias when asked."""
    rng = np.random.default_rng(seed)
    fn = qir.Function("main", [(f"x{i}", TensorType(s["x"], "f32"))
                               for i, s in enumerate(specs)])
    module = qir.Module()
    module.add_function(fn)
    b = qir.Builder(fn)
    inputs, outputs = {}, []
    for i, (s, x) in enumerate(zip(specs, fn.args)):
        n, k = s["n"], s["x"][-1]
        matmul = s.get("op") == "matmul"
        q = stored(s["storage"], n, k, rng)
        q = q.T.copy() if matmul else q
        qt = weight_type(s["storage"], q.shape, s.get("group"), rng, transposed=matmul)
        module.params[f"w{i}"] = q
        w = b.create("qir.param", [], {"name": f"w{i}"}, [TensorType(q.shape, qt)]).result
        wf = b.create("qir.dequantize", [w], {}).result
        operands = [x, wf]
        if s.get("bias"):
            module.params[f"b{i}"] = rng.standard_normal(n).astype(np.float32)
            operands.append(b.create("qir.param", [], {"name": f"b{i}"},
                                     [TensorType((n,), "f32")]).result)
        name = "qir.matmul" if matmul else "qir.linear"
        outputs.extend(b.create(name, operands, {"accumulate": "sequential"}).results)
        inputs[f"x{i}"] = rng.standard_normal(s["x"]).astype(np.float32)
    fn.set_outputs(outputs)
    qir.verify(module)
    return module, inputs


SPECS = [
    dict(x=(1, 200), n=100, storage="i4", group=128),  # decode: one row, ragged group
    dict(x=(1, 1, 96), n=70, storage="i8", group=0, bias=True),
    dict(x=(7, 64), n=48, storage="i4", group=32),
    dict(x=(2, 17, 40), n=33, storage="i8", group=None),  # rows padded to the tile
    dict(x=(3, 64), n=24, storage="f8e4m3", group=0),
    dict(x=(20, 24), n=40, storage="f8e5m2", group=None, bias=True),
    dict(x=(5, 64), n=20, storage="i4", group=64, op="matmul"),
    dict(x=(64, 130), n=256, storage="i4", group=64),  # parallel tiles
    dict(x=(1, 96), n=40, storage="nf4", group=64),  # codebooks: one row, ragged group
    dict(x=(9, 64), n=30, storage="nf4", group=0, bias=True),
    dict(x=(4, 48), n=20, storage="cb200", group=None, op="matmul"),
]


def kernel_names(module, target) -> list[str]:
    with target:
        mod = to_relax(module)
    return [str(gv.name_hint) for gv in mod.functions if str(gv.name_hint).startswith("qir_")]


def assert_bit_equal(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    bad = [k for k in want if got[k].dtype != want[k].dtype or not np.array_equal(got[k],
                                                                                   want[k])]
    assert not bad, {k: float(np.abs(got[k] - want[k]).max()) for k in bad}


@pytest.mark.parametrize("family", ["avx2", pytest.param("vnni", marks=needs_vnni)])
def test_weight_dense_kernels_equal_the_interpreter(family):
    module, inputs = weight_module(SPECS)
    target = family_target(family)
    names = kernel_names(module, target)
    assert sum(n.startswith("qir_wdense") for n in names) == len(SPECS), names
    assert_bit_equal(build(module, target).run(inputs), run(module, inputs))


def test_int4_weights_are_stored_two_per_byte(tmp_path):
    """The deployed library holds the stored weights, int4 packed two per byte: about
    half of int8's bytes, an eighth of float32's."""
    sizes = {}
    for storage in ("i8", "i4"):
        module, _ = weight_module([dict(x=(4, 1024), n=1024, storage=storage, group=128)])
        path = tmp_path / f"{storage}.so"
        build(module, "llvm").export_library(str(path))
        sizes[storage] = path.stat().st_size
    float_bytes = 1024 * 1024 * 4
    assert sizes["i4"] < 0.65 * sizes["i8"] and sizes["i8"] < 0.35 * float_bytes, sizes


def test_sequential_linear_without_the_kernel_stays_exact():
    """No AVX2 (or a weight in a non-constant argument): the plain sequential lowering,
    still the interpreter's bits; float weights take the float kernel with rounded
    products."""
    module, inputs = weight_module(SPECS[:3] + SPECS[4:5] + SPECS[-3:])
    no_avx2 = tvm.target.Target({"kind": "llvm", "mcpu": "x86-64"})
    assert kernel_names(module, no_avx2) == []
    assert_bit_equal(build(module, no_avx2).run(inputs), run(module, inputs))
    text = """func @main(%x: tensor<9x40xf32>, %v: tensor<24x40xf32>) -> (tensor<9x24xf32>, tensor<9x24xf32>) {
  %w = qir.param {name = "w"} : tensor<24x40xf32>
  %y = qir.linear %x, %w {accumulate = "sequential"} : tensor<9x24xf32>
  %z = qir.linear %x, %v {accumulate = "sequential"} : tensor<9x24xf32>
  return %y, %z
}
"""
    module = qir.parse(text)
    rng = np.random.default_rng(3)
    module.params["w"] = rng.standard_normal((24, 40)).astype(np.float32)
    inputs = {"x": rng.standard_normal((9, 40)).astype(np.float32),
              "v": rng.standard_normal((24, 40)).astype(np.float32)}
    names = kernel_names(module, family_target("avx2"))
    assert [n for n in names if n.startswith("qir_xfdense")], names
    assert_bit_equal(build(module, "llvm").run(inputs), run(module, inputs))


def test_sequential_accumulation_is_the_documented_loop():
    """The interpreter's sequential linear and matmul (1-d operands included) are the
    loop of docs/semantics.md, and the attribute round-trips through the text."""
    text = """func @main(%x: tensor<3x50xf32>, %w: tensor<6x50xf32>, %v: tensor<50xf32>) -> (tensor<3x6xf32>, tensor<6xf32>) {
  %y = qir.linear %x, %w {accumulate = "sequential"} : tensor<3x6xf32>
  %z = qir.matmul %w, %v {accumulate = "sequential"} : tensor<6xf32>
  return %y, %z
}
"""
    module = qir.parse(text)
    assert 'accumulate = "sequential"' in qir.print_module(module)
    rng = np.random.default_rng(4)
    x, w, v = (rng.standard_normal(s).astype(np.float32) for s in ((3, 50), (6, 50), (50,)))
    y, z = run(module, {"x": x, "w": w, "v": v}).values()
    loop_y = np.zeros((3, 6), np.float32)
    loop_z = np.zeros(6, np.float32)
    for k in range(50):
        loop_y = loop_y + x[:, k:k + 1] * w[:, k]
        loop_z = loop_z + w[:, k] * v[k]
    assert np.array_equal(y, loop_y) and np.array_equal(z, loop_z)
    with pytest.raises(qir.QirError, match="accumulate"):
        qir.parse(text.replace('"sequential"', '"pairwise"', 1))


@pytest.mark.parametrize("name", ["gpt_style", "bert_style"])
@pytest.mark.parametrize("pipeline", [
    "w8a16", "w4a16", "fp8-e4m3",
    "canonicalize,weight-only{format=nf4,group-size=32},canonicalize",
    "canonicalize,weight-only{format=kmeans,levels=256,group-size=0},canonicalize"])
def test_weight_quantized_zoo_transformers_equal_the_interpreter(name, pipeline):
    """Every linear of the weight-only and fp8 schemes runs a weight kernel, and the
    whole model computes the interpreter's bits (docs/semantics.md)."""
    import frontends
    from passes import PassContext, PassManager
    from tests.zoo import ZOO, calibration_batches

    entry = ZOO[name]
    module = frontends.from_torch(entry.build(), entry.example_inputs(0))
    names = [a.name for a in module.main.args]
    batches = [dict(zip(names, [t.numpy() for t in b])) for b in calibration_batches(name, 3)]
    PassManager(pipeline, ctx=PassContext(calibration_data=batches[:2], progress=False)).run(
        module)
    linears = [op for op in module.main.ops if op.name == "qir.linear"]
    assert linears and all(op.attr("accumulate") == "sequential" for op in linears)
    compiled = build(module, "llvm")
    dense = {o["value"] for kernel, ops in compiled.signature.kernels.items()
             if kernel.startswith("qir_wdense") for o in ops}
    assert all(op.result.name in dense for op in linears), \
        [op.result.name for op in linears if op.result.name not in dense]
    assert_bit_equal(compiled.run(batches[2]), run(module, batches[2]))


def test_decoding_one_row_prefetches_the_weights():
    """One row (a decode step) streams every weight once: the kernel prefetches each
    step's cache lines a kilobyte ahead; many rows reuse the unpacked tile and do not."""
    from backends.tvm.kernels.weight_dense import Tile, weight_dense_func

    decode = weight_dense_func(1, 256, 512, "i8", 128, Tile(1, 8, 16)).script()
    prefetches = [line for line in decode.splitlines() if "llvm.prefetch" in line]
    assert len(prefetches) == 2 and "k + 8" in prefetches[0]  # 128-byte steps: 2 lines
    prefill = weight_dense_func(32, 256, 512, "i4", 128, Tile(16, 2, 16)).script()
    assert "llvm.prefetch" not in prefill
