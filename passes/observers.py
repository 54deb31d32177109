"""Statistics collectors for calibration: one `RangeObserver` per observed tensor picks
the clipping range [lo, hi] that the tensor is quantized over. Pure numpy, no IR.

Methods: minmax, moving-average (PyTorch), percentile (ORT), entropy (TensorRT KL) and
mse. Histogram methods (percentile, entropy, mse) need two passes over the data: the
first fixes the global min/max, the second fills a fixed `bins`-bin histogram over it,
so state stays O(bins) however many batches are seen.

Every range returned contains 0 (TFLite requirement: 0 must be exactly representable)
and has hi > lo. Fallbacks when the data does not determine a usable range:
- a constant tensor c (min == max): the range is extended to include 0, giving (0, c)
  for c > 0 and (c, 0) for c < 0;
- an all-zero tensor, or one whose range is so narrow that its scale would not be a
  normal float32 (|values| below ~1e-33: denormals): (0.0, 1.0) (or (-1.0, 1.0) when
  symmetric); any positive scale represents 0 exactly and a unit range keeps the scale a
  normal number;
- a method whose range collapses to zero width on non-constant data (e.g. a percentile
  of a tensor that is almost all zeros) falls back to the min/max range.

Also `quant_params_from_range` (range -> scale, zero point) and `weight_scales`
(symmetric per-tensor / per-channel weight scales).
"""

from __future__ import annotations

import math

import numpy as np

from qir.diagnostics import QirError

METHODS = ("minmax", "moving-average", "percentile", "entropy", "mse")
HISTOGRAM_METHODS = ("percentile", "entropy", "mse")
NUM_QUANTIZED_BINS = 128  # TensorRT's entropy calibration quantizes |x| into 128 levels
KL_EPS = 1e-4  # TensorRT/MXNet/ORT smoothing epsilon (on counts)
MSE_LEVELS = 255  # quantization steps assumed by the mse objective (8 bit)
MSE_CANDIDATES = 100  # k in {0.01, 0.02, ..., 1.0}
_ENTROPY_CHUNK = 64  # candidate cuts evaluated together (memory ~ chunk * bins)


class CalibrationError(QirError, ValueError):
    """Calibration data that cannot give a range: non-finite values, no data, or a range
    that yields no valid scale."""


def _who(name: str) -> str:
    return f"observer '{name}'" if name else "observer (unnamed)"


def _as_float(x) -> np.ndarray:
    """float32/float64 view of x (ints and half/bfloat16 are converted for binning)."""
    x = np.asarray(x)
    if x.dtype == np.float32 or x.dtype == np.float64:
        return x
    if x.dtype.kind in "iu" and x.dtype.itemsize > 2:
        return x.astype(np.float64)
    return x.astype(np.float32)


def _non_finite_error(who: str, x: np.ndarray) -> CalibrationError:
    bad = ~np.isfinite(x)
    n_nan = int(np.count_nonzero(np.isnan(x)))
    n_bad = int(np.count_nonzero(bad))
    return CalibrationError(
        f"{who}: {n_bad} non-finite value(s) in a calibration batch ({n_nan} NaN, "
        f"{n_bad - n_nan} Inf) out of {x.size}; calibration data must be finite (check the "
        f"inputs, and the float model for overflow or division by zero)")


