"""int8 never gives up on a bias or a range: a conv whose int32 bias overflows with scale
s_in·s_w gets the weight scales of exactly those channels widened (or, on request, stays
float), an all-zero or denormal activation gets a defined scale, and each compiles with
llvm == numpy bit for bit and its quality reported."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import frontends
import qir
from backends.numpy import run
from backends.tvm import build
from passes import PassContext, PassManager
from passes.registry import PIPELINES
from passes.observers import RangeObserver, quant_params_from_range
from qir.provenance import explain
from tests.passes.test_int8_zoo import sqnr


class TinyInput(nn.Module):
    """A conv whose input range is tiny (x * 1e-6, as after a near-dead branch) with
    ordinary biases on some channels: b / (s_in·s_w) leaves int32 there."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():
            self.conv.bias.copy_(torch.tensor([0.5, 0.0, -0.3, 1e-9, 0.0, 0.0, 2.0, 0.0]))

    def forward(self, x):
        y = self.conv(x * 1e-6)
        return self.fc(y.mean((2, 3)) * 1e3)


class DeadBranch(nn.Module):
    """Linear layers whose inputs are all zeros on the calibration data (relu of
    something negative) and of denormal size, beside an ordinary one."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.a, self.b, self.c = nn.Linear(6, 3), nn.Linear(6, 3), nn.Linear(6, 3)

    def forward(self, x):
        dead = torch.relu(-x.abs() - 1.0)  # always 0
        tiny = x * 1e-41  # float32 denormals
        return self.a(dead) + self.b(tiny) + self.c(x)


def compile_int8(model: nn.Module, example: torch.Tensor, pipeline: str = "int8"):
    module = frontends.from_torch(model, (example,))
    float_module = frontends.from_torch(model, (example,))
    gen = torch.Generator().manual_seed(3)
    calib = [{"x": torch.randn(example.shape, generator=gen).numpy()} for _ in range(8)]
    ctx = PassContext(calibration_data=calib, progress=False)
    PassManager(pipeline, ctx=ctx).run(module)
    feed = {"x": torch.randn(example.shape, generator=gen).numpy()}
    want = run(module, feed)
    got = build(module, "llvm").run(feed)
    for k, w in want.items():
        np.testing.assert_array_equal(got[k], w)
    quality = min(sqnr(r, g) for r, g in zip(run(float_module, feed).values(),
                                               want.values()))
    return module, ctx, quality


def test_a_bias_that_overflows_widens_exactly_its_channels():
    module, ctx, quality = compile_int8(TinyInput(), torch.randn(1, 3, 6, 6))
    assert quality > 25, quality
    note = [n for n in ctx.notes if "widened the weight scale" in n]
    assert len(note) == 1 and "conv" in note[0], ctx.notes
    conv = next(op for op in module.main.ops if op.name == "qir.qconv2d")
    w = conv.operands[1]
    # channels with zero bias keep max|w|/127; the 0.5, -0.3 and 2.0 ones are wider
    raw = TinyInput().conv.weight.detach().numpy().reshape(8, -1)
    ratio = np.asarray(w.type.quant.scales) / (np.abs(raw).max(axis=1) / 127)
    assert np.allclose(ratio[[1, 3, 4, 5, 7]], 1.0, rtol=1e-6)
    assert np.all(ratio[[0, 2, 6]] > 1.5)
    assert "widened" in explain(module, w.name)  # qir explain tells why


def test_bias_overflow_can_keep_the_op_float_instead():
    pipeline = PIPELINES["int8"].replace("quantize,", "quantize{bias-overflow=float},", 1)
    module, ctx, _ = compile_int8(TinyInput(), torch.randn(1, 3, 6, 6), pipeline)
    assert any("bias-overflow=float" in n for n in ctx.notes), ctx.notes
    assert [op.name for op in module.main.ops if op.name == "qir.conv2d"] == ["qir.conv2d"]


def test_zero_and_denormal_ranges_get_a_unit_range():
    module, ctx, quality = compile_int8(DeadBranch(), torch.randn(2, 6))
    assert quality > 30, quality
    flagged = [n for n in ctx.notes if "every calibration value was 0" in n]
    assert len(flagged) == 2, ctx.notes  # the dead branch and the denormal one, by name
    assert all(op.name != "qir.linear" for op in module.main.ops)  # both stayed integer
    for values in (np.zeros(16, np.float32), np.full(16, 1e-41, np.float32)):
        obs = RangeObserver("minmax")
        obs.observe(values)
        assert obs.compute_range() == (0.0, 1.0)
        scale, zp = quant_params_from_range(*obs.compute_range(), -128, 127)
        assert scale == pytest.approx(1 / 255) and zp == -128


def test_a_scale_changed_after_quantize_rescales_the_bias_instead_of_staying_float():
    """calibrate{method=percentile} clips a max-pool's input and output differently;
    propagate-scales then changes the input scale of the convs after them, after their
    biases were quantized. They used to stay float without a word."""
    from backends.tvm import build
    from tests.passes.test_int8_zoo import inputs, quantized
    from tests.zoo import ZOO

    pipeline = PIPELINES["int8"].replace("calibrate,", "calibrate{method=percentile},")
    float_module, module, ctx = quantized("small_cnn", pipeline)
    assert not [op for op in module.main.ops if op.name in ("qir.conv2d", "qir.linear")]
    assert len([n for n in ctx.notes if "re-scaled its int32 bias" in n]) == 2, ctx.notes
    feed = inputs(module, ZOO["small_cnn"].example_inputs(5))
    want = run(module, feed)
    got = build(module, "llvm").run(feed)
    for k, w in want.items():
        np.testing.assert_array_equal(got[k], w)
    assert sqnr(next(iter(run(float_module, feed).values())), next(iter(want.values()))) > 25


def test_a_compute_op_left_float_is_named_with_the_reason():
    """A linear whose float result is also returned (as a debugging probe would make it)
    cannot become integer: the note says which and why."""
    from passes.lower_to_integer import lower_to_integer

    model = DeadBranch()
    module = frontends.from_torch(model, (torch.randn(2, 6),))
    calib = [{"x": torch.randn(2, 6).numpy()} for _ in range(4)]
    ctx = PassContext(calibration_data=calib, progress=False)
    PassManager(PIPELINES["int8"].split(",propagate-scales")[0], ctx=ctx).run(module)
    fn = module.main
    linear = next(op for op in fn.ops if op.name == "qir.linear")
    fn.set_outputs(list(fn.outputs) + [linear.result])
    lower_to_integer(module, ctx)
    kept = [n for n in ctx.notes if n.startswith("kept qir.linear")]
    assert kept and "its result is not quantized" in kept[0], ctx.notes
