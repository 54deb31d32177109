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
from tests.real_models import INSTALL, REAL_MODELS


def _param(name: str):
    return pytest.param(name, marks=pytest.mark.slow) if REAL_MODELS[name].slow else name


def _like(t: torch.Tensor, gen: torch.Generator) -> np.ndarray:
    """A random input shaped and typed like `t` (token ids below 100)."""
    if t.dtype.is_floating_point:
        return torch.randn(t.shape, generator=gen).numpy()
    return torch.randint(0, 100, t.shape, generator=gen, dtype=t.dtype).numpy()


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
    calib = [dict(zip(names, (_like(t, gen) for t in inputs))) for _ in range(4)]
    ctx = PassContext(calibration_data=calib, progress=False)
    PassManager("int8", ctx=ctx).run(module)
    assert not [op for op in module.main.ops if op.name in ("qir.conv2d", "qir.linear")] \
        or any("kept" in n for n in ctx.notes), ctx.notes  # a float compute op is explained

    feed = dict(zip(names, (_like(t, gen) for t in inputs)))
    want_int8 = run(module, feed)
    got_llvm = build(module, "llvm").run(feed)
    for key, w in want_int8.items():
        np.testing.assert_array_equal(got_llvm[key], w, err_msg=key)
    quality = sqnr(next(iter(run(float_module, feed).values())),
                   next(iter(want_int8.values())))
    print(f"{name}: int8 SQNR {quality:.1f} dB, notes: {ctx.notes}")
    assert quality >= REAL_MODELS[name].min_sqnr, f"{name}: int8 SQNR {quality:.1f} dB"
