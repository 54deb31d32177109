"""passes/observers.py: each range-selection method on data with a known answer, the
robustness rules (non-finite data, no data, constant tensors) and quantization params."""

import math

import numpy as np
import pytest

from passes.observers import (METHODS, CalibrationError, RangeObserver, _entropy_divergences,
                              _mse_range, quant_params_from_range, weight_scales)
from qir.diagnostics import QirError


def run(method, batches, **kw):
    """Drive an observer through the calibrate pass's protocol."""
    obs = RangeObserver(method, **kw)
    for b in batches:
        obs.observe(b)
    if obs.needs_second_pass:
        obs.start_second_pass()
        for b in batches:
            obs.observe_second(b)
    return obs.compute_range()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def normal_with_outliers(rng):
    bulk = rng.standard_normal(200_000).astype(np.float32)
    outliers = np.array([1000.0, -900.0, 950.0], dtype=np.float32)
    return bulk, np.concatenate([bulk, outliers])


# ---- the methods ----------------------------------------------------------------------


def test_minmax_exact_over_batches():
    lo, hi = run("minmax", [np.array([[0.5, -2.25]]), np.array([[3.75, 1.0]])])
    assert (lo, hi) == (-2.25, 3.75)
    assert run("minmax", [np.array([1.0, 2.0, 5.0])]) == (0.0, 5.0)  # includes 0


def test_moving_average_formula_on_three_batches():
    batches = [np.array([-1.0, 2.0]), np.array([-3.0, 6.0]), np.array([-0.5, 10.0])]
    c = 0.01
    lo, hi = -1.0, 2.0
    for b in batches[1:]:
        lo += c * (b.min() - lo)
        hi += c * (b.max() - hi)
    got = run("moving-average", batches)
    assert got == pytest.approx((lo, hi), rel=1e-12)
    assert got[1] < 2.2  # far from minmax's 10: the later batches barely move it
    got = run("moving-average", batches, averaging_constant=1.0)
    assert got == (-0.5, 10.0)  # c = 1: the last batch


def test_percentile_on_uniform_data(rng):
    x = rng.uniform(-1.0, 1.0, 1_000_000).astype(np.float32)
    lo, hi = run("percentile", [x[:500_000], x[500_000:]], percentile=99.0)
    assert hi == pytest.approx(0.98, abs=3e-3)
    assert lo == pytest.approx(-0.98, abs=3e-3)
    lo, hi = run("percentile", [x])  # 99.999: almost the whole range
    assert 0.999 < hi <= x.max() and x.min() <= lo < -0.999


def test_percentile_clips_outliers(rng):
    bulk, x = normal_with_outliers(rng)
    lo, hi = run("percentile", [x], percentile=99.9)
    assert 3.0 < hi < 5.0 and -5.0 < lo < -3.0


def ref_kl_divergences(hist, nq=128, eps=1e-4):
    """A direct transcription of the TensorRT / MXNet / ORT loop, for comparison."""

    def smooth(p):
        zeros = p == 0
        nnz = p.size - zeros.sum()
        if nnz == 0:
            return None
        eps1 = eps * zeros.sum() / nnz
        out = np.where(zeros, eps, p - eps1)
        return None if eps1 >= 1 or (out <= 0).any() else out

    kls = []
    for i in range(nq, hist.size + 1):
        sliced = hist[:i].astype(np.float64)
        p = sliced.copy()
        p[-1] += hist[i:].sum()
        m = i // nq
        q = np.zeros(i)
        for j in range(nq):
            start, stop = j * m, (j + 1) * m if j < nq - 1 else i
            norm = (p[start:stop] != 0).sum()
            if norm:
                q[start:stop] = sliced[start:stop].sum() / norm
        q[p == 0] = 0
        ps, qs = smooth(p), smooth(q)
        if ps is None or qs is None:
            kls.append(np.inf)
            continue
        ps, qs = ps / ps.sum(), qs / qs.sum()
        kls.append(float(np.sum(ps * np.log(ps / qs))))
    return np.array(kls)


