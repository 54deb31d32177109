"""qir.scatter, qir.sort and qir.topk: the TVM build equals the numpy interpreter bit for
bit (scatters apply their updates in the same row-major order; sorts are stable)."""

from __future__ import annotations

import numpy as np
import pytest
from tvm_helpers import case, check_cases, rand, randint

from qir.types import QuantType, TensorType


def _dups(n: int, shape, seed: int) -> np.ndarray:
    """Indices with many repeats (and negative ones) so the order of updates matters."""
    idx = randint(-n, n - 1, *shape, seed=seed, dtype=np.int64)
    return idx


@pytest.mark.parametrize("reduce", ["none", "add", "mul", "max", "min"])
def test_scatter_applies_updates_in_row_major_order(reduce):
    x = rand(4, 6, scale=3.0)
    flat_x = rand(40, seed=1)
    idx = _dups(6, (4, 9), seed=2)
    upd = rand(4, 9, seed=3, scale=5.0)
    flat_idx = _dups(40, (200,), seed=4)
    flat_upd = rand(200, seed=5)
    i8 = randint(-20, 20, 30, seed=6)
    cases = [case("qir.scatter", x, idx[:, :6].copy(), upd[:, :6].copy(),
                  attrs={"axis": 1, "reduce": reduce}),
             case("qir.scatter", x.T.copy(), idx[:, :6].T.copy(), upd[:, :6].T.copy(),
                  attrs={"axis": 0, "reduce": reduce}),
             case("qir.scatter", flat_x, flat_idx, flat_upd,
                  attrs={"axis": 0, "reduce": reduce}),
             case("qir.scatter", i8, _dups(30, (50,), seed=7), randint(-3, 3, 50, seed=8),
                  attrs={"axis": 0, "reduce": reduce})]
    check_cases(cases, rtol=0.0)


def test_scatter_f16_combines_in_float32():
    x = rand(64, scale=100.0).astype(np.float16)
    check_cases([case("qir.scatter", x, _dups(64, (300,), seed=1),
                      rand(300, seed=2, scale=100.0).astype(np.float16),
                      attrs={"axis": 0, "reduce": "add"})], rtol=0.0)


def test_sort_and_topk_are_stable_and_match():
    x = rand(3, 5, 8, scale=2.0)
    ties = np.round(rand(4, 16, seed=1) * 2).astype(np.float32)  # many equal values
    i8 = randint(-5, 5, 6, 10, seed=2)
    cases = []
    for v in (x, ties, i8):
        for desc in (False, True):
            cases += [case("qir.sort", v, attrs={"axis": -1, "descending": desc}),
                      case("qir.sort", v, attrs={"axis": 0, "descending": desc}),
                      case("qir.topk", v, attrs={"k": 3, "axis": -1, "largest": desc}),
                      case("qir.topk", v, attrs={"k": 2, "axis": 1, "largest": desc})]
    check_cases(cases, rtol=0.0)


def test_sort_keeps_a_quantized_type():
    vals = randint(-128, 127, 2, 7, seed=3)
    q = TensorType(vals.shape, QuantType("i8", "f32", (0.05,), (3,)))
    check_cases([case("qir.sort", (vals, q), attrs={"descending": True}),
                 case("qir.topk", (vals, q), attrs={"k": 4})], rtol=0.0)
