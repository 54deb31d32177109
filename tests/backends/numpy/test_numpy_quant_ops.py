"""The integer semantics of the quantization ops (backends/numpy/quant.py), checked on
hand-computed examples and against independent Python-integer / int64 references."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy_helpers import module_from_text, rand, run_op

from backends.numpy import InterpreterError, run
from qir.types import QuantType, TensorType

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def qtype(shape, storage="i8", scales=(1.0,), zps=None, axis=None, block=None, lo=None,
          hi=None) -> TensorType:
    zps = zps if zps is not None else (0,) * len(scales)
    return TensorType(tuple(shape), QuantType(storage, "f32", tuple(scales), tuple(zps), lo, hi,
                                              axis, block))


def quantize(x, ty):
    return run_op("qir.quantize", x, result_types=[ty])


def dequantize(q, ty):
    return run_op("qir.dequantize", (q, ty))


def ref_quantize(x: float, scale: float, zp: int, lo: int, hi: int) -> int:
    """The rule with Python's round (half to even) on the float32 quotient."""
    quotient = float(np.float32(x) / np.float32(scale))
    return min(max(round(quotient) + zp, lo), hi)


# --- quantize / dequantize -----------------------------------------------------------------


def test_quantize_rounds_half_to_even():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5], np.float32)
    np.testing.assert_array_equal(quantize(x, qtype(x.shape)), [0, 2, 2, 0, -2, -2, 4])
    got = quantize(x, qtype(x.shape, zps=(3,)))
    np.testing.assert_array_equal(got, [3, 5, 5, 3, 1, 1, 7])


def test_quantize_divides_in_float32():
    # 0.35f / 0.1f is 3.49999989 exactly, which float32 division rounds to the tie 3.5
    # (-> 4); a float64 division would give 3.
    assert np.rint(np.float64(np.float32(0.35)) / np.float64(np.float32(0.1))) == 3
    x = np.array([0.35], np.float32)
    np.testing.assert_array_equal(quantize(x, qtype((1,), scales=(0.1,))), [4])


def test_quantize_clips_to_the_storage_range():
    x = np.array([1000.0, -1000.0, 126.6, -127.6], np.float32)
    np.testing.assert_array_equal(quantize(x, qtype(x.shape)), [127, -128, 127, -128])
    narrow = qtype(x.shape, lo=-127, hi=127)
    np.testing.assert_array_equal(quantize(x, narrow), [127, -127, 127, -127])
    got = quantize(x, qtype(x.shape, storage="u8", zps=(128,)))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, [255, 0, 255, 0])
    i4 = quantize(x, qtype(x.shape, storage="i4"))
    assert i4.dtype == np.int8
    np.testing.assert_array_equal(i4, [7, -8, 7, -8])


def test_per_axis_quantize_dequantize_round_trip():
    x = rand(3, 4, 5, scale=2.0)
    scales, zps = (0.02, 0.05, 0.011, 0.3), (0, -3, 5, 1)
    ty = qtype(x.shape, scales=scales, zps=zps, axis=1)
    q = quantize(x, ty)
    want = np.empty(x.shape, np.int64)
    for idx in np.ndindex(*x.shape):
        c = idx[1]
        want[idx] = ref_quantize(x[idx], scales[c], zps[c], -128, 127)
    np.testing.assert_array_equal(q, want)
    dq = dequantize(q, ty)
    assert dq.dtype == np.float32
    s32 = np.array(scales, np.float32).reshape(1, 4, 1)
    np.testing.assert_array_equal(dq, (want - np.array(zps).reshape(1, 4, 1)).astype(np.float32)
                                  * s32)
    inside = (want > -128) & (want < 127)
    assert np.all(np.abs(dq - x)[inside] <= np.broadcast_to(s32, x.shape)[inside] / 2 * 1.0001)