@pytest.mark.parametrize("bins", [128, 200, 600])
def test_entropy_matches_reference_loop(rng, bins):
    _, x = normal_with_outliers(rng)
    for data in (x, np.maximum(x[:50_000], 0), rng.uniform(-1, 1, 20_000)):
        a = np.abs(data)
        hist = np.bincount(np.minimum((a / (a.max() / bins)).astype(int), bins - 1),
                           minlength=bins)
        cands, kls = _entropy_divergences(hist)
        ref = ref_kl_divergences(hist)
        assert list(cands) == list(range(128, bins + 1))
        np.testing.assert_array_equal(np.isfinite(kls), np.isfinite(ref))
        fin = np.isfinite(ref)
        np.testing.assert_allclose(kls[fin], ref[fin], rtol=1e-9, atol=1e-15)
        assert np.argmin(kls) == np.argmin(ref)


def test_entropy_clips_long_tail(rng):
    bulk, x = normal_with_outliers(rng)
    lo, hi = run("entropy", [x])
    p99 = np.percentile(np.abs(bulk), 99)
    assert p99 < hi < 0.2 * 1000.0
    assert lo == -hi  # threshold applied to |x|, both sides inside [min, max]


def test_entropy_keeps_uniform_range(rng):
    x = rng.uniform(-1.0, 1.0, 500_000).astype(np.float32)
    lo, hi = run("entropy", [x])
    assert hi > 0.95 * x.max() and lo < 0.95 * x.min()
    assert hi <= x.max() and lo >= x.min()


def test_entropy_all_positive_keeps_zero_lower_bound(rng):
    x = rng.uniform(0.5, 2.0, 100_000)
    lo, hi = run("entropy", [x])
    assert lo == 0.0 and 0.5 < hi <= 2.0


def test_entropy_needs_128_bins():
    with pytest.raises(ValueError, match=">= 128 bins"):
        RangeObserver("entropy", bins=127)
    RangeObserver("entropy", bins=128)
    RangeObserver("percentile", bins=100)  # only entropy needs them


def test_mse_clips_outliers_between_bulk_and_max(rng):
    x = np.concatenate([rng.standard_normal(2_000_000), [100.0]])
    lo, hi = run("mse", [x])
    assert np.percentile(x, 99.9) < hi < 0.5 * 100.0
    assert x.min() * 1.01 <= lo < 0  # the lower side has no outlier: barely clipped


def test_mse_keeps_uniform_range(rng):
    x = rng.uniform(-1.0, 1.0, 500_000)
    lo, hi = run("mse", [x])
    assert hi == pytest.approx(x.max()) and lo == pytest.approx(x.min())


def test_mse_is_the_grid_minimum(rng):
    hist = rng.integers(0, 50, 64).astype(np.int64)
    hist[-3:] = [0, 0, 2]
    lo_edge, width = -2.0, 0.25
    centres = lo_edge + (np.arange(64) + 0.5) * width
    vmin, vmax = lo_edge, lo_edge + 64 * width

    def err(lo, hi):
        step = (hi - lo) / 255
        e = np.where(centres < lo, (centres - lo) ** 2,
                     np.where(centres > hi, (centres - hi) ** 2, step**2 / 12))
        return float((e * hist).sum())

    ks = np.arange(1, 101) / 100
    best = min(err(vmin * a, vmax * b) for a in ks for b in ks)
    lo, hi = _mse_range(hist, lo_edge, width, vmin, vmax, symmetric=False)
    assert err(lo, hi) == pytest.approx(best, rel=1e-9)
    lo_s, hi_s = _mse_range(hist, lo_edge, width, vmin, vmax, symmetric=True)
    assert lo_s == -hi_s
    assert err(lo_s, hi_s) == pytest.approx(min(err(-m, m) for m in 14.0 * ks), rel=1e-9)


