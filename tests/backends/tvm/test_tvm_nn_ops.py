"""Convolution, linear/matmul, normalisation, embedding, attention and pooling: the TVM
build against the numpy interpreter (within 1e-5 of the largest reference magnitude)."""

from __future__ import annotations

import numpy as np
from tvm_helpers import case, check_cases, rand, randint

CONV2D = [
    # (N, C, H, W, O, kernel, stride, padding [t, l, b, r], dilation, groups, bias)
    (2, 3, 9, 8, 4, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, True),
    (1, 3, 10, 11, 5, (3, 2), (2, 3), (1, 2, 1, 2), (1, 1), 1, False),
    (1, 4, 12, 12, 6, (3, 3), (1, 2), (2, 2, 2, 2), (2, 3), 2, True),
    (2, 8, 7, 9, 8, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 8, True),    # depthwise
    (1, 4, 9, 9, 8, (5, 5), (2, 2), (2, 2, 2, 2), (1, 1), 4, False),   # depthwise x2
    (1, 1, 6, 7, 3, (3, 3), (1, 1), (0, 1, 2, 0), (1, 1), 1, True),    # asymmetric pads
]


def conv2d_case(c, seed=0, **attrs):
    n, ch, h, w, o, k, stride, pad, dil, groups, bias = c
    args = [rand(n, ch, h, w, seed=seed), rand(o, ch // groups, *k, seed=seed + 1)]
    if bias:
        args.append(rand(o, seed=seed + 2))
    return case("qir.conv2d", *args, attrs={"stride": list(stride), "padding": list(pad),
                                            "dilation": list(dil), "groups": groups, **attrs})


def test_convolutions():
    cases = [conv2d_case(c, seed=i) for i, c in enumerate(CONV2D)]
    cases.append(conv2d_case(CONV2D[0], clamp_min=0.0, clamp_max=0.5))
    cases += [case("qir.conv1d", rand(2, 4, 17), rand(6, 4, 3, seed=1), rand(6, seed=2)),
              case("qir.conv1d", rand(1, 6, 20), rand(6, 2, 5, seed=3),
                   attrs={"stride": [2], "padding": [2, 1], "dilation": [2], "groups": 3}),
              case("qir.conv1d", rand(1, 6, 12), rand(6, 1, 3, seed=4),
                   attrs={"padding": [1, 1], "groups": 6, "clamp_min": 0.0})]
    check_cases(cases)


def test_linear_and_matmul():
    cases = [case("qir.linear", rand(4, 16), rand(8, 16, seed=1), rand(8, seed=2)),
             case("qir.linear", rand(2, 3, 16), rand(5, 16, seed=3),
                  attrs={"clamp_min": 0.0, "clamp_max": 6.0}),
             case("qir.matmul", rand(2, 3, 4, 5), rand(3, 5, 6, seed=4)),  # batch broadcast
             case("qir.matmul", rand(5), rand(2, 5, 3, seed=5)),            # 1-d lhs
             case("qir.matmul", rand(2, 4, 5), rand(5, seed=6)),            # 1-d rhs
             case("qir.matmul", rand(3, 4), rand(4, 2, seed=7), attrs={"clamp_max": 0.1})]
    check_cases(cases)


def test_normalisations():
    x = rand(2, 6, 5, 4, scale=3.0) + 10.0  # a large mean: two-pass variance matters
    var = np.abs(rand(6, seed=1)) + 0.5
    cases = [case("qir.batch_norm", x, rand(6, seed=2), var, rand(6, seed=3), rand(6, seed=4)),
             case("qir.batch_norm", x, rand(6, seed=2), var, attrs={"eps": 1e-3}),
             case("qir.batch_norm", rand(3, 5, 6), rand(6, seed=5), var, attrs={"axis": -1}),
             case("qir.layer_norm", x, rand(4, seed=6), rand(4, seed=7)),
             case("qir.layer_norm", x, rand(5, 4, seed=8), attrs={"normalized_ndim": 2}),
             case("qir.layer_norm", rand(3, 8, seed=9), attrs={"eps": 1e-6}),
             case("qir.group_norm", x, rand(6, seed=10), rand(6, seed=11),
                  attrs={"groups": 3}),
             case("qir.group_norm", rand(2, 4, 7, seed=12), attrs={"groups": 2})]
    check_cases(cases)


def test_embedding():
    table = rand(10, 4)
    ids = np.array([[0, 9, 3], [3, 3, 1]], np.int64)
    check_cases([case("qir.embedding", table, ids),
                 case("qir.embedding", table, ids.astype(np.int32))])


def test_attention():
    q, k, v = rand(2, 3, 5, 8), rand(2, 3, 6, 8, seed=1), rand(2, 3, 6, 4, seed=2)
    keep = rand(2, 1, 5, 6, seed=3) > 0
    keep[0, 0, 2] = False  # a fully masked row gives 0
    additive = rand(5, 6, seed=4)
    square = rand(1, 2, 6, 8, seed=5)
    cases = [case("qir.scaled_dot_product_attention", q, k, v),
             case("qir.scaled_dot_product_attention", q, k, v, keep),
             case("qir.scaled_dot_product_attention", q, k, v, additive,
                  attrs={"scale": 0.3}),
             case("qir.scaled_dot_product_attention", square, square, square,
                  attrs={"is_causal": True}),
             case("qir.scaled_dot_product_attention", q[0], k[0], v[0],
                  attrs={"is_causal": True})]  # 5x6: top-left aligned triangle
    check_cases(cases)


POOLS = [
    # (kernel, stride, padding, ceil_mode)
    ((2, 2), [], (0, 0), False),
    ((3, 3), (2, 2), (1, 1), False),
    ((3, 3), (2, 2), (1, 1), True),
    ((3, 2), (2, 3), (1, 0), True),
    ((2, 2), (3, 3), (0, 0), True),
]


def test_pooling():
    x = rand(2, 3, 9, 10, scale=2.0)
    cases = []
    for kernel, stride, pad, ceil in POOLS:
        attrs = {"kernel": list(kernel), "stride": list(stride), "padding": list(pad),
                 "ceil_mode": ceil}
        cases.append(case("qir.max_pool2d", x, attrs=attrs))
        for include in (True, False):
            cases.append(case("qir.avg_pool2d", x, attrs={**attrs,
                                                          "count_include_pad": include}))
    cases += [case("qir.max_pool2d", x, attrs={"kernel": [3, 3], "stride": [1, 1],
                                               "padding": [1, 1], "dilation": [2, 2]}),
              case("qir.avg_pool2d", x, attrs={"kernel": [3, 3], "padding": [1, 1],
                                               "divisor_override": 5}),
              case("qir.adaptive_avg_pool2d", x, attrs={"output_size": [1, 1]}),
              case("qir.adaptive_avg_pool2d", x, attrs={"output_size": [4, 3]}),
              case("qir.adaptive_avg_pool2d", x, attrs={"output_size": [9, 10]}),
              # windows of unequal length (9 -> 5: 2 or 3 rows; 10 -> 7: 2 or 3 columns)
              case("qir.adaptive_avg_pool2d", x, attrs={"output_size": [5, 7]}),
              case("qir.adaptive_avg_pool2d", x, attrs={"output_size": [2, 10]})]
    check_cases(cases)


def test_quantized_max_pool_pads_with_the_storage_minimum():
    from qir.types import QuantType, TensorType

    q = randint(-128, 127, 1, 2, 7, 7, seed=1)
    ty = TensorType(q.shape, QuantType("i8", "f32", (0.1,), (5,)))
    u = randint(0, 255, 1, 2, 7, 7, seed=2, dtype=np.uint8)
    uty = TensorType(u.shape, QuantType("u8", "f32", (0.1,), (100,), storage_min=10))
    attrs = {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1], "ceil_mode": True}
    check_cases([case("qir.max_pool2d", (q, ty), attrs=attrs,
                      result_types=[ty.with_shape((1, 2, 4, 4))]),
                 case("qir.max_pool2d", (np.maximum(u, 10), uty), attrs=attrs,
                      result_types=[uty.with_shape((1, 2, 4, 4))])])