class RangeObserver:
    """Collects statistics of one tensor over calibration batches and recommends the
    clipping range for its quantization.

    Protocol: `observe(x)` on every batch; if `needs_second_pass`, then
    `start_second_pass()` and `observe_second(x)` on every batch again; then
    `compute_range()`. `count` is the number of elements seen in the first pass;
    `outlier_ratio` is max over channels (last axis) of max|x| divided by its median over
    channels (None before data, or if the last axis changed size between batches; inf
    when the median is 0 but the max is not, 1.0 for an all-zero tensor).
    """

    def __init__(self, method: str = "minmax", *, bins: int = 2048,
                 percentile: float = 99.999, averaging_constant: float = 0.01,
                 symmetric: bool = False, name: str = ""):
        if method not in METHODS:
            raise ValueError(f"unknown calibration method '{method}' (known: "
                             f"{', '.join(METHODS)})")
        if not isinstance(bins, (int, np.integer)) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
        if method == "entropy" and bins < NUM_QUANTIZED_BINS:
            raise ValueError(
                f"entropy calibration needs >= {NUM_QUANTIZED_BINS} bins, got {bins}: with "
                f"fewer there is no candidate threshold below the max (ORT's 128-bin default "
                f"leaves one, silently equal to minmax); use bins=2048")
        if not 50.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be in [50, 100], got {percentile}")
        if not 0.0 < averaging_constant <= 1.0:
            raise ValueError(f"averaging_constant must be in (0, 1], got {averaging_constant}")
        self.method = method
        self.bins = int(bins)
        self.percentile = float(percentile)
        self.averaging_constant = float(averaging_constant)
        self.symmetric = bool(symmetric)
        self.name = name
        self.needs_second_pass = method in HISTOGRAM_METHODS
        self.count = 0
        self._min = math.inf
        self._max = -math.inf
        self._ma: tuple[float, float] | None = None  # moving-average (min, max)
        self._chan_absmax: np.ndarray | None = None
        self._chan_ok = True
        self._hist: np.ndarray | None = None  # second pass: counts, int64
        self._hist_lo = 0.0  # left edge of the histogram (0 for the |x| histogram)
        self._hist_width = 0.0  # 0: degenerate range, nothing to bin
        self._second_count = 0
        self._cached: tuple[float, float] | None = None
        self.degenerate: str | None = None  # why the range fell back to [0, 1], if it did

    # ---- first pass -------------------------------------------------------------------

    def observe(self, x: np.ndarray) -> None:
        """Record one batch: global and per-channel extremes, moving average."""
        x = np.asarray(x)
        if x.size == 0:
            return
        x2 = x.reshape(1) if x.ndim == 0 else x
        axes = tuple(range(x2.ndim - 1))
        cmin = np.min(x2, axis=axes) if axes else x2
        cmax = np.max(x2, axis=axes) if axes else x2
        lo, hi = float(cmin.min()), float(cmax.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise _non_finite_error(_who(self.name), x)
        self._cached = None
        self.count += int(x.size)
        self._min = min(self._min, lo)
        self._max = max(self._max, hi)
        if self._ma is None:
            self._ma = (lo, hi)
        else:
            c = self.averaging_constant
            mlo, mhi = self._ma
            self._ma = (mlo + c * (lo - mlo), mhi + c * (hi - mhi))
        absmax = np.maximum(np.abs(cmin.astype(np.float64)), np.abs(cmax.astype(np.float64)))
        if self._chan_absmax is None:
            self._chan_absmax = absmax
        elif self._chan_absmax.shape == absmax.shape:
            np.maximum(self._chan_absmax, absmax, out=self._chan_absmax)
        else:
            self._chan_ok = False

    @property
    def outlier_ratio(self) -> float | None:
        a = self._chan_absmax
        if a is None or not self._chan_ok:
            return None
        med, top = float(np.median(a)), float(a.max())
        if med == 0.0:
            return 1.0 if top == 0.0 else math.inf
        return top / med

    # ---- second pass (histogram methods) ----------------------------------------------

    def start_second_pass(self) -> None:
        """Fix the histogram range from the first pass (no-op for one-pass methods)."""
        if not self.needs_second_pass:
            return
        self._require_data()
        self._cached = None
        self._hist = np.zeros(self.bins, dtype=np.int64)
        self._second_count = 0
        if self.method == "entropy":  # histogram of |x| over [0, absmax]
            self._hist_lo = 0.0
            span = max(-self._min, self._max)
        else:  # signed histogram over [min, max]
            self._hist_lo = self._min
            span = self._max - self._min
        self._hist_width = span / self.bins if span > 0 else 0.0

    def observe_second(self, x: np.ndarray) -> None:
        """Add one batch to the histogram. Values outside the first pass's range (the data
        changed between passes) are counted in the edge bins."""
        if not self.needs_second_pass:
            return
        if self._hist is None:
            raise CalibrationError(f"{_who(self.name)}: observe_second() before "
                                   f"start_second_pass()")
        x = _as_float(x)
        if x.size == 0:
            return
        self._cached = None
        self._second_count += int(x.size)
        if self._hist_width == 0.0:
            if not np.isfinite(x).all():
                raise _non_finite_error(_who(self.name), x)
            return
        t = self._bin_positions(x)
        if not math.isfinite(float(t.min()) + float(t.max())):
            if not np.isfinite(x).all():
                raise _non_finite_error(_who(self.name), x)
            t = self._bin_positions(x.astype(np.float64))  # float32 overflowed
        np.clip(t, 0, self.bins - 1, out=t)
        self._hist += np.bincount(t.astype(np.intp).ravel(), minlength=self.bins)

    def _bin_positions(self, x: np.ndarray) -> np.ndarray:
        """Fractional bin index of every element (not yet clipped)."""
        t = np.abs(x) if self.method == "entropy" else x - x.dtype.type(self._hist_lo)
        return t * x.dtype.type(1.0 / self._hist_width)

    # ---- result -----------------------------------------------------------------------

    def compute_range(self) -> tuple[float, float]:
        """The recommended clipping range (lo, hi): lo <= 0 <= hi, hi > lo."""
        self._require_data()
        if self._cached is None:
            lo, hi = self._method_range()
            self._cached = self._finalise(lo, hi)
        return self._cached

    def _require_data(self) -> None:
        if self.count == 0:
            raise CalibrationError(f"{_who(self.name)} saw no data: the calibration set is "
                                   f"empty or this tensor is never computed")

    def _method_range(self) -> tuple[float, float]:
        if self.method == "minmax":
            return self._min, self._max
        if self.method == "moving-average":
            return self._ma
        if self._hist is None:
            raise CalibrationError(f"{_who(self.name)}: method '{self.method}' needs a second "
                                   f"pass: call start_second_pass() then observe_second() on "
                                   f"every batch before compute_range()")
        if self._hist_width == 0.0:  # constant tensor: nothing to choose
            return self._min, self._max
        if self._second_count == 0:
            raise CalibrationError(f"{_who(self.name)}: the second (histogram) pass saw no "
                                   f"data")
        h, lo_edge, w = self._hist, self._hist_lo, self._hist_width
        if self.method == "percentile":
            q = self.percentile / 100.0
            return (_hist_quantile(h, lo_edge, w, 1.0 - q), _hist_quantile(h, lo_edge, w, q))
        if self.method == "entropy":
            i = _entropy_cut(h)
            threshold = (i + 0.5) * w
            return max(-threshold, self._min), min(threshold, self._max)
        return _mse_range(h, lo_edge, w, self._min, self._max, self.symmetric)

    def _finalise(self, lo: float, hi: float) -> tuple[float, float]:
        """Include 0, apply the fallbacks of the module docstring and symmetry."""
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if not _usable_width(lo, hi):
            lo, hi = min(self._min, 0.0), max(self._max, 0.0)
        if not _usable_width(lo, hi):
            self.degenerate = (f"every calibration value was 0 or below {abs(hi - lo):.3g} "
                               "in magnitude")
            return (-1.0, 1.0) if self.symmetric else (0.0, 1.0)
        if self.symmetric:
            a = max(-lo, hi)
            return -a, a
        return lo, hi

    def __repr__(self) -> str:
        return (f"RangeObserver({self.method!r}, name={self.name!r}, count={self.count}, "
                f"min={self._min}, max={self._max})")


def _usable_width(lo: float, hi: float) -> bool:
    """Whether [lo, hi] gives a normal float32 scale for every storage type (16-bit
    included): zero width or denormal-sized ranges do not."""
    return (hi - lo) / 65535 >= np.finfo(np.float32).tiny


# ---- range selection on histograms ------------------------------------------------------


def _hist_quantile(hist: np.ndarray, lo_edge: float, width: float, q: float) -> float:
    """Value below which a fraction q of the histogram's mass lies, interpolating linearly
    within the bin where the cumulative count crosses q."""
    cum = np.cumsum(hist)
    total = float(cum[-1])
    target = q * total
    k = min(int(np.searchsorted(cum, target, side="left")), hist.size - 1)
    before = float(cum[k - 1]) if k > 0 else 0.0
    frac = (target - before) / float(hist[k]) if hist[k] > 0 else 1.0
    return lo_edge + (k + min(max(frac, 0.0), 1.0)) * width


def _entropy_cut(hist: np.ndarray, nq: int = NUM_QUANTIZED_BINS, eps: float = KL_EPS) -> int:
    """TensorRT's KL calibration on a histogram of |x|: the number of bins i in [nq, B]
    to keep that minimises KL(P || Q). P = hist[:i] with the clipped tail added to its last
    bin; Q = hist[:i] (without the tail, as TensorRT, MXNet, TVM and ORT do) merged into nq
    groups of i // nq bins (the last group takes the remainder) and spread evenly over P's
    non-zero bins. Both are smoothed as ORT/MXNet's `smooth_distribution` does (zeros
    become eps, non-zeros lose the same mass). Ties go to the smallest i (np.argmin).
    Vectorised over chunks of candidates."""
    cands, kls = _entropy_divergences(hist, nq, eps)
    if not np.isfinite(kls).any():
        return hist.size
    return int(cands[int(np.argmin(kls))])


def _entropy_divergences(hist: np.ndarray, nq: int = NUM_QUANTIZED_BINS,
                         eps: float = KL_EPS) -> tuple[np.ndarray, np.ndarray]:
    """(candidate cuts nq..B, KL divergence of each) for `_entropy_cut`."""
    h = hist.astype(np.float64)
    B = h.size
    total = h.sum()
    cum = np.concatenate(([0.0], np.cumsum(h)))
    cnz = np.concatenate(([0], np.cumsum(h > 0)))
    cands = np.arange(nq, B + 1)
    kls = np.empty(cands.size)
    groups = np.arange(nq)
    for s in range(0, cands.size, _ENTROPY_CHUNK):
        cut = cands[s:s + _ENTROPY_CHUNK]
        width = int(cut[-1])
        rows = np.arange(cut.size)
        k = np.arange(width)
        inside = k < cut[:, None]
        tail = total - cum[cut]
        p = np.where(inside, h[:width], 0.0)
        p[rows, cut - 1] += tail
        m = cut // nq
        starts = groups * m[:, None]
        ends = starts + m[:, None]
        ends[:, -1] = cut
        qsum = cum[ends] - cum[starts]
        norm = (cnz[ends] - cnz[starts]).astype(np.float64)
        norm[:, -1] += (h[cut - 1] == 0) & (tail > 0)  # the last bin is non-zero in P only
        qv = np.divide(qsum, norm, out=np.zeros_like(qsum), where=norm > 0)
        g = np.minimum(k // m[:, None], nq - 1)
        pnz = p > 0
        q = np.where(pnz, np.take_along_axis(qv, g, axis=1), 0.0)
        kls[s:s + cut.size] = _smoothed_kl(p, q, inside, cut, eps)
    return cands, kls


def _smoothed_kl(p: np.ndarray, q: np.ndarray, inside: np.ndarray, n: np.ndarray,
                 eps: float) -> np.ndarray:
    """Row-wise KL(p || q) over the first n[r] entries after ORT's smoothing; inf where
    smoothing fails (a distribution with no mass, or eps larger than a count)."""
    pnz, qnz = p > 0, q > 0
    npn, nqn = pnz.sum(axis=1), qnz.sum(axis=1)
    e1p = eps * (n - npn) / np.maximum(npn, 1)
    e1q = eps * (n - nqn) / np.maximum(nqn, 1)
    ps = np.where(inside, np.where(pnz, p - e1p[:, None], eps), 1.0)
    qs = np.where(inside, np.where(qnz, q - e1q[:, None], eps), 1.0)
    bad = (npn == 0) | (nqn == 0) | (e1p >= 1) | (e1q >= 1)
    bad |= ((ps <= 0) | (qs <= 0)).any(axis=1)
    ps = np.where(ps > 0, ps, 1.0)
    qs = np.where(qs > 0, qs, 1.0)
    sp = np.where(inside, ps, 0.0).sum(axis=1, keepdims=True)
    sq = np.where(inside, qs, 0.0).sum(axis=1, keepdims=True)
    pn, qn = ps / sp, qs / sq
    kl = np.where(inside, pn * np.log(pn / qn), 0.0).sum(axis=1)
    kl[bad] = np.inf
    return kl


def _mse_range(hist: np.ndarray, lo_edge: float, width: float, vmin: float, vmax: float,
               symmetric: bool) -> tuple[float, float]:
    """The clipping range minimising the expected squared quantization error over the
    histogram (bin centres stand for their counts): clipped values cost (c - bound)^2,
    the rest step^2 / 12 with step = (hi - lo) / 255. Candidates lo = lo0 * a, hi = hi0 * b
    with a, b independently in {0.01, ..., 1.0} (lo0, hi0 = the min/max range extended to
    include 0; a shared a = b when symmetric, on [-m, m], m = max|x|). Ties (relative
    1e-12) go to the widest range."""
    ks = np.arange(1, MSE_CANDIDATES + 1) / MSE_CANDIDATES
    h = hist.astype(np.float64)
    c = lo_edge + (np.arange(h.size) + 0.5) * width
    total = h.sum()
    if symmetric:
        m = max(-vmin, vmax)
        his = m * ks
        los = -his
    else:
        los, his = min(vmin, 0.0) * ks, max(vmax, 0.0) * ks
    # clipping cost and clipped count of each bound, separately: (candidates, bins)
    below = c[None, :] < los[:, None]
    above = c[None, :] > his[:, None]
    clip_lo = (np.where(below, (c[None, :] - los[:, None]) ** 2, 0.0) * h).sum(axis=1)
    clip_hi = (np.where(above, (c[None, :] - his[:, None]) ** 2, 0.0) * h).sum(axis=1)
    out_lo = (below * h).sum(axis=1)
    out_hi = (above * h).sum(axis=1)
    if symmetric:
        span = his - los
        err = clip_lo + clip_hi + (total - out_lo - out_hi) * (span / MSE_LEVELS) ** 2 / 12
        best = np.flatnonzero(err <= err.min() * (1 + 1e-12))
        j = best[np.argmax(span[best])]
        return float(los[j]), float(his[j])
    span = his[None, :] - los[:, None]  # [a, b]
    inner = np.maximum(total - out_lo[:, None] - out_hi[None, :], 0.0)
    err = clip_lo[:, None] + clip_hi[None, :] + inner * (span / MSE_LEVELS) ** 2 / 12
    ok = err <= err.min() * (1 + 1e-12)
    a, b = np.unravel_index(np.argmax(np.where(ok, span, -np.inf)), err.shape)
    return float(los[a]), float(his[b])


# ---- quantization parameters ------------------------------------------------------------


def quant_params_from_range(lo: float, hi: float, qmin: int, qmax: int,
                            symmetric: bool = False) -> tuple[float, int]:
    """(scale, zero_point) mapping [lo, hi] onto the integers [qmin, qmax].

    Asymmetric: the range is first extended to include 0; scale = (hi - lo) / (qmax - qmin)
    and zp = round_half_even(qmin - lo / scale) clamped to [qmin, qmax] (TFLite's nudging,
    so that real 0 is exactly the integer zp). Symmetric: scale = max(|lo|, |hi|) /
    ((qmax - qmin) // 2), zp = 0 for signed storage (qmin < 0) and (qmin + qmax + 1) // 2
    for unsigned (128 for u8). Raises CalibrationError when no positive finite float32
    scale results (zero-width or non-finite range)."""
    lo, hi, qmin, qmax = float(lo), float(hi), int(qmin), int(qmax)
    if not qmin < qmax:
        raise ValueError(f"bad storage range [{qmin}, {qmax}]: need qmin < qmax")
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise CalibrationError(f"cannot quantize the range [{lo}, {hi}]: it must be finite "
                               f"with min <= max")
    if symmetric:
        half = (qmax - qmin) // 2
        if half < 1:
            raise ValueError(f"storage range [{qmin}, {qmax}] is too narrow for symmetric "
                             f"quantization")
        scale = max(abs(lo), abs(hi)) / half
        zp = 0 if qmin < 0 else (qmin + qmax + 1) // 2
    else:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = (hi - lo) / (qmax - qmin)
        zp = None
    if not (scale > 0 and math.isfinite(scale)) or not 0 < np.float32(scale) < np.inf:
        raise CalibrationError(f"the range [{lo}, {hi}] gives no usable scale ({scale}): it "
                               f"must have non-zero width and a float32-representable scale")
    if zp is None:
        zp = min(max(round(qmin - lo / scale), qmin), qmax)  # round(): half to even
    return scale, int(zp)


def weight_scales(w: np.ndarray, axis: int | None, qmax: int = 127) -> np.ndarray:
    """Symmetric weight scales max|w| / qmax (float64): per channel along `axis` (shape
    (w.shape[axis],)) or per tensor (axis=None, a 0-d array). An all-zero channel gets
    scale 1.0: its weights quantize to 0 whatever the scale, and 1.0 keeps it valid."""
    w = np.asarray(w)
    if w.dtype.kind not in "fiu":
        w = w.astype(np.float32)
    if w.size and not np.isfinite(w).all():
        n = int(np.count_nonzero(~np.isfinite(w)))
        raise CalibrationError(f"weight tensor of shape {w.shape} has {n} non-finite "
                               f"value(s); weights must be finite to quantize")
    a = np.abs(w.astype(np.float64))
    if axis is None:
        m = np.asarray(a.max(initial=0.0))
    else:
        if not -w.ndim <= axis < w.ndim:
            raise ValueError(f"axis {axis} out of range for a weight of shape {w.shape}")
        axis %= w.ndim
        others = tuple(d for d in range(w.ndim) if d != axis)
        m = a.max(axis=others, initial=0.0) if others else a
    return np.where(m > 0, m / qmax, 1.0)