def test_mse_ties_go_to_widest():
    hist = np.zeros(16, dtype=np.int64)
    hist[8] = 10  # all mass in one bin just right of 0: a strict minimum, the narrowest
    lo, hi = _mse_range(hist, -1.0, 0.125, -1.0, 1.0, symmetric=False)
    assert hi - lo < 0.1
    lo, hi = _mse_range(np.zeros(16), -1.0, 0.125, -1.0, 1.0, symmetric=False)
    assert (lo, hi) == (-1.0, 1.0)  # every candidate costs 0: the widest wins


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shift", [-5.0, 0.0, 5.0])
def test_every_range_contains_zero_and_has_width(rng, method, shift):
    x = rng.standard_normal((8, 16)) + shift
    for symmetric in (False, True):
        lo, hi = run(method, [x, x * 0.5], symmetric=symmetric, bins=256)
        assert lo <= 0.0 <= hi and hi > lo
        assert isinstance(lo, float) and isinstance(hi, float)
        if symmetric:
            assert lo == -hi


def test_symmetric_range():
    assert run("minmax", [np.array([-1.0, 3.0])], symmetric=True) == (-3.0, 3.0)
    assert run("minmax", [np.array([2.0, 3.0])], symmetric=True) == (-3.0, 3.0)


def test_integer_and_half_inputs():
    assert run("minmax", [np.array([-3, 7], dtype=np.int32)]) == (-3.0, 7.0)
    lo, hi = run("percentile", [np.linspace(-1, 1, 1001).astype(np.float16)], bins=64)
    assert -1.0 <= lo < -0.9 and 0.9 < hi <= 1.0


# ---- robustness -----------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_names_observer_and_count(method):
    x = np.ones(10, dtype=np.float32)
    x[[1, 4]] = np.nan
    x[7] = -np.inf
    obs = RangeObserver(method, name="conv1.out")
    with pytest.raises(CalibrationError, match="conv1.out") as e:
        obs.observe(x)
    msg = str(e.value)
    assert "3 non-finite" in msg and "2 NaN, 1 Inf" in msg and "must be finite" in msg


def test_non_finite_in_second_pass():
    obs = RangeObserver("percentile", name="fc")
    obs.observe(np.array([-1.0, 1.0]))
    obs.start_second_pass()
    with pytest.raises(CalibrationError, match="'fc': 1 non-finite"):
        obs.observe_second(np.array([0.0, np.inf]))


@pytest.mark.parametrize("method", METHODS)
def test_no_data(method):
    obs = RangeObserver(method, name="never")
    with pytest.raises(CalibrationError, match="'never' saw no data: the calibration set is "
                                               "empty or this tensor is never computed"):
        obs.compute_range()
    obs.observe(np.zeros((0, 4)))  # an empty batch is no data either
    with pytest.raises(CalibrationError, match="saw no data"):
        obs.compute_range()
    if obs.needs_second_pass:
        with pytest.raises(CalibrationError, match="saw no data"):
            obs.start_second_pass()


def test_histogram_method_without_second_pass():
    obs = RangeObserver("entropy", name="x")
    assert obs.needs_second_pass and not RangeObserver("minmax").needs_second_pass
    obs.observe(np.array([-1.0, 2.0]))
    with pytest.raises(CalibrationError, match="second pass"):
        obs.compute_range()


def test_calibration_error_kinds():
    assert issubclass(CalibrationError, ValueError) and issubclass(CalibrationError, QirError)
    with pytest.raises(ValueError, match="unknown calibration method 'kl'"):
        RangeObserver("kl")


@pytest.mark.parametrize("method", METHODS)
def test_constant_tensors(method):
    assert run(method, [np.full((4, 3), 2.5)]) == (0.0, 2.5)
    assert run(method, [np.full((4, 3), -1.5)]) == (-1.5, 0.0)
    assert run(method, [np.zeros((4, 3))]) == (0.0, 1.0)
    assert run(method, [np.zeros((4, 3))], symmetric=True) == (-1.0, 1.0)


def test_collapsed_range_falls_back_to_minmax():
    obs = RangeObserver("percentile", name="x")
    obs.observe(np.array([0.0, 4.0]))
    assert obs._finalise(0.0, 0.0) == (0.0, 4.0)  # a method's zero-width answer
    x = np.zeros(1_000_000)
    x[0] = 4.0  # 99.9% of the data is 0: the percentile clips to a sliver of bin 0
    lo, hi = run("percentile", [x], percentile=99.9)
    assert lo == 0.0 and 0.0 < hi < 4.0 / 2048


