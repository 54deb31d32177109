"""docs/frontend.md stays true: its supported-op tables equal the generated ones, and its
"how to add a converter" example runs and gives torch's numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import frontends
from frontends.common import lookup
from tests.frontends.helpers import CAPTURES, check

DOC = Path(__file__).resolve().parents[2] / "docs" / "frontend.md"


def test_supported_ops_table_is_up_to_date() -> None:
    text = DOC.read_text()
    m = re.search(r"<!-- BEGIN supported-ops -->\n(.*)<!-- END supported-ops -->", text,
                  re.S)
    assert m, "docs/frontend.md lacks the supported-ops markers"
    assert m.group(1) == frontends.supported_ops_markdown(), (
        "docs/frontend.md is out of date: paste frontends.supported_ops_markdown() between "
        "the supported-ops markers")


def test_supported_ops_cover_both_capture_styles() -> None:
    rows = frontends.supported_ops()
    by = {(r.capture, r.target) for r in rows}
    for target in ("aten.conv2d.default", "aten.scaled_dot_product_attention.default",
                   "aten.linear.default"):
        assert ("export", target) in by
    for target in ("nn.Conv2d", "F.scaled_dot_product_attention", "Tensor.view",
                   "operator.add"):
        assert ("fx", target) in by
    assert ("both", "operator.getitem") in by
    conv = next(r for r in rows if r.target == "aten.conv2d.default")
    assert conv.qir_ops == ("qir.conv2d",)


def _example_code() -> str:
    text = DOC.read_text()
    m = re.search(r"<!-- converter-example -->\n```python\n(.*?)```", text, re.S)
    assert m, "docs/frontend.md lacks the converter example"
    return m.group(1)


class Shrink(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = nn.Hardshrink(0.3)

    def forward(self, x):
        return F.hardshrink(x * 2, lambd=0.7) + self.act(x)


def test_converter_example_from_the_docs() -> None:
    x = torch.randn(4, 8)
    if lookup("call_function", F.hardshrink) is None:  # before: symbolic_trace lists it
        with pytest.raises(frontends.UnsupportedModelError, match="F.hardshrink"):
            frontends.from_torch(Shrink(), (x,), capture="fx")
        exec(compile(_example_code(), str(DOC), "exec"), {"__name__": "docs_example"})
    for capture in CAPTURES:
        module = check(Shrink(), (x,), capture, run_args=(torch.randn(4, 8),))
        assert not module.main.walk("qir.hardshrink")
        assert len(module.main.walk("qir.where")) == 2
    # user converters are listed by supported_ops() but not in the built-in docs table
    assert any(r.target == "aten.hardshrink.default" for r in frontends.supported_ops())
    assert "hardshrink" not in frontends.supported_ops_markdown()
