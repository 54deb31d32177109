"""qir/floatmath.py's formulas (run on numpy arrays) against float64 references: every
backend computes these bits, so they must be accurate as well as reproducible."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

from backends.numpy.elementwise import erf as erf64
from backends.numpy.floatmath import ARITH, seq_matmul, seq_mean, seq_sum
from qir import floatmath


def _grid() -> np.ndarray:
    """Dense values over the interesting ranges, the branch points and special values."""
    rng = np.random.default_rng(0)
    parts = [np.linspace(-20, 20, 200_001), rng.standard_normal(50_000) * 3,
             np.geomspace(1e-30, 1e2, 4001), -np.geomspace(1e-30, 1e2, 4001),
             [0.0, -0.0, 0.625, -0.625, 1.0, -1.0, 8.0, -8.0, floatmath.EXP_HI,
              floatmath.EXP_LO, 88.0, -87.0, 100.0, -100.0]]
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]).astype(np.float32)


def _ulp_error(got: np.ndarray, want: np.ndarray) -> float:
    """Largest error in float32 ulps of the reference (relative for tiny references)."""
    want32 = want.astype(np.float32)
    ulp = np.spacing(np.abs(want32)).astype(np.float64)
    ulp = np.maximum(ulp, np.spacing(np.float32(1e-30)))
    return float(np.max(np.abs(got.astype(np.float64) - want) / ulp))


REFERENCES = {
    "exp": (floatmath.exp, np.exp, 2),
    "sigmoid": (floatmath.sigmoid, lambda x: 1 / (1 + np.exp(-x)), 4),
    "silu": (floatmath.silu, lambda x: x / (1 + np.exp(-x)), 4),
    "tanh": (floatmath.tanh, np.tanh, 4),
    "erf": (floatmath.erf, erf64, 4),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_formula_is_within_a_few_ulps(name):
    formula, reference, max_ulps = REFERENCES[name]
    x = _grid()
    with np.errstate(over="ignore", under="ignore"):
        want = reference(x.astype(np.float64))
        got = formula(x, ARITH)
    assert got.dtype == np.float32
    info = np.finfo(np.float32)
    tiny, huge = np.abs(want) < info.tiny, np.abs(want) > info.max
    normal = ~tiny & ~huge
    assert _ulp_error(got[normal], want[normal]) <= max_ulps
    assert np.all(np.abs(got[tiny]) <= info.tiny)  # qir flushes subnormal results to 0
    assert np.all(np.isinf(got[huge]))


def test_gelu_matches_torch_definition():
    x = _grid()[::7]
    want = x.astype(np.float64) * 0.5 * (1 + erf64(x.astype(np.float64) / math.sqrt(2)))
    got = floatmath.gelu(x, ARITH)
    assert np.max(np.abs(got - want)) <= 4e-7 * np.maximum(1.0, np.abs(want)).max()
    tanh_form = floatmath.gelu(x, ARITH, approximate="tanh")
    assert np.max(np.abs(tanh_form - want)) < 1e-3 * np.maximum(1, np.abs(want)).max()


def test_special_values():
    x = np.array([np.inf, -np.inf, np.nan, 0.0, 200.0, -200.0], dtype=np.float32)
    with np.errstate(over="ignore"):
        e = floatmath.exp(x, ARITH)
        t = floatmath.tanh(x, ARITH)
        f = floatmath.erf(x, ARITH)
        s = floatmath.sigmoid(x, ARITH)
    assert list(e[[0, 1, 3, 4, 5]]) == [np.inf, 0.0, 1.0, np.inf, 0.0] and np.isnan(e[2])
    assert list(t[[0, 1, 3, 4, 5]]) == [1.0, -1.0, 0.0, 1.0, -1.0] and np.isnan(t[2])
    assert list(f[[0, 1, 3, 4, 5]]) == [1.0, -1.0, 0.0, 1.0, -1.0] and np.isnan(f[2])
    assert list(s[[0, 1, 3, 4, 5]]) == [1.0, 0.0, 0.5, 1.0, 0.0] and np.isnan(s[2])


def test_sequential_sums_follow_index_order():
    """acc = 0; acc += x[i]: adding a large value first and its negation last keeps the
    small terms in between only if they are added one by one in order."""
    x = np.array([[1e8, 1.0, 1.0, 1.0, 1.0, -1e8]], dtype=np.float32)
    assert seq_sum(x, (1,))[0] == 0.0  # each 1.0 is lost against 1e8
    assert seq_sum(x[:, ::-1], (1,))[0] == 0.0
    y = np.random.default_rng(1).standard_normal((3, 4, 5)).astype(np.float32)
    want = np.zeros((4,), np.float32)
    for i in range(3):
        for k in range(5):
            want = want + y[i, :, k]
    assert np.array_equal(seq_sum(y, (0, 2)), want)
    assert seq_sum(y, (0, 2), keepdims=True).shape == (1, 4, 1)
    assert np.array_equal(seq_mean(y, (0, 2)), want / np.float32(15))


def test_sequential_matmul():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((2, 3, 4, 6)).astype(np.float32)
    b = rng.standard_normal((6, 5)).astype(np.float32)
    want = np.zeros((2, 3, 4, 5), np.float32)
    for k in range(6):
        want = want + a[..., :, k:k + 1] * b[k:k + 1, :]
    got = seq_matmul(a, b)
    assert np.array_equal(got, want)
    assert np.allclose(got, a @ b, rtol=1e-5, atol=1e-5)
