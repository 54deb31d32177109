"""Locations carry the torch module path and the user's source line (this file), value
names come from fx node names and forward() arguments, params from state_dict names."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import frontends
import qir
from tests.frontends import helpers
from tests.frontends.helpers import CAPTURES


def line_of(marker: str) -> int:
    return helpers.line_of(marker, __file__)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.bn(self.conv(x))  # LOC-CONV
        return F.relu(y) + x.mean(1, keepdim=True)  # LOC-RELU


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Block()
        self.head = nn.Linear(4, 2)

    def forward(self, image, scale):
        h = self.stem(image) * scale  # LOC-STEM
        return self.head(h.mean((2, 3)))  # LOC-HEAD


def _import(capture: str) -> qir.Module:
    args = (torch.randn(1, 3, 6, 6), torch.tensor(2.0))
    return frontends.from_torch(Net().eval(), args, capture=capture)


def _op(module: qir.Module, name: str) -> qir.Op:
    (op,) = module.main.walk(name)
    return op


@pytest.mark.parametrize("capture", CAPTURES)
def test_locations_carry_module_path_and_source_line(capture: str) -> None:
    m = _import(capture)
    conv, bn, relu = _op(m, "qir.conv2d"), _op(m, "qir.batch_norm"), _op(m, "qir.relu")
    linear = _op(m, "qir.linear")
    assert conv.loc == qir.Location("stem.conv", __file__, line_of("LOC-CONV"))
    assert bn.loc == qir.Location("stem.bn", __file__, line_of("LOC-CONV"))
    assert relu.loc == qir.Location("stem", __file__, line_of("LOC-RELU"))
    assert linear.loc == qir.Location("head", __file__, line_of("LOC-HEAD"))
    mul = next(op for op in m.main.ops if op.name == "qir.mul")
    assert mul.loc == qir.Location("", __file__, line_of("LOC-STEM"))
    for op in m.main.ops:  # every op has a location
        assert op.loc.module_path is not None and op.loc.file == __file__, op
    text = str(m)
    assert f'loc("stem.conv", "{__file__}":{line_of("LOC-CONV")})' in text


@pytest.mark.parametrize("capture", CAPTURES)
def test_names(capture: str) -> None:
    m = _import(capture)
    assert [a.name for a in m.main.args] == ["image", "scale"]
    assert set(m.params) == set(Net().state_dict()) - {"stem.bn.num_batches_tracked"}
    for op in m.main.walk("qir.param"):
        assert op.result.name == op.attr("name")  # %stem.conv.weight
    # fx node names become value names: export says conv2d, symbolic_trace stem_conv
    conv = _op(m, "qir.conv2d").result.name
    assert conv == ("conv2d" if capture == "export" else "stem_conv")
    assert _op(m, "qir.relu").result.name == "relu"


def test_intermediate_values_are_named_after_their_node() -> None:
    """A node lowered to several ops: the last result has the node's name, the others
    `<node>.<op>` (scalars become constants named like that)."""
    m = frontends.from_torch(nn.Sequential(nn.Hardtanh(0.0, 3.0)), (torch.randn(4),))
    m2 = frontends.from_torch(Scale(), (torch.randint(0, 5, (4,)),))
    assert [v.name for op in m2.main.ops for v in op.results] == [
        "mul.cast", "mul.constant", "mul"]
    assert [op.result.name for op in m.main.ops] == ["hardtanh"]


class Scale(nn.Module):
    def forward(self, x):
        return x * 0.5