def test_per_group_quantize_dequantize_round_trip():
    x = rand(2, 8, scale=3.0)
    # Blocks of 4 along axis 1: a 2x2 grid of scales, flat in row-major order.
    scales, zps = (0.1, 0.02, 0.05, 0.2), (1, -1, 0, 2)
    ty = qtype(x.shape, storage="i4", scales=scales, zps=zps, axis=1, block=4)
    q = quantize(x, ty)
    want = np.empty(x.shape, np.int64)
    for i, j in np.ndindex(*x.shape):
        g = i * 2 + j // 4
        want[i, j] = ref_quantize(x[i, j], scales[g], zps[g], -8, 7)
    np.testing.assert_array_equal(q, want)
    dq = dequantize(q, ty)
    for i, j in np.ndindex(*x.shape):
        g = i * 2 + j // 4
        assert dq[i, j] == np.float32(want[i, j] - zps[g]) * np.float32(scales[g])


@pytest.mark.parametrize("storage, limit, dtype", [("f8e4m3", 448.0, ml_dtypes.float8_e4m3fn),
                                                   ("f8e5m2", 57344.0, ml_dtypes.float8_e5m2)])
def test_fp8_quantize_saturates_and_rounds_to_nearest_even(storage, limit, dtype):
    x = np.array([0.0, 1.0, -3.3, 1e9, -1e9, 0.0123, 17.0, 19.0], np.float32)
    ty = qtype(x.shape, storage=storage, scales=(0.5,))
    q = quantize(x, ty)
    assert q.dtype == dtype
    want = np.clip(x / np.float32(0.5), -limit, limit).astype(dtype)
    np.testing.assert_array_equal(q.astype(np.float32), want.astype(np.float32))
    assert q.astype(np.float32)[3] == limit and q.astype(np.float32)[4] == -limit
    # e4m3 spacing at 32..64 is 4: 34 and 38 are ties that go to the even mantissa.
    if storage == "f8e4m3":
        np.testing.assert_array_equal(q.astype(np.float32)[6:], [32.0, 40.0])
    np.testing.assert_array_equal(dequantize(q, ty), q.astype(np.float32) * np.float32(0.5))


def test_dequantize_to_half_expressed_type():
    ty = TensorType((3,), QuantType("i8", "bf16", (0.1,), (2,)))
    q = np.array([-128, 2, 127], np.int8)
    got = dequantize(q, ty)
    assert got.dtype == ml_dtypes.bfloat16
    want = (np.array([-130, 0, 125], np.float32) * np.float32(0.1)).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(got, want)


# --- requantize -----------------------------------------------------------------------------


def ref_single(x: int, m: int, e: int) -> int:
    return (x * m + (1 << (30 - e))) >> (31 - e)


def ref_gemmlowp(x: int, m: int, e: int) -> int:
    """gemmlowp's MultiplyByQuantizedMultiplier, in Python integers with C division."""
    left, right = max(e, 0), max(-e, 0)
    a = min(max(x * (1 << left), INT32_MIN), INT32_MAX)
    if a == m == INT32_MIN:
        high = INT32_MAX
    else:
        ab = a * m
        v = ab + ((1 << 30) if ab >= 0 else (1 - (1 << 30)))
        high = abs(v) // (1 << 31) * (1 if v >= 0 else -1)  # truncate toward zero
    mask = (1 << right) - 1
    rem = high & mask
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if rem > threshold else 0)


def requantize(x, in_ty, out_ty, **attrs):
    q = out_ty.quant
    attrs.setdefault("output_zp", q.zero_point)
    attrs.setdefault("clamp_min", q.storage_min)
    attrs.setdefault("clamp_max", q.storage_max)
    return run_op("qir.requantize", (x, in_ty), attrs=attrs, result_types=[out_ty])


I32 = lambda *shape: TensorType(shape, "i32")


@pytest.mark.parametrize("rounding, want", [
    # M = 2^30, e = -1: multiply by 0.25.
    #   x:      10   -10    6    -6     5    -5     2   -2
    #  exact:  2.5  -2.5  1.5  -1.5  1.25 -1.25   0.5 -0.5
    ("single", [3, -2, 2, -1, 1, -1, 1, 0]),          # ties toward +inf
    ("gemmlowp", [3, -3, 2, -2, 2, -1, 1, -1]),       # ties away from zero; 1.25 -> 2
])
def test_requantize_rounding_hand_computed(rounding, want):
    x = np.array([10, -10, 6, -6, 5, -5, 2, -2], np.int32)
    got = requantize(x, I32(8), qtype((8,)), multiplier=[2**30], shift=[-1], rounding=rounding)
    np.testing.assert_array_equal(got, want)


