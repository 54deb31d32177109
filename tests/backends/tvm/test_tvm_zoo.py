"""Every zoo model, float and int8, built for llvm against the numpy interpreter.

Float builds match within 1e-5 of the largest output magnitude (float conv, linear and
matmul accumulate in BLAS order in numpy, in loop order in TVM).

Int8 builds must equal the interpreter bit for bit, end to end: every integer value the
model computes (tvm_helpers.with_probes returns them all) and every output. The float ops
left between integer ones (layer_norm, softmax, gelu, tanh, pooling, attention: the "float
islands") follow qir/floatmath.py's reproducible formulas, so a quantize after them sees
the same float32 bits on both backends.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from tvm_helpers import RTOL, mismatch, with_probes, zoo_feeds, zoo_modules

from backends.numpy import run
from backends.tvm import build
from tests.zoo import ZOO


@functools.cache
def compiled(name: str, kind: str):
    float_module, int8_module = zoo_modules(name)
    if kind == "float":
        return float_module, build(float_module, "llvm"), len(float_module.main.outputs)
    probed, n = with_probes(int8_module)
    return probed, build(probed, "llvm"), n


@pytest.mark.parametrize("name", sorted(ZOO))
def test_float_build_matches_the_interpreter(name):
    module, c, _ = compiled(name, "float")
    for feed in zoo_feeds(name, module):
        want, got = run(module, feed), c.run(feed)
        for key, w in want.items():
            assert got[key].dtype == w.dtype and got[key].shape == w.shape
            assert mismatch(got[key], w, RTOL) is None, (key, mismatch(got[key], w, RTOL))


@pytest.mark.parametrize("name", sorted(ZOO))
def test_int8_build_is_bit_exact(name):
    module, c, n = compiled(name, "int8")
    for feed in zoo_feeds(name, module):
        want, got = run(module, feed), c.run(feed)
        assert len(want) > n  # the integer path is compared, not only the outputs
        for key, w in want.items():
            assert got[key].dtype == w.dtype and got[key].shape == w.shape
            assert np.array_equal(got[key], w, equal_nan=w.dtype.kind == "f"), (
                f"{key}: {mismatch(got[key], w, 0.0)}")
