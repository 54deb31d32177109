"""Self-checks of the test model zoo (tests/zoo.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

try:
    from tests.zoo import OUTLIER_CHANNELS, ZOO, calibration_batches
except ImportError:  # tests/ itself on sys.path (pytest rootdir-less import)
    from zoo import OUTLIER_CHANNELS, ZOO, calibration_batches

NAMES = sorted(ZOO)
TRANSFORMERS = sorted(n for n, e in ZOO.items() if e.kind == "transformer")


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _assert_same(a, b, atol=1e-5, rtol=1e-5):
    a, b = _as_tuple(a), _as_tuple(b)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.dtype == y.dtype
        torch.testing.assert_close(x, y, atol=atol, rtol=rtol)


def test_registry():
    assert len(ZOO) >= 8
    for name, e in ZOO.items():
        assert e.name == name
        assert e.kind in ("cnn", "transformer", "mlp", "other")
        assert len(e.input_names) == len(e.example_inputs(0))
    batches = calibration_batches("bert_style", 3, seed=5)
    assert len(batches) == 3
    assert not torch.equal(batches[0][0], batches[1][0])
    _assert_same(batches[1], ZOO["bert_style"].example_inputs(6))


@pytest.mark.parametrize("name", NAMES)
def test_eager_runs_deterministic_finite(name):
    e = ZOO[name]
    rng_before = torch.random.get_rng_state()
    m1, m2 = e.build(), e.build()
    assert torch.equal(rng_before, torch.random.get_rng_state()), "build() touched global RNG"
    assert not m1.training and all(not m.training for m in m1.modules())
    args = e.example_inputs(0)
    _assert_same(args, e.example_inputs(0), atol=0, rtol=0)
    with torch.no_grad():
        out = m1(*args)
        _assert_same(out, m2(*args), atol=0, rtol=0)
    for t in _as_tuple(out):
        assert torch.isfinite(t).all()
        assert t.abs().max() < 1e3
        assert t.std() > 1e-3  # not degenerate


@pytest.mark.parametrize("name", NAMES)
def test_batchnorm_nontrivial(name):
    for m in ZOO[name].build().modules():
        if isinstance(m, nn.BatchNorm2d):
            assert not torch.allclose(m.running_mean, torch.zeros_like(m.running_mean))
            assert not torch.allclose(m.running_var, torch.ones_like(m.running_var))
            assert not torch.allclose(m.weight, torch.ones_like(m.weight))
            assert not torch.allclose(m.bias, torch.zeros_like(m.bias))


@pytest.mark.parametrize("name", NAMES)
def test_torch_export(name):
    e = ZOO[name]
    model, args = e.build(), e.example_inputs(0)
    ep = torch.export.export(model, args)
    with torch.no_grad():
        _assert_same(ep.module()(*args), model(*args))
    user_inputs = [s for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    assert len(user_inputs) == len(e.input_names)


@pytest.mark.parametrize("name", NAMES)
def test_symbolic_trace(name):
    e = ZOO[name]
    model = e.build()
    gm = torch.fx.symbolic_trace(model)
    placeholders = [n.target for n in gm.graph.nodes if n.op == "placeholder"]
    assert tuple(placeholders) == e.input_names
    for seed in (0, 1):
        args = e.example_inputs(seed)
        with torch.no_grad():
            _assert_same(gm(*args), model(*args), atol=0, rtol=0)


def _channel_ratio(t: torch.Tensor) -> float:
    per_channel = t.abs().flatten(0, -2).amax(dim=0)
    return float(per_channel.max() / per_channel.median())


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transformer_outlier_channels(name):
    e = ZOO[name]
    model = e.build()
    input_ids = e.example_inputs(3)[0]
    with torch.no_grad():
        emb = model.embeddings(input_ids)  # (B, S, HIDDEN) residual stream entry
    ratio = _channel_ratio(emb)
    assert 20 < ratio < 200, ratio
    per_channel = emb.abs().flatten(0, -2).amax(dim=0)
    top = set(per_channel.topk(len(OUTLIER_CHANNELS)).indices.tolist())
    assert top == set(OUTLIER_CHANNELS)

    # the outliers persist through the residual stream (every layer/block output)
    blocks = model.layers if hasattr(model, "layers") else model.blocks
    outs = []
    hooks = [b.register_forward_hook(lambda _m, _i, o: outs.append(o)) for b in blocks]
    with torch.no_grad():
        model(*e.example_inputs(3))
    for h in hooks:
        h.remove()
    assert len(outs) == len(blocks)
    for o in outs:
        assert torch.isfinite(o).all()
        assert _channel_ratio(o) > 20