def test_requantize_gemmlowp_double_rounding_hand_computed():
    # 5 * 0.25: the high multiply gives 5 * 2^30 / 2^31 = 2.5 -> 3 (ties up), then the
    # rounding shift by one gives 1.5 -> 2. Single rounding gives round(1.25) = 1.
    x = np.array([5], np.int32)
    kw = {"multiplier": [2**30], "shift": [-1]}
    assert requantize(x, I32(1), qtype((1,)), rounding="gemmlowp", **kw)[0] == 2
    assert requantize(x, I32(1), qtype((1,)), rounding="single", **kw)[0] == 1


def test_requantize_e0_ties_both_toward_plus_infinity():
    # e = 0 leaves no rounding shift: gemmlowp's high multiply rounds -2.5 to -2.
    x = np.array([5, -5, 3, -3], np.int32)
    for rounding in ("single", "gemmlowp"):
        got = requantize(x, I32(4), qtype((4,)), multiplier=[2**30], shift=[0],
                         rounding=rounding)
        np.testing.assert_array_equal(got, [3, -2, 2, -1])


@pytest.mark.parametrize("rounding", ["single", "gemmlowp"])
def test_requantize_matches_python_reference(rounding):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(-2**31, 2**31, 300), [INT32_MIN, INT32_MAX, 0, -1, 1]])
    x = x.astype(np.int32)
    for m, e in [(1518500250, -7), (2**31 - 1, 0), (1073741824, 2), (1932735283, -30),
                 (1395864371, -15), (1 << 30, 30), (1717986918, -31)]:
        out_ty = qtype(x.shape, storage="i32", zps=(-7,))
        got = requantize(x, I32(*x.shape), out_ty, multiplier=[m], shift=[e],
                         rounding=rounding)
        ref = ref_single if rounding == "single" else ref_gemmlowp
        want = [min(max(ref(int(v), m, e) - 7, INT32_MIN), INT32_MAX) for v in x]
        np.testing.assert_array_equal(got.astype(np.int64), want, err_msg=f"M={m} e={e}")


def test_requantize_per_channel_with_zero_points_and_clamp():
    x = np.array([[100, -100, 37], [1000, 5, -999]], np.int32)
    in_ty = qtype(x.shape, storage="i16", zps=(3,))
    out_ty = qtype(x.shape, zps=(-5,))
    mult, shift = [1 << 30, 1610612736, 1288490189], [-2, -4, 0]
    got = requantize(x.astype(np.int16), in_ty, out_ty, multiplier=mult, shift=shift, axis=1,
                     input_zp=3, clamp_min=-20, clamp_max=100)
    want = [[min(max(ref_single(int(v) - 3, mult[c], shift[c]) - 5, -20), 100)
             for c, v in enumerate(row)] for row in x]
    np.testing.assert_array_equal(got, want)


# --- integer compute ------------------------------------------------------------------------


def _int8(shape, seed, lo=-128, hi=128, dtype=np.int8):
    return np.random.default_rng(seed).integers(lo, hi, shape).astype(dtype)