def test_count_and_outlier_ratio(rng):
    x = rng.uniform(-1.0, 1.0, (2000, 16))
    x[:, 3] *= 40.0
    obs = RangeObserver("minmax")
    assert obs.outlier_ratio is None
    obs.observe(x[:1000])
    obs.observe(x[1000:])
    assert obs.count == x.size
    assert obs.outlier_ratio == pytest.approx(40.0, rel=0.01)
    even = RangeObserver()
    even.observe(rng.uniform(-1.0, 1.0, (2000, 16)))
    assert even.outlier_ratio == pytest.approx(1.0, rel=0.01)
    zeros = RangeObserver()
    zeros.observe(np.zeros((3, 4)))
    assert zeros.outlier_ratio == 1.0


# ---- quantization parameters ----------------------------------------------------------


def dequantize(q, scale, zp):
    return scale * (q - zp)


@pytest.mark.parametrize("lo,hi,qmin,qmax", [(-1.0, 1.0, -128, 127), (-0.3, 6.1, -128, 127),
                                             (0.0, 6.0, 0, 255), (-6.0, 0.0, -128, 127),
                                             (-2.7, 0.1, 0, 255), (2.0, 5.0, -128, 127)])
def test_quant_params_zero_exactly_representable(lo, hi, qmin, qmax):
    scale, zp = quant_params_from_range(lo, hi, qmin, qmax)
    assert isinstance(zp, int) and qmin <= zp <= qmax
    assert dequantize(zp, scale, zp) == 0.0
    assert round(0.0 / scale) + zp == zp  # quantize(0) is exactly the zero point
    span = max(hi, 0.0) - min(lo, 0.0)
    assert scale == pytest.approx(span / (qmax - qmin))
    # the nudged range covers the requested one up to half a step
    assert dequantize(qmin, scale, zp) <= min(lo, 0.0) + scale / 2
    assert dequantize(qmax, scale, zp) >= max(hi, 0.0) - scale / 2


def test_quant_params_examples():
    assert quant_params_from_range(0.0, 6.0, 0, 255) == (6.0 / 255, 0)
    assert quant_params_from_range(-6.0, 0.0, -128, 127) == (6.0 / 255, 127)
    assert quant_params_from_range(-1.0, 1.0, -128, 127) == (2.0 / 255, 0)  # -0.5 -> 0 (even)
    assert quant_params_from_range(3.0, 5.0, -128, 127) == (5.0 / 255, -128)  # 0 included


def test_quant_params_symmetric():
    assert quant_params_from_range(-2.0, 1.0, -128, 127, symmetric=True) == (2.0 / 127, 0)
    assert quant_params_from_range(-2.0, 1.0, -127, 127, symmetric=True) == (2.0 / 127, 0)
    assert quant_params_from_range(-2.0, 1.0, 0, 255, symmetric=True) == (2.0 / 127, 128)
    assert quant_params_from_range(-1.0, 3.0, -32768, 32767, symmetric=True) == (
        3.0 / 32767, 0)


@pytest.mark.parametrize("lo,hi", [(0.0, 0.0), (math.nan, 1.0), (-1.0, math.inf), (1.0, -1.0),
                                   (-1e-60, 1e-60)])
@pytest.mark.parametrize("symmetric", [False, True])
def test_quant_params_rejects_unusable_ranges(lo, hi, symmetric):
    with pytest.raises(CalibrationError):
        quant_params_from_range(lo, hi, -128, 127, symmetric=symmetric)


def test_weight_scales():
    w = np.zeros((3, 2, 2))
    w[0] = [[1.0, -2.54], [0.5, 0.0]]
    w[2, 1, 1] = 0.127
    np.testing.assert_allclose(weight_scales(w, axis=0), [2.54 / 127, 1.0, 0.001])
    np.testing.assert_allclose(weight_scales(w, axis=-1, qmax=7), [1.0 / 7, 2.54 / 7])
    per_tensor = weight_scales(w, axis=None)
    assert per_tensor.shape == () and float(per_tensor) == pytest.approx(2.54 / 127)
    assert float(weight_scales(np.zeros(5), axis=None)) == 1.0
    with pytest.raises(CalibrationError, match="non-finite"):
        weight_scales(np.array([1.0, np.nan]), axis=None)
