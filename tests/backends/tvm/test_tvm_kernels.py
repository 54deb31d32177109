"""The scheduled integer kernels (backends/tvm/kernels) against the numpy interpreter, bit
for bit: dense (qlinear, qmatmul with a constant rhs) and conv (1x1, 3x3, strided,
dilated, depthwise, grouped, conv1d) over shapes that do not divide the tiles, int8,
uint8 and int16 activations with zero points, and saturation-prone extremes. Each test
also checks that the kernels were used, and where they must not be (non-constant or
wide weights, CUDA, an llvm CPU without AVX2), that the plain lowering was."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm_helpers import (case, cases_module, compare, family_target, needs_vnni, randint,
                         runs_here, zoo_modules)

import qir
from backends.tvm import cuda_target, llvm_target, to_relax
from qir.types import QuantType, TensorType

RANGES = {"u8": (0, 255), "i8": (-128, 127), "i16": (-32768, 32767)}


def qtype(shape, storage="i8", zp=0, channels=None) -> TensorType:
    """Per-tensor activations, or per-channel (axis 0) narrow-range weights."""
    if channels is None:
        return TensorType(tuple(shape), QuantType(storage, "f32", (0.05,), (zp,)))
    return TensorType(tuple(shape), QuantType(storage, "f32", (0.01,) * channels,
                                              (0,) * channels, -127, 127, 0))


def ops_module(specs: list[dict]) -> tuple[qir.Module, dict[str, np.ndarray]]:
    """@main running one integer op per spec, each on its own input x<i> with constant
    weights w<i> (and bias b<i>) unless the spec says `weight_arg`."""
    args, inputs = [], {}
    for i, s in enumerate(specs):
        args.append((f"x{i}", s["x_ty"]))
        inputs[f"x{i}"] = s["x"]
        if s.get("weight_arg"):
            args.append((f"w{i}", s["w_ty"]))
            inputs[f"w{i}"] = s["w"]
    fn = qir.Function("main", args)
    module = qir.Module()
    module.add_function(fn)
    b = qir.Builder(fn)
    arg = {a.name: a for a in fn.args}
    outputs = []
    for i, s in enumerate(specs):
        if s.get("weight_arg"):
            w = arg[f"w{i}"]
        else:
            module.params[f"w{i}"] = s["w"]
            w = b.create("qir.param", [], {"name": f"w{i}"}, [s["w_ty"]]).result
        operands = [arg[f"x{i}"], w]
        if s.get("bias") is not None:
            module.params[f"b{i}"] = s["bias"]
            operands.append(b.create("qir.param", [], {"name": f"b{i}"},
                                     [TensorType(s["bias"].shape, "i32")]).result)
        outputs.extend(b.create(s["op"], operands, s.get("attrs", {})).results)
    fn.set_outputs(outputs)
    qir.verify(module)
    return module, inputs


def kernels_used(module: qir.Module, target=None) -> list[str]:
    with target or llvm_target():  # as build() lowers: the target current
        mod = to_relax(module)
    return sorted(str(gv.name_hint) for gv in mod.functions if
                  str(gv.name_hint).startswith("qir_"))


def activation(shape, storage: str, zp: int, seed: int, extreme=None):
    """(values, type): uniform over the storage range, or all at one extreme."""
    lo, hi = RANGES[storage]
    ty = qtype(shape, storage, zp)
    if extreme is not None:
        return np.full(shape, lo if extreme == "min" else hi, ty.dtype), ty
    return randint(lo, hi, *shape, seed=seed, dtype=ty.dtype), ty


def linear(x_shape, n, storage="i8", zp=0, seed=0, extreme=None, bias=True, w_sign=None):
    x, x_ty = activation(x_shape, storage, zp, seed, extreme)
    k = x_shape[-1]
    w = randint(-127, 127, n, k, seed=seed + 1)
    if w_sign is not None:
        w = np.full((n, k), 127 * w_sign, np.int8)
    b = randint(-10**5, 10**5, n, seed=seed + 2, dtype=np.int32) if bias else None
    return dict(op="qir.qlinear", x=x, x_ty=x_ty, w=w, w_ty=qtype(w.shape, channels=n),
                bias=b)


@pytest.mark.parametrize("family", ["avx2", pytest.param("vnni", marks=needs_vnni)])
def test_dense_shapes_dtypes_and_zero_points(family):
    target = family_target(family)
    specs = [linear((37, 33), 21, "i8", -3, seed=1),           # nothing divides a tile
             linear((2, 5, 64), 48, "u8", 131, seed=2),         # batched x, u8
             linear((1, 70), 10, "i8", 0, seed=3, bias=False),  # one row, no bias
             linear((7, 96), 130, "i16", 0, seed=4),            # int16 activations
             linear((13, 17), 5, "u8", 255, seed=5)]            # zp at the range end
    module, inputs = ops_module(specs)
    assert len(kernels_used(module, target)) == len(specs)
    compare(module, inputs, target=target)


@pytest.mark.parametrize("family", ["avx2", pytest.param("vnni", marks=needs_vnni)])
def test_dense_saturation_prone_extremes(family):
    target = family_target(family)
    # x - zp = -255 or +255 against weights all +-127: every vpmaddwd pair sum at its
    # largest; int16 at -32768 against -127 (the only int16 x int8 pair sum near 2^23)
    specs = [linear((6, 200), 16, "i8", 127, seed=6, extreme="min", w_sign=1),
             linear((5, 200), 17, "u8", 0, seed=7, extreme="max", w_sign=-1),
             linear((3, 64), 9, "i16", 0, seed=8, extreme="min", w_sign=-1),
             linear((4, 66), 8, "i16", 0, seed=9, extreme="max", w_sign=1)]
    module, inputs = ops_module(specs)
    assert len(kernels_used(module, target)) == len(specs)
    compare(module, inputs, target=target)


def test_qmatmul_with_a_constant_rhs():
    a, a_ty = activation((2, 3, 40), "i8", -7, seed=10)
    b_u8 = randint(0, 255, 40, 19, seed=11, dtype=np.uint8)  # b - 128 fits int8: kernel
    b_i8 = randint(-128, 127, 40, 19, seed=12)  # b - 100 does not: plain lowering
    specs = [dict(op="qir.qmatmul", x=a, x_ty=a_ty, w=b_u8, w_ty=qtype(b_u8.shape, "u8", 128)),
             dict(op="qir.qmatmul", x=a, x_ty=a_ty, w=b_i8, w_ty=qtype(b_i8.shape, "i8", 100))]
    module, inputs = ops_module(specs)
    assert len(kernels_used(module)) == 1
    compare(module, inputs)


def matmul_case(a_shape, b_shape, sa, za, sb, zb, seed):
    a, a_ty = activation(a_shape, sa, za, seed)
    b, b_ty = activation(b_shape, sb, zb, seed + 1)
    return case("qir.qmatmul", (a, a_ty), (b, b_ty))


def test_batch_matmul_of_two_activations():
    cases = [matmul_case((2, 4, 16, 16), (2, 4, 16, 16), "i8", -3, "u8", 128, 70),  # attention
             matmul_case((3, 7, 9), (3, 9, 21), "u8", 255, "i8", -128, 72),  # odd, zp at ends
             matmul_case((5, 33), (33, 6), "i16", 0, "i8", 4, 74),            # 2-D, int16
             matmul_case((2, 3, 4, 16), (3, 16, 5), "i8", 1, "i8", 2, 76),    # broadcast: plain
             matmul_case((2, 8, 8), (2, 8, 8), "i16", 0, "i16", 0, 78)]       # 2^31: plain
    for a in cases[-1].args:  # small values: the types allow -2^15 x -2^15, not the data
        a[0][...] = randint(-3000, 3000, *a[0].shape, seed=79, dtype=np.int16)
    module, inputs, labels = cases_module(cases)
    assert len(kernels_used(module)) == 3
    compare(module, inputs, labels=labels)


def conv(x_shape, o, k, storage="i8", zp=0, seed=0, stride=1, pad=None, dilation=1,
         groups=1, extreme=None):
    x, x_ty = activation(x_shape, storage, zp, seed, extreme)
    nd = len(x_shape) - 2
    c = x_shape[1]
    w = randint(-127, 127, o, c // groups, *(k,) * nd, seed=seed + 1)
    pad = [k // 2] * 2 * nd if pad is None else pad
    return dict(op=f"qir.qconv{nd}d", x=x, x_ty=x_ty, w=w, w_ty=qtype(w.shape, channels=o),
                bias=randint(-5000, 5000, o, seed=seed + 2, dtype=np.int32),
                attrs={"stride": [stride] * nd, "padding": pad, "dilation": [dilation] * nd,
                       "groups": groups})


@pytest.mark.parametrize("family", ["avx2", pytest.param("vnni", marks=needs_vnni)])
def test_conv_kinds(family):
    target = family_target(family)
    specs = [conv((1, 16, 9, 11), 24, 3, "u8", 128, seed=20),              # 3x3
             conv((2, 10, 7, 13), 33, 1, "i8", -5, seed=21, pad=[0] * 4),   # 1x1, odd O
             conv((1, 3, 12, 12), 10, 3, "i8", 3, seed=22, stride=2),      # first layer
             conv((1, 8, 10, 9), 16, 3, "u8", 9, seed=23, stride=2,
                  pad=[2, 1, 0, 3], dilation=2),                           # asymmetric
             conv((1, 12, 11, 11), 12, 3, "i8", -1, seed=24, groups=12),   # depthwise
             conv((1, 12, 9, 14), 12, 5, "u8", 77, seed=25, stride=2, groups=12,
                  dilation=2),                                             # dw strided
             conv((1, 8, 9, 10), 8, 3, "i8", 4, seed=26, groups=2),        # grouped
             conv((1, 6, 8, 8), 12, 3, "i8", 2, seed=27, groups=6),        # multiplier 2
             conv((2, 6, 29), 9, 3, "u8", 100, seed=28, stride=2)]         # conv1d
    module, inputs = ops_module(specs)
    assert len(kernels_used(module, target)) == len(specs)
    compare(module, inputs, target=target)


@pytest.mark.parametrize("family", ["avx2", pytest.param("vnni", marks=needs_vnni)])
def test_conv_int16_and_extremes(family):
    target = family_target(family)
    specs = [conv((1, 8, 7, 9), 16, 3, "i16", 0, seed=30),
             conv((1, 32, 6, 6), 16, 3, "i8", 127, seed=31, extreme="min"),
             conv((1, 32, 6, 6), 16, 3, "u8", 0, seed=32, extreme="max"),
             conv((1, 16, 9, 9), 16, 3, "u8", 0, seed=33, extreme="max", groups=16),
             conv((1, 16, 9, 9), 16, 3, "i8", 127, seed=34, extreme="min", groups=16),
             conv((1, 8, 9, 9), 8, 3, "i16", 0, seed=35, groups=8)]
    for s in specs[1:5]:  # depthwise with 8-bit x: products reach +-32640, int16's edge
        s["w"] = np.where(s["w"] >= 0, 127, -128).astype(np.int8)
    module, inputs = ops_module(specs)
    assert len(kernels_used(module, target)) == len(specs)
    compare(module, inputs, target=target)


def test_depthwise_products_in_int16_only_where_they_fit():
    from backends.tvm.kernels.conv import depthwise_weight_dtype

    w8 = np.array([-128, 127], np.int8)
    assert depthwise_weight_dtype((-128, 127), 127, w8) == "int16"   # 255 * 128 = 32640
    assert depthwise_weight_dtype((0, 255), 0, w8) == "int16"
    assert depthwise_weight_dtype((-32768, 32767), 0, w8) == "int32"  # int16 inputs
    assert depthwise_weight_dtype((-128, 127), -200, w8) == "int32"   # 327 * 128


def test_kernels_big_enough_to_run_in_parallel():
    """Above common.PARALLEL_WORK multiply-adds the tiles (and repacking) run on the
    thread pool: one case per kernel."""
    specs = [linear((64, 130), 256, "u8", 3, seed=80),
             conv((1, 32, 24, 24), 40, 3, "i8", -2, seed=81),
             conv((1, 96, 40, 40), 96, 3, "u8", 120, seed=82, groups=96)]
    module, inputs = ops_module(specs)
    cases = [matmul_case((4, 64, 80), (4, 80, 72), "i8", 5, "u8", 128, 83)]
    bmm, bmm_inputs, _ = cases_module(cases)
    assert len(kernels_used(module)) == 3 and len(kernels_used(bmm)) == 1
    compare(module, inputs)
    compare(bmm, bmm_inputs)


def test_fallbacks_stay_exact():
    wide = linear((4, 24), 8, "i8", 5, seed=40)
    wide["w"] = randint(-300, 300, 8, 24, seed=41, dtype=np.int16)  # beyond int8
    wide["w_ty"] = TensorType((8, 24), QuantType("i16", "f32", (0.01,) * 8, (0,) * 8,
                                                 None, None, 0))
    centred_wide = linear((4, 24), 8, "i16", 0, seed=42)
    centred_wide["x_ty"] = qtype((4, 24), "i16", -300)  # x - zp leaves int16
    specs = [dict(linear((4, 24), 8, "u8", 128, seed=43), weight_arg=True), wide,
             centred_wide, dict(conv((1, 4, 6, 6), 8, 3, "u8", 3, seed=44), weight_arg=True)]
    module, inputs = ops_module(specs)
    assert kernels_used(module) == []
    compare(module, inputs)


def test_kernels_only_for_llvm_with_avx2():
    module, _ = ops_module([linear((4, 16), 8, seed=50), conv((1, 4, 6, 6), 8, 3, seed=51)])
    assert len(kernels_used(module)) == 2
    # CUDA takes its own kernels (tensor cores, test_tvm_cuda_kernels.py), not these
    assert [n for n in kernels_used(module, cuda_target()) if not n.startswith("qir_tc_")] == []
    no_avx2 = tvm.target.Target({"kind": "llvm", "mcpu": "x86-64"})
    assert kernels_used(module, no_avx2) == []
    mod = to_relax(module)  # no target: target-independent
    assert not [gv for gv in mod.functions if str(gv.name_hint).startswith("qir_")]


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
def test_dense_kernel_alone_against_numpy(dtype):
    """The PrimFunc itself, called directly, on a shape whose tiles are all partial."""
    from backends.tvm.kernels.dense import dense_func, pack_weights

    m, n, k = 11, 19, 45
    lo, hi = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}[dtype]
    x = randint(lo, hi, m, k, seed=60, dtype=np.dtype(dtype))
    w = randint(-128, 127, n, k, seed=61)
    bias = randint(-9, 9, n, seed=62, dtype=np.int32)
    zp = 0 if dtype == "int16" else lo + 100
    lib = tvm.compile(tvm.IRModule({"main": dense_func(m, n, k, dtype).with_attr(
        "global_symbol", "main")}), llvm_target())
    out = tvm.runtime.tensor(np.zeros((m, n), np.int32))
    lib["main"](tvm.runtime.tensor(x), zp, tvm.runtime.tensor(pack_weights(w)),
                tvm.runtime.tensor(bias), out)
    want = (x.astype(np.int64) - zp) @ w.T.astype(np.int64) + bias
    np.testing.assert_array_equal(out.numpy(), want)


@pytest.mark.parametrize("name", ["mobilenet_style", "bert_style"])
def test_every_integer_compute_op_of_a_zoo_model_takes_a_kernel(name):
    """No silent fallback (a kernel that fails to schedule falls back quietly)."""
    _, module = zoo_modules(name)
    compute = [op for op in module.main.ops
               if op.name in ("qir.qconv2d", "qir.qlinear", "qir.qmatmul")]
    with llvm_target():
        script = to_relax(module).script()
    assert compute and script.count("R.call_tir(cls.qir_") == len(compute)


@pytest.mark.parametrize("family", ["avx2", pytest.param("vnni", marks=needs_vnni)])
def test_integer_max_pool_kernel(family):
    """Integer max pools take the kernel (stride phases, planes in parallel): strides,
    dilation, ceil_mode, asymmetric windows, i8 / u8 / i16, a plane big enough to run
    in parallel; exact against the interpreter."""
    pools = [((1, 64, 112, 112), "i8:f32, 0.1:-3", dict(kernel=[3, 3], stride=[2, 2],
                                                        padding=[1, 1])),
             ((2, 5, 13, 11), "u8:f32, 0.1:7", dict(kernel=[3, 2], stride=[2, 2],
                                                    padding=[1, 1], ceil_mode=True)),
             ((1, 3, 17, 19), "i16:f32, 0.001", dict(kernel=[2, 3], stride=[1, 3],
                                                     padding=[0, 1], dilation=[2, 1])),
             ((1, 4, 9, 9), "i8:f32, 0.1", dict(kernel=[3, 3], stride=[3, 3]))]
    args, body, outs, inputs = [], [], [], {}
    for i, (shape, q, attrs) in enumerate(pools):
        storage, rest = q.split(":f32, ")
        scale, _, zp = rest.partition(":")
        ty = TensorType(shape, QuantType(storage, "f32", (float(scale),), (int(zp or 0),)))
        args.append((f"x{i}", ty))
        lo, hi = {"i8": (-128, 127), "u8": (0, 255), "i16": (-32768, 32767)}[q.split(":")[0]]
        inputs[f"x{i}"] = randint(lo, hi, *shape, seed=90 + i, dtype=ty.dtype)
    fn = qir.Function("main", args)
    module = qir.Module()
    module.add_function(fn)
    b = qir.Builder(fn)
    for (shape, q, attrs), a in zip(pools, fn.args):
        outs.append(b.value("qir.max_pool2d", [a], attrs))
    fn.set_outputs(outs)
    qir.verify(module)
    target = family_target(family)
    assert sum(n.startswith("qir_maxpool") for n in kernels_used(module, target)) == 4
    if runs_here(family):
        compare(module, inputs, target=target)


# --- float32 dense with constant weights ------------------------------------------------------


@pytest.mark.parametrize("m,n,k,rank3", [(1, 1024, 256, False), (7, 10, 33, False),
                                         (2 * 16, 96, 64, True), (48, 40, 72, False)])
def test_float_linear_with_constant_weights_runs_the_float_dense_kernel(m, n, k, rank3):
    """qir.linear with a parameter weight: the float dense kernel (rows not a multiple of
    the tile, channels not of the vector), within the float-matmul contract of the
    interpreter (docs/semantics.md: float products are not bit-specified)."""
    from backends.numpy import run
    from backends.tvm import build

    shape = f"2x{m // 2}x{k}" if rank3 else f"{m}x{k}"
    out = f"2x{m // 2}x{n}" if rank3 else f"{m}x{n}"
    module = qir.parse(f"""func @main(%x: tensor<{shape}xf32>) -> (tensor<{out}xf32>) {{
  %w = qir.param {{name = "w"}} : tensor<{n}x{k}xf32>
  %b = qir.param {{name = "b"}} : tensor<{n}xf32>
  %y = qir.linear %x, %w, %b {{clamp_min = 0.0}} : tensor<{out}xf32>
  return %y
}}
""")
    rng = np.random.default_rng(m + n + k)
    module.params.update(w=rng.standard_normal((n, k)).astype(np.float32),
                         b=rng.standard_normal(n).astype(np.float32))
    x = rng.standard_normal(tuple(int(d) for d in shape.split("x"))).astype(np.float32)
    c = build(module, "llvm")
    assert any(name.startswith("qir_fdense") for name in c.signature.kernels)
    got, want = c.run({"x": x})["y"], run(module, {"x": x})["y"]
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


# --- float32 conv with constant weights -------------------------------------------------------


@pytest.mark.parametrize("x_shape,w_shape,stride,padding,dilation", [
    ((1, 3, 17, 15), (8, 3, 3, 3), [2, 2], [1, 1, 1, 1], [1, 1]),  # a stem: stride 2
    ((2, 8, 9, 9), (16, 8, 1, 1), [1, 1], [0, 0, 0, 0], [1, 1]),  # 1x1, batch 2
    ((1, 4, 10, 12), (6, 4, 3, 3), [1, 1], [2, 1, 0, 3], [2, 1]),  # uneven pads, dilated
    ((1, 5, 20), (7, 5, 3), [2], [1, 2], [1]),  # conv1d
])
def test_float_conv_with_constant_weights_runs_the_float_conv_kernel(
        x_shape, w_shape, stride, padding, dilation):
    """qir.conv1d/conv2d with a parameter weight (groups 1): the float conv kernel, within
    the float contract of torch (docs/semantics.md: float convs are not bit-specified)."""
    import torch

    from backends.tvm import build

    rng = np.random.default_rng(sum(x_shape))
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    nd = len(stride)
    pads = [p for i in range(nd) for p in (padding[nd - 1 - i], padding[2 * nd - 1 - i])]
    conv = torch.nn.functional.conv2d if nd == 2 else torch.nn.functional.conv1d
    want = torch.relu(conv(torch.nn.functional.pad(torch.tensor(x), pads), torch.tensor(w),
                           torch.tensor(b), stride=stride, dilation=dilation)).numpy()
    shape = "x".join(map(str, want.shape))
    module = qir.parse(f"""func @main(%x: tensor<{'x'.join(map(str, x_shape))}xf32>) -> (tensor<{shape}xf32>) {{
  %w = qir.param {{name = "w"}} : tensor<{'x'.join(map(str, w_shape))}xf32>
  %b = qir.param {{name = "b"}} : tensor<{w_shape[0]}xf32>
  %y = qir.conv{nd}d %x, %w, %b {{stride = {stride}, padding = {padding}, dilation = {dilation}, clamp_min = 0.0}} : tensor<{shape}xf32>
  return %y
}}
""")
    module.params.update(w=w, b=b)
    c = build(module, "llvm")
    assert any(name.startswith("qir_fconv") for name in c.signature.kernels)
    got = c.run({"x": x})["y"]
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