@pytest.mark.parametrize("storage, zp_x", [("i8", -7), ("u8", 128), ("i8", 0)])
@pytest.mark.parametrize("stride, pad, dil, groups", [
    ((1, 1), (1, 1, 1, 1), (1, 1), 1), ((2, 1), (0, 2, 1, 0), (1, 2), 2),
    ((1, 1), (1, 1, 1, 1), (1, 1), 4),
])
def test_qconv2d_against_int64_reference(storage, zp_x, stride, pad, dil, groups):
    lo, hi, dtype = (0, 256, np.uint8) if storage == "u8" else (-128, 128, np.int8)
    x = _int8((2, 4, 7, 6), 0, lo, hi, dtype)
    w = _int8((8, 4 // groups, 3, 3), 1, -127, 128)
    b = np.random.default_rng(2).integers(-5000, 5000, 8).astype(np.int32)
    x_ty = qtype(x.shape, storage=storage, scales=(0.05,), zps=(zp_x,))
    w_ty = qtype(w.shape, scales=tuple(np.linspace(0.01, 0.02, 8)), axis=0, lo=-127, hi=127)
    got = run_op("qir.qconv2d", (x, x_ty), (w, w_ty), b,
                 attrs={"stride": list(stride), "padding": list(pad), "dilation": list(dil),
                        "groups": groups})
    assert got.dtype == np.int32
    # int64 reference: pad with zp_x, subtract it, correlate window by window.
    xc = np.pad(x.astype(np.int64), [(0, 0), (0, 0), (pad[0], pad[2]), (pad[1], pad[3])],
                constant_values=zp_x) - zp_x
    n, _, hp, wp = xc.shape
    o, cg, kh, kw = w.shape
    oh = (hp - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wp - dil[1] * (kw - 1) - 1) // stride[1] + 1
    want = np.zeros((n, o, oh, ow), np.int64)
    og = o // groups
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * stride[0], j * stride[1]
            patch = xc[:, :, hs:hs + dil[0] * (kh - 1) + 1:dil[0],
                       ws:ws + dil[1] * (kw - 1) + 1:dil[1]]
            for g in range(groups):
                want[:, g * og:(g + 1) * og, i, j] = np.einsum(
                    "nchw,ochw->no", patch[:, g * cg:(g + 1) * cg],
                    w[g * og:(g + 1) * og].astype(np.int64), dtype=np.int64)
    np.testing.assert_array_equal(got, want + b.reshape(1, -1, 1, 1))


def test_qconv1d_against_int64_reference():
    x, w = _int8((1, 3, 10), 0), _int8((2, 3, 3), 1, -127, 128)
    x_ty, w_ty = qtype(x.shape, zps=(4,)), qtype(w.shape)
    got = run_op("qir.qconv1d", (x, x_ty), (w, w_ty), attrs={"padding": [1, 0]})
    xc = np.pad(x.astype(np.int64), [(0, 0), (0, 0), (1, 0)], constant_values=4) - 4
    want = np.stack([np.einsum("ncl,ocl->no", xc[:, :, i:i + 3], w.astype(np.int64))
                     for i in range(9)], axis=-1)
    np.testing.assert_array_equal(got, want)


def test_qlinear_against_int64_reference():
    x, w = _int8((2, 3, 64), 0, 0, 256, np.uint8), _int8((5, 64), 1, -127, 128)
    b = np.arange(5, dtype=np.int32) * 1000 - 2000
    x_ty = qtype(x.shape, storage="u8", scales=(0.1,), zps=(120,))
    w_ty = qtype(w.shape, scales=(0.01,) * 5, axis=0, lo=-127, hi=127)
    got = run_op("qir.qlinear", (x, x_ty), (w, w_ty), b)
    want = np.einsum("abk,nk->abn", x.astype(np.int64) - 120, w.astype(np.int64),
                     dtype=np.int64) + b
    np.testing.assert_array_equal(got, want)


def test_qlinear_with_int4_group_weights():
    x, w = _int8((3, 16), 0), _int8((4, 16), 1, -8, 8)
    x_ty = qtype(x.shape, zps=(-2,))
    w_ty = qtype(w.shape, storage="i4", scales=(0.1,) * 8, axis=1, block=8)
    got = run_op("qir.qlinear", (x, x_ty), (w, w_ty))
    np.testing.assert_array_equal(got, (x.astype(np.int64) + 2) @ w.astype(np.int64).T)


def test_qmatmul_with_zero_points_on_both_sides():
    a, b = _int8((2, 1, 4, 32), 0), _int8((3, 32, 5), 1, 0, 256, np.uint8)
    a_ty = qtype(a.shape, zps=(-3,))
    b_ty = qtype(b.shape, storage="u8", zps=(131,))
    got = run_op("qir.qmatmul", (a, a_ty), (b, b_ty))
    want = np.matmul(a.astype(np.int64) + 3, b.astype(np.int64) - 131)
    np.testing.assert_array_equal(got, want)


def test_qlinear_int32_overflow_is_an_error():
    k = 70_000  # 255 * 127 * 70000 > 2^31
    x, w = np.full((1, k), 127, np.int8), np.full((1, k), 127, np.int8)
    with pytest.raises(InterpreterError, match="qir.qlinear .*int32 accumulator overflows"):
        run_op("qir.qlinear", (x, qtype(x.shape, zps=(-128,))), (w, qtype(w.shape)))


# --- qadd / qmul ----------------------------------------------------------------------------


def test_qadd_against_python_reference():
    a, b = _int8((3, 1, 5), 0), _int8((4, 1), 1)
    a_ty, b_ty = qtype(a.shape, zps=(-4,), scales=(0.03,)), qtype(b.shape, zps=(9,))
    out_ty = qtype((3, 4, 5), zps=(2,), scales=(0.05,))
    ma, ea, mb, eb = 1288490189, -1, 1503238554, -3
    got = run_op("qir.qadd", (a, a_ty), (b, b_ty), result_types=[out_ty], attrs={
        "lhs_multiplier": ma, "lhs_shift": ea, "rhs_multiplier": mb, "rhs_shift": eb,
        "output_zp": 2, "clamp_min": -100, "clamp_max": 127})
    want = np.empty((3, 4, 5), np.int64)
    for i, j, k in np.ndindex(3, 4, 5):
        ta, tb = (int(a[i, 0, k]) + 4) * ma, (int(b[j, 0]) - 9) * mb
        na, nb = 31 - ea, 31 - eb
        n = max(na, nb)
        s = (ta << (n - na)) + (tb << (n - nb))
        want[i, j, k] = min(max(((s + (1 << (n - 1))) >> n) + 2, -100), 127)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("rounding", ["single", "gemmlowp"])
def test_qmul_against_python_reference(rounding):
    a, b = _int8((2, 6), 0), _int8((6,), 1, 0, 256, np.uint8)
    a_ty, b_ty = qtype(a.shape, zps=(5,)), qtype(b.shape, storage="u8", zps=(128,))
    out_ty = qtype(a.shape, storage="u8", zps=(100,))
    m, e = 1374389535, -6
    got = run_op("qir.qmul", (a, a_ty), (b, b_ty), result_types=[out_ty], attrs={
        "multiplier": m, "shift": e, "output_zp": 100, "clamp_min": 0, "clamp_max": 255,
        "rounding": rounding})
    ref = ref_single if rounding == "single" else ref_gemmlowp
    want = [[min(max(ref((int(a[i, j]) - 5) * (int(b[j]) - 128), m, e) + 100, 0), 255)
             for j in range(6)] for i in range(2)]
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)


# --- data movement on quantized tensors -----------------------------------------------------


def test_quantized_relu_is_max_with_the_zero_point():
    q = np.array([-128, -3, 0, 5, 127], np.int8)
    ty = qtype(q.shape, zps=(2,))
    np.testing.assert_array_equal(run_op("qir.relu", (q, ty), result_types=[ty]),
                                  [2, 2, 2, 5, 127])


def test_quantized_relu_per_axis():
    q = np.array([[-5, 5], [-5, 5]], np.int8)
    ty = qtype(q.shape, scales=(0.1, 0.2), zps=(0, 6), axis=1)
    np.testing.assert_array_equal(run_op("qir.relu", (q, ty), result_types=[ty]),
                                  [[0, 6], [0, 6]])


def test_quantized_clamp_quantizes_its_bounds():
    q = np.arange(-128, 128, 17, dtype=np.int8)
    ty = qtype(q.shape, scales=(0.05,), zps=(-10,))
    # relu6: min 0 -> zp = -10; max 6 -> 6 / 0.05 - 10 = 110.
    got = run_op("qir.clamp", (q, ty), result_types=[ty], attrs={"min": 0.0, "max": 6.0})
    np.testing.assert_array_equal(got, np.clip(q, -10, 110))
    got = run_op("qir.clamp", (q, ty), result_types=[ty], attrs={"max": 1e9})
    np.testing.assert_array_equal(got, q)


def test_quantized_pad_uses_the_quantized_value():
    q = np.ones((1, 2), np.int8)
    ty = qtype(q.shape, scales=(0.5,), zps=(3,))
    out_ty = qtype((1, 4), scales=(0.5,), zps=(3,))
    got = run_op("qir.pad", (q, ty), result_types=[out_ty],
                 attrs={"pads": [0, 1, 0, 1], "value": -1.0})
    np.testing.assert_array_equal(got, [[1, 1, 1, 1]])  # -1 / 0.5 + 3 = 1
    got = run_op("qir.pad", (q, ty), result_types=[out_ty],
                 attrs={"pads": [0, 1, 0, 1], "value": 0.0})
    np.testing.assert_array_equal(got, [[3, 1, 1, 3]])


def test_quantized_max_pool_pads_with_the_storage_minimum():
    q = np.full((1, 1, 3, 3), -100, np.int8)
    q[0, 0, 1, 1] = -90
    ty = qtype(q.shape, zps=(0,))
    out_ty = qtype((1, 1, 2, 2), zps=(0,))
    got = run_op("qir.max_pool2d", (q, ty), result_types=[out_ty],
                 attrs={"kernel": [2, 2], "stride": [2, 2], "padding": [1, 1]})
    np.testing.assert_array_equal(got, [[[[-100, -100], [-100, -90]]]])


def test_quantized_data_movement_keeps_stored_values():
    q = _int8((2, 3, 4), 0)
    ty = qtype(q.shape, zps=(1,))
    got = run_op("qir.permute", (q, ty), attrs={"perm": [2, 0, 1]})
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, q.transpose(2, 0, 1))
    got = run_op("qir.slice", (q, ty), attrs={"axis": 2, "start": 1, "end": -1})
    np.testing.assert_array_equal(got, q[:, :, 1:-1])


