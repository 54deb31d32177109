"""Every zoo model imports via torch.export and via symbolic_trace, verifies, and the numpy
interpreter matches torch eager on inputs other than the example inputs."""

from __future__ import annotations

import pytest
import torch

import frontends
import qir
from tests.frontends.helpers import CAPTURES, check, flat, max_rel_error
from tests.zoo import ZOO


@pytest.mark.parametrize("capture", CAPTURES)
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model(name: str, capture: str) -> None:
    entry = ZOO[name]
    module = check(entry.build(), entry.example_inputs(0), capture,
                   run_args=entry.example_inputs(1))
    assert [a.name for a in module.main.args] == list(entry.input_names)
    # every weight keeps its state_dict name
    state = set(entry.build().state_dict())
    assert module.params and set(module.params) <= state | {
        n for n, _ in entry.build().named_buffers()}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_decomposed_export(name: str) -> None:
    """Core-ATen graphs (after run_decompositions) import too; addmm(b, x, w.t()) becomes
    qir.linear again."""
    entry = ZOO[name]
    model = entry.build()
    ep = torch.export.export(model, entry.example_inputs(0)).run_decompositions()
    module = frontends.from_exported_program(ep)
    qir.verify(module)
    from backends.numpy import run

    args = entry.example_inputs(1)
    got = list(run(module, [a.numpy() for a in args]).values())
    with torch.no_grad():
        want = flat(model(*args))
    for g, w in zip(got, want):
        assert max_rel_error(g, w.numpy()) <= 1e-4
    if any(isinstance(m, torch.nn.Linear) for m in model.modules()):
        assert module.main.walk("qir.linear")
