"""Elementwise ops, casts and reductions: the TVM build against the numpy interpreter
(floats within 1e-5 of the largest reference magnitude, integers and bools identical)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from tvm_helpers import case, check_cases, rand, randint

from qir.types import TensorType

UNARY = ["qir.relu", "qir.gelu", "qir.silu", "qir.sigmoid", "qir.tanh", "qir.hardswish",
         "qir.hardsigmoid", "qir.elu", "qir.leaky_relu", "qir.softmax", "qir.log_softmax",
         "qir.exp", "qir.erf", "qir.sin", "qir.cos", "qir.neg", "qir.abs", "qir.floor",
         "qir.ceil", "qir.trunc", "qir.round", "qir.sign", "qir.tan", "qir.atan", "qir.sinh",
         "qir.cosh", "qir.asinh", "qir.expm1"]
POSITIVE = ["qir.log", "qir.sqrt", "qir.rsqrt", "qir.reciprocal", "qir.log2", "qir.log10"]
UNIT = ["qir.asin", "qir.acos", "qir.atanh", "qir.log1p"]  # domain (-1, 1)


def test_unary_float_ops():
    x = rand(3, 5, 7, scale=3.0)
    x[0, 0, :3] = [-3.0, 3.0, 0.0]  # hardswish / hardsigmoid kinks
    pos = np.abs(rand(4, 6, seed=1, scale=4.0)) + 0.05
    x[1, 0, :6] = [0.5, -0.5, 2.5, -2.5, 1e-8, -0.0]  # rounding ties, tiny, -0
    cases = [case(name, x) for name in UNARY]
    cases += [case(name, pos) for name in POSITIVE]
    cases += [case(name, np.clip(x / 3.5, -0.99, 0.99)) for name in UNIT]
    cases += [case("qir.acosh", pos + 1)]
    cases += [case("qir.atan2", x, x[::-1].copy()), case("qir.fmod", x * 7, np.abs(x) + 0.5),
              case("qir.remainder", x * 7, np.where(x > 0, 1.3, -0.7).astype(np.float32))]
    cases += [
        case("qir.gelu", x, attrs={"approximate": "tanh"}),
        case("qir.leaky_relu", x, attrs={"negative_slope": 0.2}),
        case("qir.elu", x, attrs={"alpha": 0.7}),
        case("qir.softmax", x, attrs={"axis": 1}),
        case("qir.log_softmax", x, attrs={"axis": 0}),
        case("qir.clamp", x, attrs={"min": -0.5, "max": 1.5}),
        case("qir.clamp", x, attrs={"min": 0.25}),
        case("qir.clamp", x, attrs={"max": 0.0}),
    ]
    check_cases(cases)


def test_softmax_rows_that_are_all_minus_infinity_give_zero():
    x = rand(3, 4)
    x[1] = -np.inf
    x[2, :2] = -np.inf
    check_cases([case("qir.softmax", x), case("qir.log_softmax", x[[0, 2]]),
                 case("qir.softmax", x, attrs={"axis": 0})])


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float64])
def test_other_float_dtypes_compute_like_the_interpreter(dtype):
    """f16/bf16 are computed in f32 and rounded once, f64 in f64."""
    x = rand(4, 9, scale=2.0).astype(dtype)
    y = rand(4, 9, seed=1).astype(dtype)
    cases = [case(n, x) for n in ("qir.gelu", "qir.sigmoid", "qir.softmax", "qir.tanh",
                                  "qir.relu", "qir.exp")]
    cases += [case("qir.add", x, y), case("qir.mul", x, y), case("qir.div", x, y),
              case("qir.reduce_mean", x, attrs={"axes": [1]}), case("qir.gt", x, y),
              case("qir.clamp", x, attrs={"min": -1.0})]
    # Rounding f32 to f16/bf16 can differ by one unit where numpy and TVM differ in the
    # last f32 bit; everything else agrees to float precision.
    rtol = 1e-5 if dtype == np.float64 else 1e-2 if dtype == ml_dtypes.bfloat16 else 2e-3
    check_cases(cases, rtol=rtol)


def test_binary_float_ops_broadcast_and_fused_clamp():
    a, b = rand(2, 1, 5), rand(3, 1, seed=1)
    base = np.abs(rand(2, 3, 5, seed=2)) + 0.1
    names = ["qir.add", "qir.sub", "qir.mul", "qir.div", "qir.maximum", "qir.minimum"]
    cases = [case(n, a, b) for n in names]
    cases += [case("qir.pow", base, b), case("qir.add", a, b, attrs={"clamp_min": 0.0}),
              case("qir.add", a, b, attrs={"clamp_min": -0.5, "clamp_max": 0.5})]
    check_cases(cases)


def test_integer_arithmetic_wraps_and_divides_toward_zero():
    a8, b8 = randint(-128, 127, 64, seed=3), randint(-128, 127, 64, seed=4)
    a = np.array([7, -7, 7, -7, 0, 5, -2147483648, -2147483648, 9, -9], np.int32)
    b = np.array([2, 2, -2, -2, 3, 0, -1, 1, 0, 4], np.int32)
    u = randint(0, 255, 32, seed=5, dtype=np.uint8)
    v = randint(0, 255, 32, seed=6, dtype=np.uint8)
    v[:3] = [0, 255, 1]
    base = np.array([2, -3, 5, 0, 1, -1, 7, 3], np.int32)  # wraps in int32
    expo = np.array([10, 3, 0, 4, 31, 7, 22, 30], np.int32)
    cases = [case(n, a8, b8) for n in ("qir.add", "qir.sub", "qir.mul", "qir.maximum",
                                       "qir.minimum", "qir.div")]
    cases += [case(n, x, y) for n in ("qir.fmod", "qir.remainder")
              for x, y in ((a, b), (b, a), (a8, b8), (u, v))]
    cases += [case("qir.div", a, b), case("qir.div", u, v), case("qir.pow", base, expo),
              case("qir.pow", randint(-3, 3, 16, seed=7), randint(0, 9, 16, seed=8)),
              case("qir.neg", a8), case("qir.abs", a8)]
    check_cases(cases)


def test_comparisons_logical_ops_and_where():
    a, b = rand(3, 4), rand(4, seed=1)
    b[0] = a[0, 0]
    ia, ib = randint(-3, 3, 3, 4, seed=2), randint(-3, 3, 3, 4, seed=3)
    p, q = rand(2, 3, seed=4) > 0, rand(3, seed=5) > 0
    cases = [case(n, a, b) for n in ("qir.eq", "qir.ne", "qir.lt", "qir.le", "qir.gt", "qir.ge")]
    cases += [case("qir.eq", ia, ib), case("qir.lt", ia, ib),
              case("qir.logical_and", p, q), case("qir.logical_or", p, q),
              case("qir.logical_not", p),
              case("qir.where", p, rand(2, 1, seed=6), rand(3, seed=7)),
              case("qir.where", p, ia[:2, :3], ib[:2, :3])]
    check_cases(cases)


def test_casts():
    x = rand(5, 7, scale=50.0)
    x[0, :4] = [-2.7, 2.7, -0.5, 0.0]
    big = randint(-(2**40), 2**40, 20, seed=1, dtype=np.int64)
    tiny = np.array([1e-3, 2.0**-9, 3 * 2.0**-10, 2.0**-7, 1e-10, 300.0, 460.0, 2.0**-17],
                    np.float32)
    fp8 = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn)
    fp8 = fp8[~np.isnan(fp8.astype(np.float32))]
    cases = [case("qir.cast", x, attrs={"to": t}, label=t)
             for t in ("i32", "i8", "bool", "f16", "bf16", "f64", "i64")]
    cases += [case("qir.cast", big, attrs={"to": t}, label=t) for t in ("i8", "i16", "f32")]
    cases += [case("qir.cast", x > 0, attrs={"to": "f32"}),
              case("qir.cast", x.astype(np.float16), attrs={"to": "f32"}),
              case("qir.cast", x.astype(ml_dtypes.bfloat16), attrs={"to": "i32"}),
              case("qir.cast", np.concatenate([tiny, -tiny]), attrs={"to": "f8e4m3"}),
              case("qir.cast", np.concatenate([tiny, -tiny]) * 1e3, attrs={"to": "f8e5m2"}),
              case("qir.cast", fp8, attrs={"to": "f32"})]
    check_cases(cases)


def test_reductions_argmax_cumsum():
    x = rand(3, 4, 5)
    i8 = randint(-128, 127, 6, 7, seed=1)
    ties = np.array([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 1.0, 5.0]], np.float32)
    cases = []
    for name in ("qir.reduce_mean", "qir.reduce_sum", "qir.reduce_max", "qir.reduce_min",
                 "qir.reduce_prod"):
        cases += [case(name, x, attrs={"axes": [1]}),
                  case(name, x, attrs={"axes": [0, -1], "keepdims": True}),
                  case(name, x)]
    cases += [case("qir.reduce_sum", i8, attrs={"axes": [1]}),  # wraps in int8
              case("qir.reduce_prod", i8[:, :3].astype(np.int64), attrs={"axes": [1]}),
              case("qir.reduce_max", i8, attrs={"axes": [0]}),
              case("qir.argmax", x, attrs={"axis": 2}),
              case("qir.argmax", ties, attrs={"axis": 1, "keepdims": True}),
              case("qir.argmax", i8, attrs={"axis": 0}),
              case("qir.cumsum", x, attrs={"axis": 1}),
              case("qir.cumsum", i8, attrs={"axis": -1})]
    check_cases(cases)


def test_observe_is_identity():
    x = rand(2, 3)
    check_cases([case("qir.observe", x, attrs={"id": "o0"})])


def test_quantized_relu_and_clamp_work_on_stored_values():
    from qir.types import QuantType

    q = randint(-128, 127, 2, 3, 4, seed=2)
    per_tensor = TensorType(q.shape, QuantType("i8", "f32", (0.05,), (-7,)))
    per_axis = TensorType(q.shape, QuantType("i8", "f32", (0.05, 0.1, 0.02), (-7, 3, 0),
                                             axis=1))
    u = randint(0, 255, 2, 3, 4, seed=3, dtype=np.uint8)
    u_ty = TensorType(u.shape, QuantType("u8", "f32", (0.1,), (128,)))
    cases = [case("qir.relu", (q, per_tensor), result_types=[per_tensor]),
             case("qir.relu", (q, per_axis), result_types=[per_axis]),
             case("qir.relu", (u, u_ty), result_types=[u_ty]),
             case("qir.clamp", (q, per_axis), attrs={"min": -0.3, "max": 0.6},
                  result_types=[per_axis]),
             case("qir.clamp", (u, u_ty), attrs={"max": 6.0}, result_types=[u_ty])]
    check_cases(cases)


def test_fp8_tensors_compute_in_float32_and_round_like_ml_dtypes():
    a = rand(40, scale=30.0).astype(ml_dtypes.float8_e4m3fn)
    b = rand(40, seed=1, scale=30.0).astype(ml_dtypes.float8_e4m3fn)
    c = rand(40, seed=2, scale=1e3).astype(ml_dtypes.float8_e5m2)
    check_cases([case("qir.add", a, b), case("qir.mul", a, b), case("qir.relu", a),
                 case("qir.clamp", c, attrs={"min": -100.0}), case("qir.sigmoid", c),
                 case("qir.reduce_max", c)])
