"""The float32 formulas every backend follows, so that float ops give the same bits
everywhere.

IEEE 754 rounds +, -, *, / and sqrt correctly, so a backend that evaluates the same
sequence of those operations, in the same order, without fusing a multiply and an add
(no FMA contraction, no fast-math), gets the same float32 bits. Library functions (exp,
tanh, erf, ...) are not correctly rounded and differ between numpy, glibc and CUDA's
libdevice; so qir defines them here as explicit sequences of basic operations
(Cody–Waite range reduction and Cephes' minimax polynomials, ~1-2 ulp), written once and
run by both the numpy interpreter (on arrays) and the TVM backend (on TE expressions).

Sums are defined as sequential: acc = 0; acc += x[i] for i in order (row-major over
several axes). That is what TVM's reduction loops compute without an rfactor schedule;
the numpy interpreter reproduces it with `np.add.accumulate` (backends/numpy/common.py).

Each formula takes the value and an `Arith`: the handful of operations Python operators
do not cover. Constants go through `m.c(...)` so that they are float32 on both sides.
docs/semantics.md lists which float ops are reproducible this way.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

F = Any  # a float32 array or a TE expression


class Arith(Protocol):
    """What a backend provides besides + - * / and comparisons."""

    def c(self, value: float) -> F: ...  # a float32 constant
    def floor(self, x: F) -> F: ...
    def where(self, cond: F, a: F, b: F) -> F: ...
    def isnan(self, x: F) -> F: ...
    def abs(self, x: F) -> F: ...
    def pow2(self, k: F) -> F: ...  # 2^k for an integer-valued k in [-126, 127], exact
    def keep(self, x: F) -> F: ...  # x, used more than once: a backend may store it


# --- exp ------------------------------------------------------------------------------------

LOG2E = 1.44269504088896341
EXP_HI = 88.72283935546875  # above: exp overflows float32
EXP_LO = -87.33654022216797  # below: exp is < 2^-126 (subnormal); qir flushes it to 0
# ln 2 split so that k * C1 is exact for |k| < 2^9 (Cody–Waite)
LN2_C1, LN2_C2 = 0.693359375, -2.12194440e-4
# Cephes expf: exp(r) = 1 + r + r^2 P(r) on |r| <= ln(2)/2
EXP_P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
         1.6666665459e-1, 5.0000001201e-1)


def neg(x: F, m: Arith) -> F:
    """-x, as 0 - x on every backend (so a zero's sign never depends on the backend)."""
    return m.c(0.0) - x


def polynomial(x: F, coeffs: tuple[float, ...], m: Arith) -> F:
    """Horner's rule, highest-degree coefficient first."""
    acc = m.c(coeffs[0])
    for c in coeffs[1:]:
        acc = acc * x + m.c(c)
    return acc


def exp(x: F, m: Arith) -> F:
    """e^x: exp(-inf) = 0, exp(+inf) = inf, NaN stays NaN; results below 2^-126 flush
    to 0 (torch keeps subnormals: a difference below 1.2e-38)."""
    x = m.keep(x)
    nan = m.isnan(x)
    xs = m.keep(m.where(nan, m.c(0.0), x))
    xs = m.keep(m.where(xs > m.c(EXP_HI), m.c(EXP_HI),
                        m.where(xs < m.c(EXP_LO), m.c(EXP_LO), xs)))
    k = m.keep(m.floor(xs * m.c(LOG2E) + m.c(0.5)))
    r = xs - k * m.c(LN2_C1)
    r = m.keep(r - k * m.c(LN2_C2))
    p = polynomial(r, EXP_P, m) * (r * r) + r + m.c(1.0)
    # k is in [-126, 128], one beyond 2^k's normal range at each end: scale in two
    # exact steps, by 2^(k -+ 1) and then by 2^(+-1)
    step = m.where(k > m.c(0.0), m.c(1.0), m.c(-1.0))
    y = p * m.pow2(k - step) * m.pow2(step)
    y = m.where(x > m.c(EXP_HI), m.c(math.inf), y)
    y = m.where(x < m.c(EXP_LO), m.c(0.0), y)
    return m.where(nan, x, y)


# --- functions of exp -------------------------------------------------------------------------


def sigmoid(x: F, m: Arith) -> F:
    """1 / (1 + e^-x)."""
    x = m.keep(x)
    return m.c(1.0) / (m.c(1.0) + exp(neg(x, m), m))


def silu(x: F, m: Arith) -> F:
    """x / (1 + e^-x)."""
    x = m.keep(x)
    return x / (m.c(1.0) + exp(neg(x, m), m))


# Cephes tanhf: x + x^3 P(x^2) for |x| < 0.625
TANH_P = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
          -3.33332819422e-1)


def tanh(x: F, m: Arith) -> F:
    """Cephes tanhf: a polynomial near 0, 1 - 2 / (e^2|x| + 1) with x's sign beyond."""
    x = m.keep(x)
    ax = m.keep(m.abs(x))
    z = m.keep(x * x)
    small = polynomial(z, TANH_P, m) * z * x + x
    big = m.keep(m.c(1.0) - m.c(2.0) / (exp(ax + ax, m) + m.c(1.0)))
    big = m.where(x < m.c(0.0), neg(big, m), big)
    return m.where(ax < m.c(0.625), small, big)


# Cephes ndtr.c: erf(x) = x T(x^2) / U(x^2) for |x| < 1; erfc(x) = e^(-x^2) P(x) / Q(x)
# for 1 <= x < 8 (erfc(8) < 1e-28: erf = +-1 beyond), evaluated here in float32.
ERF_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
         7.00332514112805075473e3, 5.55923013010394962768e4)
ERF_U = (1.0, 3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
         2.26290000613890934246e4, 4.92673942608635921086e4)
ERFC_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
          4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
          9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2)
ERFC_Q = (1.0, 1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
          9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
          1.65666309194161350182e3, 5.57535340817727675546e2)


def erf(x: F, m: Arith) -> F:
    """The error function (NaN stays NaN)."""
    x = m.keep(x)
    ax = m.keep(m.abs(x))
    z = m.keep(x * x)
    small = x * polynomial(z, ERF_T, m) / polynomial(z, ERF_U, m)
    a = m.keep(m.where(ax > m.c(8.0), m.c(8.0), m.where(ax < m.c(1.0), m.c(1.0), ax)))
    tail = exp(neg(a * a, m), m) * polynomial(a, ERFC_P, m) / polynomial(a, ERFC_Q, m)
    big = m.keep(m.c(1.0) - tail)
    big = m.where(x < m.c(0.0), neg(big, m), big)
    y = m.where(ax < m.c(1.0), small, big)
    return m.where(m.isnan(x), x, y)


def gelu(x: F, m: Arith, approximate: str = "none") -> F:
    """torch's gelu: x/2 (1 + erf(x / sqrt 2)), or with approximate="tanh"
    x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    x = m.keep(x)
    if approximate == "tanh":
        cube = m.c(0.044715) * x * x * x
        inner = m.c(math.sqrt(2 / math.pi)) * (x + cube)
        return m.c(0.5) * x * (m.c(1.0) + tanh(inner, m))
    return x * m.c(0.5) * (m.c(1.0) + erf(x * m.c(math.sqrt(0.5)), m))


def pow2_bits(k_int: F) -> F:
    """The float32 bit pattern of 2^k for an int32 k in [-126, 127]: (k + 127) << 23."""
    return (k_int + 127) << 23
