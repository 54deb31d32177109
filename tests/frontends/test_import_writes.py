"""The last Core ATen inference ops: scatters, index_put, masked_scatter, embedding bags,
fold (col2im), sort / topk, 3-d pooling, pairwise distances, grid sampling and batch norm
with batch statistics. Each model imports from torch.export within 1e-4 of torch eager,
and its llvm build computes what the numpy interpreter does (bit for bit where the
result is integer or the op only moves values)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import qir
from backends.numpy import run
from tests.frontends.helpers import Fn, Fn2, check


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def ints(*shape: int, high: int, seed: int = 0, low: int = 0) -> torch.Tensor:
    return torch.randint(low, high, shape, generator=torch.Generator().manual_seed(seed))


class IndexPut(nn.Module):
    def forward(self, x, i):
        y = x.clone()
        y[i] = 5.0  # rows i (repeats: the last write wins)
        z = x.clone()
        z[:, i[:3], 2] = -x[0, :3, 0]
        w = x.clone()
        w.index_put_((i[:4],), x[1:5] * 2, accumulate=True)  # repeats add up
        m = x.clone()
        m[x > 0.5] = 0.0
        return y, z, w, m


class Bags(nn.Module):
    def __init__(self, mode: str, padding_idx=None):
        super().__init__()
        torch.manual_seed(0)
        self.bag = nn.EmbeddingBag(20, 6, mode=mode, padding_idx=padding_idx)

    def forward(self, idx, offsets):
        return self.bag(idx, offsets)


class BatchStats(nn.Module):
    """BatchNorm in training mode and without running statistics: batch statistics."""

    def __init__(self):
        super().__init__()
        self.no_stats = nn.BatchNorm2d(4, track_running_stats=False)

    def forward(self, x):
        return self.no_stats(x), F.batch_norm(x, None, None, training=True)


class GridScatter(nn.Module):
    """Convs around a grid_sample and a scatter-add: int8 with float islands."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3)

    def forward(self, x, g):
        y = F.grid_sample(torch.relu(self.a(x)), g, align_corners=False)
        y = self.b(y)
        flat = y.flatten(1)
        return torch.scatter_add(flat, 1, (flat.abs() * 7).long().clamp(max=flat.shape[1] - 1), flat)


def grid_scatter_int8():
    """The model and its example inputs (also packed by bench.gpu_check --writes)."""
    return GridScatter().eval(), (randn(1, 3, 12, 12), randn(1, 10, 10, 2, seed=1) * 0.9)


def grid_scatter_calib(seed: int):
    return (randn(1, 3, 12, 12, seed=seed).numpy(), (randn(1, 10, 10, 2, seed=seed + 9) * 0.9).numpy())


