"""The integer ops, bit for bit: quantize, dequantize, requantize (both roundings,
per-channel), qadd, qmul, qconv/qlinear/qmatmul with zero points, and fp8. Every output
of the TVM build must equal the numpy interpreter's exactly (docs/semantics.md)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from tvm_helpers import case, check_cases, compare, rand, randint

import qir
from qir.types import QuantType, TensorType

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def qtype(shape, storage="i8", scales=(1.0,), zps=None, axis=None, block=None, lo=None,
          hi=None, expressed="f32") -> TensorType:
    zps = zps if zps is not None else (0,) * len(scales)
    return TensorType(tuple(shape), QuantType(storage, expressed, tuple(scales), tuple(zps),
                                              lo, hi, axis, block))


def I32(*shape) -> TensorType:
    return TensorType(shape, "i32")


# --- quantize / dequantize ------------------------------------------------------------------


def test_quantize_ties_division_and_clipping():
    ties = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 0.49999997, -126.5, 126.5],
                    np.float32)
    # random values that are exact ties of scale 0.25 (k/8): half of them tie
    k = randint(-2000, 2000, 4000, seed=1, dtype=np.int64)
    exact_ties = (k / 8).astype(np.float32)
    wide = rand(1000, seed=2, scale=500.0)
    wide[:6] = [np.inf, -np.inf, 3e38, -3e38, 1e-30, -0.0]
    x35 = np.array([0.35], np.float32)  # 0.35f / 0.1f is the f32 tie 3.5 -> 4
    cases = [case("qir.quantize", ties, result_types=[qtype(ties.shape)]),
             case("qir.quantize", ties, result_types=[qtype(ties.shape, zps=(3,))]),
             case("qir.quantize", exact_ties, result_types=[qtype(k.shape, scales=(0.25,),
                                                                  zps=(-5,))]),
             case("qir.quantize", x35, result_types=[qtype((1,), scales=(0.1,))]),
             case("qir.quantize", wide, result_types=[qtype(wide.shape, scales=(0.7,),
                                                            lo=-127, hi=127)]),
             case("qir.quantize", wide, result_types=[qtype(wide.shape, "u8", (0.3,),
                                                            (128,))]),
             case("qir.quantize", wide, result_types=[qtype(wide.shape, "i4", (20.0,))]),
             case("qir.quantize", wide, result_types=[qtype(wide.shape, "u4", (40.0,),
                                                            (8,))]),
             case("qir.quantize", wide, result_types=[qtype(wide.shape, "i16", (0.01,),
                                                            (-300,))]),
             case("qir.quantize", wide, result_types=[qtype(wide.shape, "i32", (1e-7,),
                                                            (12345,))])]
    check_cases(cases)


def test_quantize_per_axis_per_group_and_other_input_dtypes():
    x = rand(3, 4, 8, scale=2.0)
    per_axis = qtype(x.shape, scales=(0.02, 0.05, 0.011, 0.3), zps=(0, -3, 5, 1), axis=1)
    per_group = qtype(x.shape, "i4", scales=tuple(np.linspace(0.1, 0.5, 48)),
                      zps=tuple(range(-4, 4)) * 6, axis=2, block=2)
    cases = [case("qir.quantize", x, result_types=[per_axis]),
             case("qir.quantize", x, result_types=[per_group]),
             case("qir.quantize", x.astype(np.float16),
                  result_types=[qtype(x.shape, scales=(0.03,), expressed="f16")]),
             case("qir.quantize", x.astype(ml_dtypes.bfloat16),
                  result_types=[qtype(x.shape, scales=(0.03,), expressed="bf16")])]
    check_cases(cases)


def test_dequantize():
    q8 = randint(-128, 127, 3, 4, 8, seed=3)
    u8 = randint(0, 255, 3, 4, 8, seed=4, dtype=np.uint8)
    q32 = randint(INT32_MIN, INT32_MAX, 64, seed=5, dtype=np.int32)
    q32[:2] = [INT32_MIN, INT32_MAX]
    cases = [case("qir.dequantize", (q8, qtype(q8.shape, scales=(0.0235,), zps=(-3,)))),
             case("qir.dequantize", (u8, qtype(u8.shape, "u8", (0.05,), (128,)))),
             case("qir.dequantize", (q8, qtype(q8.shape, scales=(0.1, 0.2, 0.3, 0.4),
                                               zps=(1, 2, 3, -4), axis=1))),
             case("qir.dequantize", (q8 // 16, qtype(q8.shape, "i4",
                                                     tuple(np.linspace(0.1, 0.9, 12)),
                                                     axis=2, block=8))),
             case("qir.dequantize", (q32, qtype(q32.shape, "i32", (1e-4,), (-2**31 + 5,)))),
             case("qir.dequantize", (q8, qtype(q8.shape, scales=(0.1,), zps=(2,),
                                               expressed="bf16"))),
             case("qir.dequantize", (q8, qtype(q8.shape, scales=(0.1,), expressed="f16")))]
    check_cases(cases)


@pytest.mark.parametrize("storage, limit", [("f8e4m3", 448.0), ("f8e5m2", 57344.0)])
def test_fp8_quantize_dequantize(storage, limit):
    x = rand(2000, seed=6, scale=3.0)
    x[:8] = [0.0, 1e9, -1e9, 17.0, 19.0, 1e-3, -1e-4, 0.0123]
    small = rand(500, seed=7, scale=1e-3)  # subnormals of the fp8 formats
    ty = qtype(x.shape, storage, (0.5,))
    codes = np.arange(256, dtype=np.uint8).view(ty.dtype)
    cases = [case("qir.quantize", x, result_types=[ty]),
             case("qir.quantize", small, result_types=[qtype(small.shape, storage, (0.5,))]),
             case("qir.quantize", x, result_types=[qtype(x.shape, storage, (limit / 1e3,))]),
             case("qir.dequantize", (codes, qtype(codes.shape, storage, (0.25,))))]
    # data movement and relu/clamp/max_pool2d on fp8 storage
    q = (rand(1, 2, 5, 5, seed=8, scale=50.0)).astype(ty.dtype)
    q_ty = qtype(q.shape, storage, (0.5,))
    cases += [case("qir.relu", (q, q_ty), result_types=[q_ty]),
              case("qir.clamp", (q, q_ty), attrs={"min": -3.3, "max": 7.1},
                   result_types=[q_ty]),
              case("qir.pad", (q, q_ty), attrs={"pads": [0, 0, 1, 0, 0, 0, 0, 2],
                                                "value": 1.3},
                   result_types=[q_ty.with_shape((1, 2, 6, 7))]),
              case("qir.max_pool2d", (q, q_ty), attrs={"kernel": [2, 2], "padding": [1, 1]},
                   result_types=[q_ty.with_shape((1, 2, 3, 3))]),
              case("qir.permute", (q, q_ty), attrs={"perm": [0, 1, 3, 2]},
                   result_types=[q_ty])]
    check_cases(cases)


# --- requantize -----------------------------------------------------------------------------


def rq(x, in_ty, out_ty, **attrs):
    q = out_ty.quant
    attrs.setdefault("output_zp", q.zero_point)
    attrs.setdefault("clamp_min", q.storage_min)
    attrs.setdefault("clamp_max", q.storage_max)
    return case("qir.requantize", (x, in_ty), attrs=attrs, result_types=[out_ty],
                label=str(attrs.get("rounding", "single")))


@pytest.mark.parametrize("rounding", ["single", "gemmlowp"])
def test_requantize_random_with_ties_and_negatives(rounding):
    rng = np.random.default_rng(11)
    cases = []
    # ties: m = 2^-k exactly (M = 2^30, e = 1 - k) on consecutive integers
    x = np.arange(-40, 41, dtype=np.int32)
    for e in (0, -1, -2, -5):
        cases.append(rq(x, I32(x.size), qtype(x.shape), multiplier=[2**30], shift=[e],
                        rounding=rounding))
    # random multipliers over the whole exponent range, values that cannot overflow
    for e in (-31, -20, -9, -1, 0, 1, 7, 15, 30):
        m = int(rng.integers(2**30, 2**31))
        xr = rng.integers(INT32_MIN, INT32_MAX, 512, endpoint=True).astype(np.int32)
        xr[:4] = [INT32_MIN, INT32_MAX, -1, 1]
        out = qtype(xr.shape, "i32", zps=(-7,))
        cases.append(rq(xr, I32(xr.size), out, multiplier=[m], shift=[e], rounding=rounding))
    # a quantized input with a zero point, a narrow output and a fused relu
    q = randint(-32768, 32767, 300, seed=12, dtype=np.int16)
    in_ty = qtype(q.shape, "i16", (0.001,), (-17,))
    out_ty = qtype(q.shape, "u8", (0.04,), (100,))
    cases.append(rq(q, in_ty, out_ty, multiplier=[1717986918], shift=[-5], input_zp=-17,
                    clamp_min=100, rounding=rounding))
    check_cases(cases)


@pytest.mark.parametrize("rounding", ["single", "gemmlowp"])
def test_requantize_per_channel(rounding):
    rng = np.random.default_rng(13)
    x = rng.integers(-(2**22), 2**22, (2, 5, 3, 4)).astype(np.int32)
    mult = rng.integers(2**30, 2**31, 5).tolist()
    shift = [-12, -3, 0, 2, -31]
    cases = [rq(x, I32(*x.shape), qtype(x.shape, zps=(4,)), multiplier=mult, shift=shift,
                axis=1, rounding=rounding),
             rq(x, I32(*x.shape), qtype(x.shape, "i16", zps=(-2,)), multiplier=mult[:4],
                shift=shift[:4], axis=3, clamp_min=-2, clamp_max=1000, rounding=rounding)]
    check_cases(cases)


# --- qadd / qmul ---------------------------------------------------------------------------------


def test_qadd_random():
    rng = np.random.default_rng(14)
    cases = []
    for i, (sa, sb, so) in enumerate([("i8", "i8", "i8"), ("u8", "i8", "u8"),
                                      ("i16", "i8", "i16"), ("i8", "u8", "i8")]):
        a = rng.integers(*((-128, 128) if sa == "i8" else (0, 256) if sa == "u8"
                           else (-32768, 32768)), (3, 4, 5)).astype(qtype((1,), sa).dtype)
        b = rng.integers(*((-128, 128) if sb == "i8" else (0, 256)), (4, 1)).astype(
            qtype((1,), sb).dtype)
        a_ty, b_ty = qtype(a.shape, sa, (0.03,), (int(a.min() // 4),)), qtype(b.shape, sb,
                                                                             (0.05,), (9,))
        out = qtype((3, 4, 5), so, (0.05,), (2 if so != "u8" else 120,))
        ea = int(rng.integers(-8, 1))
        eb = ea + int(rng.integers(-15, 16))
        eb = max(-31, min(30, eb))
        q = out.quant
        lo = q.zero_point if i == 1 else q.storage_min  # a fused relu on one case
        cases.append(case("qir.qadd", (a, a_ty), (b, b_ty), result_types=[out], attrs={
            "lhs_multiplier": int(rng.integers(2**30, 2**31)), "lhs_shift": ea,
            "rhs_multiplier": int(rng.integers(2**30, 2**31)), "rhs_shift": eb,
            "output_zp": q.zero_point, "clamp_min": lo, "clamp_max": q.storage_max}))
    check_cases(cases)


def test_qadd_with_its_shift_below_32():
    """n = max(n_a, n_b) < 32: raised to 32 (fixed_point.Add.shift) where no term can
    leave int64, else the int64 shift; every value of a and b, both rounding
    directions."""
    from backends.tvm.fixed_point import Add

    a = np.arange(-128, 128, dtype=np.int8).reshape(16, 16)
    b = np.arange(0, 256, dtype=np.int32).astype(np.uint8).reshape(16, 16).T.copy()
    wide = randint(-32768, 32767, 16, 16, seed=17, dtype=np.int16)
    cases = []
    for x, sx, ea, eb in ((a, "i8", 5, 3), (a, "i8", 0, 1), (a, "i8", 12, 15),
                          (wide, "i16", 30, 20)):
        x_ty, b_ty = qtype(x.shape, sx, (0.03,), (-3,)), qtype(b.shape, "u8", (0.05,), (7,))
        out = qtype(x.shape, sx, (0.05,), (2,))
        q = out.quant
        attrs = {"lhs_multiplier": 1518500250, "lhs_shift": ea,
                 "rhs_multiplier": 1073741825, "rhs_shift": eb, "output_zp": 2,
                 "clamp_min": q.storage_min, "clamp_max": q.storage_max}
        cases.append(case("qir.qadd", (x, x_ty), (b, b_ty), result_types=[out], attrs=attrs))
    span16 = Add(0, 0, 1518500250, 1073741825, 1, 11, 0, -128, 127, "int16", 2**16)
    assert Add(0, 0, 1518500250, 1073741825, 26, 28, 0, -128, 127, "int8", 256).shift() == 32
    assert span16.shift() == 11  # 2^16 * 2^31 * 2^31 would leave int64: left alone
    check_cases(cases)


@pytest.mark.parametrize("rounding", ["single", "gemmlowp"])
def test_qmul_random(rounding):
    a = randint(-128, 127, 3, 4, seed=15)
    b = randint(0, 255, 4, seed=16, dtype=np.uint8)
    a_ty, b_ty = qtype(a.shape, zps=(5,)), qtype(b.shape, "u8", zps=(128,))
    out = qtype(a.shape, "u8", zps=(100,))
    cases = [case("qir.qmul", (a, a_ty), (b, b_ty), result_types=[out], attrs={
        "multiplier": m, "shift": e, "output_zp": 100, "clamp_min": 0, "clamp_max": 255,
        "rounding": rounding}) for m, e in ((1073741824, -3), (1518500250, -9),
                                            (2147483647, 2))]
    check_cases(cases)


# --- integer compute -------------------------------------------------------------------------


def int_module(op_name, x, x_ty, w, w_ty, bias=None, attrs=None, weight_as_param=True):
    """@main(x) running one integer compute op whose weight (and bias) are module params
    (the lowering folds zp_x * sum(w) from them) or, with weight_as_param=False, arguments
    (the sum is computed at run time)."""
    args = [("x", x_ty)] + ([] if weight_as_param else [("w", w_ty)])
    fn = qir.Function("main", args)
    module = qir.Module()
    module.add_function(fn)
    b = qir.Builder(fn)
    inputs = {"x": x}
    if weight_as_param:
        module.params["w"] = w
        w_val = b.create("qir.param", [], {"name": "w"}, [w_ty]).result
    else:
        w_val = fn.args[1]
        inputs["w"] = w
    operands = [fn.args[0], w_val]
    if bias is not None:
        module.params["b"] = bias
        operands.append(b.create("qir.param", [], {"name": "b"},
                                 [TensorType(bias.shape, "i32")]).result)
    op = b.create(op_name, operands, attrs or {})
    fn.set_outputs(op.results)
    qir.verify(module)
    return module, inputs


QCONV = [
    # (storage, zp_x, stride, padding, dilation, groups)
    ("u8", 128, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ("i8", -5, (2, 1), (2, 1, 0, 3), (1, 2), 2),
    ("i8", 0, (1, 1), (1, 1, 1, 1), (1, 1), 8),     # depthwise, symmetric input
    ("u8", 3, (1, 2), (1, 1, 1, 1), (2, 1), 8),     # depthwise with zero point
    ("i16", -300, (1, 1), (1, 0, 1, 0), (1, 1), 1),
]


@pytest.mark.parametrize("weight_as_param", [True, False])
@pytest.mark.parametrize("storage, zp_x, stride, pad, dil, groups", QCONV)
def test_qconv2d(storage, zp_x, stride, pad, dil, groups, weight_as_param):
    lo, hi = {"u8": (0, 255), "i8": (-128, 127), "i16": (-2000, 2000)}[storage]
    x_ty = qtype((2, 8, 9, 10), storage, (0.05,), (zp_x,))
    x = randint(lo, hi, 2, 8, 9, 10, seed=20, dtype=x_ty.dtype)
    w = randint(-127, 127, 8, 8 // groups, 3, 3, seed=21)
    w_ty = qtype(w.shape, scales=tuple(np.linspace(0.01, 0.02, 8)), axis=0, lo=-127, hi=127)
    bias = randint(-5000, 5000, 8, seed=22, dtype=np.int32)
    module, inputs = int_module("qir.qconv2d", x, x_ty, w, w_ty, bias, {
        "stride": list(stride), "padding": list(pad), "dilation": list(dil),
        "groups": groups}, weight_as_param)
    compare(module, inputs)


def test_qconv1d_and_qlinear_and_qmatmul():
    x = randint(0, 255, 2, 6, 11, seed=23, dtype=np.uint8)
    x_ty = qtype(x.shape, "u8", (0.1,), (131,))
    w = randint(-127, 127, 4, 3, 3, seed=24)
    w_ty = qtype(w.shape, scales=(0.02,) * 4, axis=0)
    compare(*int_module("qir.qconv1d", x, x_ty, w, w_ty, None,
                        {"padding": [2, 1], "groups": 2, "stride": [2]}))
    for storage, zp in (("u8", 120), ("i8", -3), ("i16", 2500), ("i8", 0)):
        xl_ty = qtype((2, 3, 32), storage, (0.1,), (zp,))
        lo, hi = {"u8": (0, 255), "i8": (-128, 127), "i16": (-3000, 6000)}[storage]
        xl = randint(lo, hi, 2, 3, 32, seed=25, dtype=xl_ty.dtype)
        wl = randint(-127, 127, 5, 32, seed=26)
        wl_ty = qtype(wl.shape, scales=(0.01,) * 5, axis=0, lo=-127, hi=127)
        bl = randint(-10**5, 10**5, 5, seed=27, dtype=np.int32)
        for as_param in (True, False):
            compare(*int_module("qir.qlinear", xl, xl_ty, wl, wl_ty, bl,
                                weight_as_param=as_param))
    # int4 group-quantized weights
    w4 = randint(-8, 7, 6, 16, seed=28)
    w4_ty = qtype(w4.shape, "i4", scales=(0.1,) * 12, axis=1, block=8)
    compare(*int_module("qir.qlinear", xl[..., :16], qtype((2, 3, 16), "i8", (0.1,), (0,)),
                        w4, w4_ty))
    a = randint(-128, 127, 2, 3, 4, 16, seed=29)
    b = randint(0, 255, 3, 16, 5, seed=30, dtype=np.uint8)
    check_cases([case("qir.qmatmul", (a, qtype(a.shape, zps=(-3,))),
                      (b, qtype(b.shape, "u8", zps=(131,)))),
                 case("qir.qmatmul", (a, qtype(a.shape)), (a[0, 0].T.copy(), qtype((16, 4)))),
                 case("qir.qmatmul", (b[0].astype(np.int16) * 50,
                                      qtype((16, 5), "i16", zps=(7,))),
                      (b[1, :5].astype(np.int16) - 100, qtype((5, 5), "i16", zps=(-9,))))])
