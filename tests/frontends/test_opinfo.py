"""Converters against PyTorch's own samples: the OpInfo database
(torch.testing._internal.common_methods_invocations) gives sample inputs for most ATen
ops; each sample, as a one-op model, is exported, imported and run in the numpy
interpreter, and must match torch eager (floats within 1e-4 of the largest magnitude,
integers and bools equal). The first SAMPLES float32 samples per op whose input is one
tensor of rank >= 1 (ops taking lists, like cat, are tested elsewhere); samples
torch.export itself refuses are skipped."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import frontends
from backends.numpy import run

SAMPLES = 4
OPS = ["abs", "acos", "acosh", "amax", "amin", "argmax", "argmin", "asin", "asinh", "atan",
       "atan2", "atanh", "ceil", "chunk", "clamp", "cos", "cosh", "cumsum", "diagonal",
       "erf", "exp", "expand", "expm1", "flatten", "flip", "floor", "fmod", "gather",
       "index_select", "isinf", "isnan", "linalg.vector_norm", "log10", "log1p", "log2",
       "log_softmax", "logical_xor", "masked_fill", "maximum", "mean", "minimum", "narrow",
       "neg", "nn.functional.embedding", "nn.functional.gelu", "nn.functional.hardswish",
       "nn.functional.interpolate", "nn.functional.layer_norm", "nn.functional.leaky_relu",
       "nn.functional.normalize", "nn.functional.pad", "nn.functional.relu",
       "nn.functional.silu", "permute", "pow", "prod", "reciprocal", "remainder", "repeat",
       "reshape", "roll", "round", "rsqrt", "sigmoid", "sign", "sin", "sinh", "softmax",
       "split", "sqrt", "squeeze", "sum", "tan", "tanh", "transpose", "tril",
       "triu", "trunc", "unbind", "unsqueeze", "where",
       # writes at computed places, sorting, 3-d pooling, distances, grid sampling
       "scatter", "scatter_add", "scatter_reduce.sum", "scatter_reduce.prod",
       "scatter_reduce.mean", "scatter_reduce.amax", "scatter_reduce.amin", "index_put",
       "masked_scatter", "nn.functional.embedding_bag", "sort", "argsort", "msort", "topk",
       "nn.functional.max_pool3d", "nn.functional.avg_pool3d",
       "nn.functional.adaptive_avg_pool3d", "cdist", "nn.functional.pdist",
       "nn.functional.grid_sample", "nn.functional.batch_norm"]
# (op, sample index): known not to import, and why
TRIES = 128  # samples looked at per op (some lead with many 0-d inputs)


def _skipped(sample) -> bool:
    """0-d inputs, zero-size tensors anywhere (qir has none), and pooling asked for its
    indices (qir computes the values only)."""
    if sample.kwargs.get("return_indices"):
        return True
    tensors = [sample.input, *[a for a in sample.args if isinstance(a, torch.Tensor)],
               *[a for a in sample.kwargs.values() if isinstance(a, torch.Tensor)]]
    return sample.input.dim() == 0 or any(t.numel() == 0 for t in tensors)


@functools.cache
def op_db() -> dict[str, object]:
    from torch.testing._internal.common_methods_invocations import op_db as db

    by_name = {}
    for o in db:  # "scatter_reduce.sum" names a variant; a plain name its first entry
        full = f"{o.name}.{o.variant_test_name}" if o.variant_test_name else o.name
        for key in (full, o.name):
            if key in OPS:
                by_name.setdefault(key, o)
    return by_name


class OneOp(torch.nn.Module):
    def __init__(self, fn, args, kwargs):
        super().__init__()
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def forward(self, x):
        return self.fn(x, *self.args, **self.kwargs)


def _flat(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat(o)]
    return []


def _matches(got: np.ndarray, want: np.ndarray) -> bool:
    if want.dtype.kind in "biu":
        return np.array_equal(got, want)
    nan = np.isnan(got) & np.isnan(want)
    finite = np.isfinite(want)
    scale = max(float(np.abs(want[finite]).max()) if finite.any() else 1.0, 1e-30)
    err = np.where(nan | (got == want), 0.0, np.abs(got.astype(np.float64) - want))
    return bool(np.all(err <= 1e-4 * scale))


@pytest.mark.parametrize("name", OPS)
def test_opinfo_samples_import_and_match_eager(name):
    info = op_db().get(name)
    if info is None:
        pytest.skip(f"torch {torch.__version__} has no OpInfo named {name}")
    checked = 0
    for k, sample in enumerate(info.sample_inputs("cpu", torch.float32)):
        if k >= TRIES or checked >= SAMPLES:
            break
        if not isinstance(sample.input, torch.Tensor) or _skipped(sample):
            continue
        model = OneOp(info.op, sample.args, sample.kwargs).eval()
        try:
            with torch.no_grad():
                want = _flat(model(sample.input))
            ep = torch.export.export(model, (sample.input,))
        except Exception:  # noqa: BLE001  (torch refuses the sample itself)
            continue
        module = frontends.from_exported_program(ep)
        got = list(run(module, {module.main.args[0].name: sample.input.numpy()}).values())
        assert len(got) == len(want), f"sample {k}: {sample}"
        for g, w in zip(got, want):
            assert _matches(np.asarray(g), w.numpy()), f"sample {k}: {sample}"
        checked += 1
    assert checked, f"no sample of {name} was checked"