def _models():
    img = randn(2, 4, 9, 9)
    vol = randn(2, 3, 8, 9, 7)
    return {
        "scatter": (Fn2(lambda x, i: (
            torch.scatter(x, 1, i, x * 2), x.scatter(0, i[:2, :3] % 3, 1.5),
            torch.scatter_add(x, 1, i, torch.ones_like(x)),
            x.scatter_reduce(1, i, x * 3, "amax", include_self=False),
            x.scatter_reduce(1, i, x, "mean"), x.scatter_reduce(0, i[:2] % 3, x[:2], "prod"),
            x.scatter_reduce(1, i, x, "amin", include_self=True))),
            (randn(3, 5), ints(3, 5, high=5))),
        "index_put": (IndexPut(), (randn(6, 5, 4), torch.tensor([4, 0, 4, 2, 1]))),
        "masked_scatter": (Fn2(lambda x, s: x.masked_scatter(x > 0, s)),
                           (randn(4, 6), randn(30, seed=1))),
        "embedding_bag_sum": (Bags("sum"), (ints(11, high=20), torch.tensor([0, 3, 3, 7]))),
        "embedding_bag_mean": (Bags("mean", padding_idx=2),
                               (torch.tensor([2, 5, 2, 7, 9, 2, 1]), torch.tensor([0, 2, 3, 5]))),
        "embedding_bag_max": (Bags("max"), (ints(9, high=20), torch.tensor([0, 4, 4, 6]))),
        "fold": (Fn(lambda x: (F.fold(x, (7, 8), (3, 2), padding=1, stride=(2, 1)),
                               F.fold(x[:, :18, :12], (6, 7), 3, dilation=(1, 2)))),
                 (randn(2, 24, 36),)),
        "sort_topk": (Fn(lambda x: (torch.sort(x, dim=1)[0], torch.sort(x, descending=True),
                                   torch.topk(x, 3), torch.topk(x, 2, dim=0, largest=False),
                                   x.argsort(dim=-1, stable=True))),
                      (randn(4, 7),)),
        "pool3d": (Fn(lambda x: (
            F.max_pool3d(x, 3, stride=2, padding=1), F.max_pool3d(x, (2, 3, 2), ceil_mode=True),
            F.avg_pool3d(x, 3, stride=2, padding=1), F.avg_pool3d(x, 2, count_include_pad=False),
            F.avg_pool3d(x, (3, 2, 3), stride=(2, 2, 1), padding=1, ceil_mode=True,
                         count_include_pad=False),
            F.avg_pool3d(x, 2, divisor_override=3), F.adaptive_avg_pool3d(x, (3, 4, 5)),
            F.adaptive_avg_pool3d(x, 1))), (vol,)),
        "distances": (Fn2(lambda a, b: (torch.cdist(a, b), torch.cdist(a, b, p=1.0),
                                        torch.cdist(a, b, p=float("inf")),
                                        F.pdist(a[0]), F.pdist(a[1], p=3.0))),
                      (randn(2, 30, 5), randn(2, 27, 5, seed=1))),
        "grid_sample": (Fn2(lambda x, g: tuple(
            F.grid_sample(x, g, mode=m, padding_mode=p, align_corners=a)
            for m in ("bilinear", "nearest") for p in ("zeros", "border", "reflection")
            for a in (False, True))), (img, randn(2, 5, 6, 2) * 0.8)),
        "batch_stats": (BatchStats(), (img,)),
    }


MODELS = _models()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_imports_within_1e4_of_torch_and_llvm_matches_numpy(name):
    from backends.tvm import build

    model, args = MODELS[name]
    module = check(model, args, "export")
    inputs = [a.numpy() for a in args]
    want = run(module, inputs)
    got = build(module, "llvm").run(inputs)
    for key, w in want.items():
        g = got[key]
        assert g.dtype == w.dtype and g.shape == w.shape, key
        if w.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w, err_msg=key)
        else:
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-5 * max(1.0, np.abs(w).max()),
                                       err_msg=key)


def test_grid_sample_and_scatter_stay_float_islands_in_an_int8_model():
    """Convs around a grid_sample and a scatter-add compile to int8; llvm == numpy bit
    for bit, and the float ops between the integer convs keep the output close."""
    from backends.tvm import build
    from passes import PassContext, PassManager

    model, args = grid_scatter_int8()
    module = check(model, args, "export")
    float_module = check(model, args, "export")
    names = [a.name for a in module.main.args]
    calib = [dict(zip(names, grid_scatter_calib(s))) for s in range(4)]
    PassManager("int8", ctx=PassContext(calibration_data=calib, progress=False)).run(module)
    kinds = {op.name for op in module.main.ops}
    assert "qir.qconv2d" in kinds and "qir.scatter" in kinds, kinds
    feed = [a.numpy() for a in args]
    want = run(module, feed)
    got = build(module, "llvm").run(feed)
    for key, w in want.items():
        np.testing.assert_array_equal(got[key], w, err_msg=key)
    ref = next(iter(run(float_module, feed).values()))
    out = next(iter(want.values()))
    assert np.abs(out - ref).max() <= 0.1 * np.abs(ref).max()
