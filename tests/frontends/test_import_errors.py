"""Unsupported input is reported whole: one UnsupportedModelError listing every unsupported
op with its module path and this file's line numbers; control flow, training mode and
dtypes qir lacks get their own clear messages."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import frontends
from frontends import UnsupportedModelError
from tests.frontends import helpers
from tests.frontends.helpers import CAPTURES


def line_of(marker: str) -> int:
    return helpers.line_of(marker, __file__)


class Spectral(nn.Module):
    def forward(self, x):
        spectrum = torch.fft.rfft(x).abs()  # LINE-FFT
        _, s, _ = torch.linalg.svd(x)  # LINE-SVD
        return torch.relu(x).sum() + spectrum.sum() + s.sum()


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Spectral()
        self.fc = nn.Linear(6, 6)

    def forward(self, x):
        return self.inner(self.fc(x))


@pytest.mark.parametrize("capture", CAPTURES)
def test_every_unsupported_op_is_listed_with_its_line(capture: str) -> None:
    with pytest.raises(UnsupportedModelError) as info:
        frontends.from_torch(Outer().eval(), (torch.randn(4, 6),), capture=capture)
    err = info.value
    text = str(err)
    kinds = [p.kind for p in err.problems]
    assert kinds == ["unsupported op", "unsupported op"], text
    fft, svd = err.problems
    assert "fft" in fft.target and "svd" in svd.target, text
    for problem, marker in ((fft, "LINE-FFT"), (svd, "LINE-SVD")):
        assert problem.loc.file == __file__
        assert problem.loc.line == line_of(marker)
        assert problem.loc.module_path == "inner"
        assert f"{__file__}:{line_of(marker)}" in text
    assert "docs/frontend.md" in text  # says what to do


class WithUpsample(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2)
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.conv(self.up(x)) + torch.fft.fft2(x).real.mean()


def test_unsupported_leaf_module_in_a_user_graph() -> None:
    """from_fx on a plain symbolic_trace graph: the leaf nn.Upsample is listed with its
    module path, and the fft after it too."""
    gm = torch.fx.symbolic_trace(WithUpsample())
    with pytest.raises(UnsupportedModelError) as info:
        frontends.from_fx(gm, (torch.randn(1, 3, 4, 4),))
    targets = [(p.target, p.loc.module_path) for p in info.value.problems]
    assert ("nn.Upsample", "up") in targets
    assert any("fft2" in t for t, _ in targets)


class Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # LINE-IF
            return x * 2
        return x


@pytest.mark.parametrize("capture", CAPTURES)
def test_data_dependent_control_flow(capture: str) -> None:
    with pytest.raises(UnsupportedModelError) as info:
        frontends.from_torch(Branchy(), (torch.randn(3),), capture=capture)
    text = str(info.value)
    assert text.startswith("model has data-dependent control flow at "
                           f"{__file__}:{line_of('LINE-IF')}: if x.sum() > 0:"), text
    assert "torch.export / symbolic_trace cannot capture it" in text
    assert "Traceback" not in text


class Trained(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.bn(self.conv(x)))


@pytest.mark.parametrize("capture", CAPTURES)
def test_training_mode_is_reported(capture: str) -> None:
    with pytest.raises(UnsupportedModelError) as info:
        frontends.from_torch(Trained().train(), (torch.randn(2, 3, 8, 8),), capture=capture)
    text = str(info.value)
    assert "training mode" in text and "model.eval()" in text
    assert {p.loc.module_path for p in info.value.problems} >= {"bn"}


class ComplexMul(nn.Module):
    def forward(self, x):
        return (x * 1j).abs() + x  # LINE-COMPLEX


@pytest.mark.parametrize("capture", CAPTURES)
def test_complex_dtype_is_reported(capture: str) -> None:
    with pytest.raises(UnsupportedModelError) as info:
        frontends.from_torch(ComplexMul(), (torch.randn(3),), capture=capture)
    (problem,) = info.value.problems
    assert problem.kind == "unsupported dtype" and "complex" in problem.message
    assert problem.loc.line == line_of("LINE-COMPLEX")


def test_complex_input_is_reported() -> None:
    with pytest.raises(UnsupportedModelError) as info:
        frontends.from_torch(nn.Identity(), (torch.randn(3, dtype=torch.cfloat),))
    assert "complex" in str(info.value) and "unsupported input" in str(info.value)


class Mixed(nn.Module):
    """One unsupported op whose result feeds supported ops: only the cause is listed."""

    def forward(self, x):
        y = torch.special.bessel_j0(x)
        return torch.relu(y) + torch.sigmoid(y) * 2


def test_users_of_an_unsupported_op_are_not_listed() -> None:
    with pytest.raises(UnsupportedModelError) as info:
        frontends.from_torch(Mixed(), (torch.randn(3),))
    assert [p.kind for p in info.value.problems] == ["unsupported op"]
    assert "bessel_j0" in info.value.problems[0].target


def test_unsupported_arguments_are_reported() -> None:
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(UnsupportedModelError, match="padding_mode='reflect'"):
        frontends.from_torch(model, (torch.randn(1, 3, 5, 5),), capture="fx")


def test_decomposition_fallback_handles_ops_without_converters() -> None:
    """aten.einsum has no converter, but its torch decomposition (bmm, permute, view) does."""

    class Einsum(nn.Module):
        def forward(self, x, y):
            return torch.einsum("bij,bjk->bik", x, y)

    x, y = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    module = frontends.from_torch(Einsum(), (x, y))
    from backends.numpy import run

    (out,) = run(module, [x.numpy(), y.numpy()]).values()
    torch.testing.assert_close(torch.from_numpy(out), torch.einsum("bij,bjk->bik", x, y))
