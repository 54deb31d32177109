"""Non-linear quantization (docs/methods.md): weight-only NF4 and k-means codebooks
(`weight-only{format=nf4|kmeans}`, `qir compile --nf4`), and power-of-two scales in the
int8 pipeline (`quantize{scales=pow2}`, `qir compile --int8 --pow2-scales`), where every
requantize becomes a rounding shift. Each runs on llvm and numpy bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from method_models import feeds, layer_module, run_zoo

from backends.numpy import run
from backends.tvm import build
from passes import PassContext, PassManager
from passes.builtin import PIPELINES
from qir.types import CODEBOOKS
from tests.zoo import ZOO


def layer_error(w: np.ndarray, options: str, x: np.ndarray) -> tuple[float, object]:
    """Relative output error of a weight-only layer x @ w.T, and its module."""
    m = layer_module(w)
    PassManager(f"weight-only{{{options}}}", ctx=PassContext(progress=False)).run(m)
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    got = next(iter(run(m, {"x": x}).values()))
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref)), m


def test_nf4_fits_normal_weights_better_than_int4_and_kmeans_fits_them_best():
    """Bell-shaped weights (as trained layers have): NF4's levels at normal quantiles
    beat int4's even grid at the same 4 bits and group; a table learned from the weights
    beats both, barely. Measured: int4 0.108, NF4 0.092, k-means 0.091; 256 levels 0.007."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((64, 256)) * 0.02).astype(np.float32)
    x = rng.standard_normal((1024, 256)).astype(np.float32)
    err = {name: layer_error(w, opts, x)[0] for name, opts in {
        "int4": "bits=4,group-size=64", "nf4": "format=nf4,group-size=64",
        "kmeans": "format=kmeans,group-size=64",
        "kmeans256": "format=kmeans,levels=256,group-size=64"}.items()}
    assert err["nf4"] < 0.95 * err["int4"], err
    assert err["kmeans"] < err["nf4"], err
    assert err["kmeans256"] < 0.1 * err["kmeans"], err


def test_nf4_weights_are_a_codebook_of_indices_with_absmax_scales():
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((8, 128)) * 0.1).astype(np.float32)
    _, m = layer_error(w, "format=nf4,group-size=64", rng.standard_normal((1024, 128))
                       .astype(np.float32))
    param = next(op for op in m.main.ops if op.name == "qir.param")
    q = param.result.type.quant
    assert q.is_codebook and q.codebook_name == "nf4" and q.storage == "u4"
    assert (q.axis, q.block_size, len(q.scales)) == (1, 64, 16)
    data = m.params[param.attr("name")]
    assert data.dtype == np.uint8 and data.max() <= 15
    # scale = max |w| of the group (NF4's levels span [-1, 1]); its largest weight is exact
    groups = np.abs(w.reshape(8, 2, 64)).max(axis=2).ravel()
    np.testing.assert_allclose(q.scales, groups.astype(np.float32), rtol=0)
    deq = np.asarray(CODEBOOKS["nf4"], np.float32)[data] * \
        np.repeat(np.asarray(q.scales, np.float32).reshape(8, 2), 64, axis=1)
    top = np.abs(w).reshape(8, 2, 64).argmax(axis=2)
    for r in range(8):
        for g in range(2):
            c = g * 64 + top[r, g]
            assert deq[r, c] == np.float32(w[r, c]) or -deq[r, c] == abs(np.float32(w[r, c]))


def test_gptq_and_awq_round_onto_the_codebook():
    from method_models import correlated_layer

    w, calib, held = correlated_layer()
    errors = {}
    for name, opts in (("rtn", ""), ("gptq", ",gptq=true")):
        m = layer_module(w)
        ctx = PassContext(calibration_data=[{"x": calib}], progress=False)
        PassManager(f"weight-only{{format=nf4,group-size=32{opts}}}", ctx=ctx).run(m)
        ref = held.astype(np.float64) @ w.T.astype(np.float64)
        got = next(iter(run(m, {"x": held}).values()))
        errors[name] = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
        assert next(op for op in m.main.ops if op.name == "qir.param").result.type.quant \
            .codebook_name == "nf4"
    assert errors["gptq"] < 0.7 * errors["rtn"], errors


@pytest.mark.parametrize("name", ["gpt_style", "bert_style"])
def test_nf4_and_kmeans_zoo_transformers_run_on_llvm_as_in_numpy(name):
    kmeans = "canonicalize,weight-only{format=kmeans,group-size=32},canonicalize"
    for pipeline in (PIPELINES["nf4"], kmeans):
        metrics, module, _ = run_zoo(name, pipeline)
        assert metrics["cos"] > 0.9, (pipeline, metrics)  # (uniform random weights: hard)
        x = feeds(module, [ZOO[name].example_inputs(5)])[0]
        want, got = run(module, x), build(module, "llvm").run(x)
        assert all(np.array_equal(a, b) for a, b in zip(want.values(), got.values()))


def test_weight_only_refuses_an_8_bit_nf4():
    from qir import QirError

    with pytest.raises(QirError, match="format=nf4 is a 4-bit codebook"):
        PassManager("weight-only{bits=8,format=nf4}", ctx=PassContext(progress=False)).run(
            layer_module(np.ones((4, 64), np.float32)))


POW2 = ",".join("quantize{scales=pow2}" if s == "quantize" else s
                for s in PIPELINES["int8"].split(","))


@pytest.mark.parametrize("name", ["resnet_style", "bert_style"])
def test_pow2_scales_make_every_requantize_a_shift(name):
    """Measured (SQNR vs float): resnet_style 41.6 dB -> 39.1, mobilenet_style 43.2 ->
    38.5, bert_style 28.8 -> 24.8, gpt_style 33.9 -> 32.1 (docs/methods.md)."""
    base, _, _ = run_zoo(name, "int8")
    metrics, module, _ = run_zoo(name, POW2)
    assert metrics["sqnr"] > base["sqnr"] - 6 and metrics["sqnr"] > 20, (base, metrics)
    quants = {v.type.quant for op in module.main.ops for v in op.results
              if v.type.is_quantized}
    uniform = [q for q in quants if q.storage != "i32"]
    assert uniform and all(q.pow2 for q in uniform)
    assert all(float(np.frexp(s)[0]) == 0.5 for q in quants for s in q.scales)
    requant = [op for op in module.main.ops if op.name == "qir.requantize"]
    assert requant and all(set(op.attr("multiplier")) == {1} for op in requant)
    x = feeds(module, [ZOO[name].example_inputs(7)])[0]
    want, got = run(module, x), build(module, "llvm").run(x)
    assert all(np.array_equal(a, b) for a, b in zip(want.values(), got.values()))


def test_a_shift_computes_what_the_q31_multiplier_does():
    """(1, k + 31) and quantize_multiplier's (2^30, k + 1) are the same rescale."""
    from backends.numpy.quant import rescale
    from passes.quant_math import quantize_multiplier, shift_multiplier

    x = np.random.default_rng(0).integers(-2**24, 2**24, 10000)
    for k in (-1, -7, -20, -40):
        m, e = shift_multiplier(2.0 ** k, True)
        assert m == 1
        np.testing.assert_array_equal(rescale(x, m, e, "single"),
                                      rescale(x, *quantize_multiplier(2.0 ** k), "single"))
    assert shift_multiplier(0.3, True) == quantize_multiplier(0.3)  # not a power of two
    assert shift_multiplier(0.25, True, "gemmlowp") == quantize_multiplier(0.25)
