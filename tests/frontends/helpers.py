"""Differential checking for frontend tests: import a torch model, verify the IR, run it
with the numpy interpreter and compare against torch eager."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

import frontends
import qir
from backends.numpy import run

CAPTURES = ("export", "fx")


class Fn(nn.Module):
    """A one-input model from a function (forward is the function itself)."""

    def __init__(self, f: Callable[..., Any]):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x)


class Fn2(nn.Module):
    """A two-input model from a function."""

    def __init__(self, f: Callable[..., Any]):
        super().__init__()
        self.f = f

    def forward(self, x, y):
        return self.f(x, y)


def flat(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    return [t for o in out for t in flat(o)]


def max_rel_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| relative to max |want| (absolute when want is all zeros)."""
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    if want.dtype == np.bool_ or want.dtype.kind in "iu":
        return 0.0 if np.array_equal(got, want) else float("inf")
    scale = float(np.abs(want).max()) if want.size else 0.0
    diff = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max()) if want.size \
        else 0.0
    return diff / scale if scale > 0 else diff


def check(model: nn.Module, args: tuple, capture: str, tol: float = 1e-4,
          run_args: tuple | None = None) -> qir.Module:
    """Import `model` with `capture`, verify it, and compare the interpreter with eager on
    `run_args` (default: the example inputs). Returns the module."""
    model = model.eval()
    if capture == "export":  # no decomposition fallback: each ATen op must have a converter
        ep = frontends.export_model(model, args)
        module = frontends.from_exported_program(ep, decompose=False)
    else:
        module = frontends.from_torch(model, args, capture=capture)
    qir.verify(module)
    inputs = run_args if run_args is not None else args
    with torch.no_grad():
        want = flat(model(*inputs))
    got = list(run(module, [a.numpy() for a in inputs]).values())
    assert len(got) == len(want), f"{len(got)} outputs, torch has {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        err = max_rel_error(np.asarray(g), w.numpy())
        assert err <= tol, f"output {i}: relative error {err:.3g} > {tol}\n{module}"
    return module


def line_of(marker: str, path: str) -> int:
    """The line of `path` that ends with the comment `# <marker>`."""
    with open(path) as f:
        for i, text in enumerate(f, 1):
            if text.rstrip().endswith(f"# {marker}"):
                return i
    raise AssertionError(f"no '# {marker}' in {path}")