# --- a whole quantized block from text ------------------------------------------------------


def _multiplier(real: float) -> tuple[int, int]:
    """(M, e) with real = M * 2^(e - 31) and M in [2^30, 2^31)."""
    mantissa, exponent = math.frexp(real)
    return round(mantissa * 2**31), exponent


def test_quantized_conv_block_tracks_the_float_conv():
    (m0, e0), (m1, e1) = _multiplier(0.03 * 0.004 / 0.05), _multiplier(0.03 * 0.005 / 0.05)
    text = f"""
    !a = !quant.uniform<i8:f32, 0.03:-5>
    !w = !quant.uniform<i8<-127:127>:f32:0, {{0.004, 0.005}}>
    !y = !quant.uniform<i8:f32, 0.05:3>
    func @main(%x: tensor<1x2x6x6xf32>) -> (tensor<1x2x6x6xf32>) {{
      %xq = qir.quantize %x : tensor<1x2x6x6x!a>
      %w = qir.param {{name = "conv.weight"}} : tensor<2x2x3x3x!w>
      %b = qir.param {{name = "conv.bias"}} : tensor<2xi32>
      %acc = qir.qconv2d %xq, %w, %b {{padding = [1, 1, 1, 1]}} : tensor<1x2x6x6xi32>
      %yq = qir.requantize %acc {{multiplier = [{m0}, {m1}], shift = [{e0}, {e1}], axis = 1,
                                 output_zp = 3, clamp_min = -128, clamp_max = 127}}
            : tensor<1x2x6x6x!y>  loc("conv")
      %y = qir.dequantize %yq : tensor<1x2x6x6xf32>
      return %y
    }}
    """
    rng = np.random.default_rng(0)
    wq = rng.integers(-127, 128, (2, 2, 3, 3)).astype(np.int8)
    bias = np.array([100, -200], np.int32)
    m = module_from_text(text, {"conv.weight": wq, "conv.bias": bias})
    x = rng.uniform(-1, 1, (1, 2, 6, 6)).astype(np.float32)
    y = run(m, {"x": x})["y"]
    # The float computation it approximates: x within 0.015, output step 0.05.
    w_real = wq.astype(np.float32) * np.array([0.004, 0.005], np.float32).reshape(2, 1, 1, 1)
    b_real = (bias * 0.03 * np.array([0.004, 0.005])).astype(np.float32)
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(w_real), torch.from_numpy(b_real),
                    padding=1).numpy()
    assert np.max(np.abs(y - want)) < 0.05
    assert np.mean(np.abs(y - want)) < 0.02
