"""Exact float32 <-> fp8 (OCP E4M3FN, E5M2) conversions in integer bit arithmetic.

TVM 0.27's own float8 casts flush subnormals on llvm, so they do not match ml_dtypes
(and the numpy interpreter). These kernels (TE compute, one element per thread) round to
nearest even exactly like ml_dtypes: the normal range by integer rounding of the float32
bits, the subnormal range by an exact power-of-two scaling and an exact integer
rounding. Overflow (only for qir.cast; quantize clips first) gives NaN for E4M3FN, which
has no infinity, and infinity for E5M2.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import relax, te, tirx

from backends.tvm.common import dtype_of
from backends.tvm.exact import round_even


@dataclass(frozen=True)
class Fp8Format:
    exp_bits: int
    man_bits: int
    bias: int
    max_code: int  # largest finite magnitude code
    overflow_code: int  # code for values beyond it (NaN for E4M3FN, inf for E5M2)
    nan_code: int


FORMATS = {
    "float8_e4m3fn": Fp8Format(4, 3, 7, 0x7E, 0x7F, 0x7F),
    "float8_e5m2": Fp8Format(5, 2, 15, 0x7B, 0x7C, 0x7E),
}


def _u32(v: int):
    return tirx.const(v, "uint32")


def _encode(x, fmt: Fp8Format, dtype: str):
    bits = tirx.reinterpret("uint32", x)
    sign = bits >> _u32(31)
    a = bits & _u32(0x7FFFFFFF)
    shift = 23 - fmt.man_bits
    # Normal range: round the float32 bits to man_bits mantissa bits (carries propagate
    # into the exponent), then rebias.
    lsb = (a >> _u32(shift)) & _u32(1)
    rounded = (a + _u32((1 << (shift - 1)) - 1) + lsb) >> _u32(shift)
    normal = rounded - _u32((127 - fmt.bias) << fmt.man_bits)
    # Subnormal range (|x| < 2^(1 - bias)): |x| / 2^(1 - bias - man_bits), rounded.
    scaled = tirx.reinterpret("float32", a) * tirx.const(
        2.0 ** (fmt.bias - 1 + fmt.man_bits), "float32")
    sub = round_even(scaled).astype("uint32")  # ties to even
    min_normal_bits = (1 - fmt.bias + 127) << 23
    mag = tirx.Select(a < _u32(min_normal_bits), sub, normal)
    mag = tirx.Select(mag > _u32(fmt.max_code), _u32(fmt.overflow_code), mag)
    mag = tirx.Select(a > _u32(0x7F800000), _u32(fmt.nan_code), mag)
    code = ((sign << _u32(7)) | mag).astype("uint8")
    return tirx.reinterpret(dtype, code)


def _decode(q, fmt: Fp8Format):
    return decode_bits(tirx.reinterpret("uint8", q).astype("int32"), fmt)


def decode_bits(b, fmt: Fp8Format):
    """The float32 value of fp8 code `b` (int32, 0..255), exact, in integer bit
    arithmetic: a normal magnitude's bits are the code's exponent and mantissa shifted
    into place plus the rebiasing; a subnormal's value is its mantissa times
    2^(1 - bias - man_bits); then the specials, then the sign bit."""
    a = b & 0x7F
    shift = 23 - fmt.man_bits
    normal = tirx.reinterpret("float32", (a << shift) + ((127 - fmt.bias) << 23))
    sub = a.astype("float32") * tirx.const(2.0 ** (1 - fmt.bias - fmt.man_bits), "float32")
    mag = tirx.Select(a < (1 << fmt.man_bits), sub, normal)
    nan = tirx.const(float("nan"), "float32")
    if fmt.overflow_code == fmt.nan_code:  # E4M3FN: S.1111.111 is NaN, no infinity
        mag = tirx.Select(a == 0x7F, nan, mag)
    else:  # E5M2: exponent all ones is inf (mantissa 0) or NaN
        inf = tirx.const(float("inf"), "float32")
        mag = tirx.Select(a >= fmt.overflow_code,
                          tirx.Select(a == fmt.overflow_code, inf, nan), mag)
    sign = (b & 0x80).astype("uint32") << tirx.const(24, "uint32")
    return tirx.reinterpret("float32", tirx.reinterpret("uint32", mag) | sign)


def encode_fp8(bb: relax.BlockBuilder, x: relax.Expr, dtype: str) -> relax.Expr:
    """float32 -> fp8 `dtype`, round to nearest even; beyond the largest finite value
    NaN (E4M3FN) or inf (E5M2), as ml_dtypes casts (quantize clips first)."""
    fmt = FORMATS[dtype]

    def compute(t):
        return te.compute(t.shape, lambda *i: _encode(t(*i), fmt, dtype), name="fp8_encode")

    return _opaque(bb, bb.emit_te(compute, x, primfunc_name_hint=f"encode_{dtype}"))


def decode_fp8(bb: relax.BlockBuilder, q: relax.Expr) -> relax.Expr:
    """fp8 -> float32 (exact)."""
    fmt = FORMATS[dtype_of(q)]

    def compute(t):
        return te.compute(t.shape, lambda *i: _decode(t(*i), fmt), name="fp8_decode")

    return _opaque(bb, bb.emit_te(compute, q, primfunc_name_hint=f"decode_{dtype_of(q)}"))


def _opaque(bb: relax.BlockBuilder, var: relax.Expr) -> relax.Expr:
    """Keep FuseOps from merging an encode with a decode: fused, the bit reinterprets
    collapse into an invalid float -> i8 bitcast in LLVM."""
    call = bb.lookup_binding(var)
    gvar = call.args[0]
    func = bb.get()[gvar]
    bb.update_func(gvar, func.with_attr("op_pattern", 8))
    return var
