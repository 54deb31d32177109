"""bias-correction: on a linear stack with skewed weights (per-tensor int8 weights leave
most rows a few levels) and inputs with a large mean, correcting the biases by the
measured mean output shift removes most of the output's mean error."""

from __future__ import annotations

import numpy as np
import pytest
from method_models import BIAS_CORRECTION, run_custom, skewed_inputs, skewed_mlp

import frontends
import qir
from passes import PassContext, PassManager

PLAIN = BIAS_CORRECTION.format(bc="")
CORRECTED = BIAS_CORRECTION.format(bc="bias-correction{weights=per-tensor},")


def test_bias_correction_removes_the_mean_error_and_raises_sqnr():
    before, _, _ = run_custom("skewed_mlp", PLAIN)
    after, module, ctx = run_custom("skewed_mlp", CORRECTED)
    # measured: mean |error| 1.57 -> 0.094, SQNR 26.9 -> 38.7 dB
    assert after["mean_err"] < before["mean_err"] / 5, (before, after)
    assert after["sqnr"] > before["sqnr"] + 6, (before, after)
    assert any("bias-correction" in n for n in ctx.notes)
    qir.verify(module)
    assert {op.name for op in module.main.ops} & {"qir.qlinear"}


def test_bias_is_added_where_the_layer_has_none():
    m = frontends.from_torch(skewed_mlp(), skewed_inputs(0))
    fc2 = [op for op in m.main.ops if op.name == "qir.linear"][1]
    assert len(fc2.operands) == 2
    ctx = PassContext(calibration_data=[{"x": skewed_inputs(1)[0].numpy()}], progress=False)
    PassManager("insert-observers,calibrate,bias-correction", ctx=ctx).run(m)
    linears = [op for op in m.main.ops if op.name == "qir.linear"]
    assert all(len(op.operands) == 3 for op in linears)


def test_per_channel_correction_is_smaller_than_per_tensor():
    """The correction equals the shift the simulated weights cause: per-channel weights
    round more finely, so their correction is smaller."""
    def biases(weights):
        m = frontends.from_torch(skewed_mlp(), skewed_inputs(0))
        ctx = PassContext(calibration_data=[{"x": skewed_inputs(1)[0].numpy()}],
                          progress=False)
        PassManager(f"insert-observers,calibrate,bias-correction{{weights={weights}}}",
                    ctx=ctx).run(m)
        from passes.utils import constant_array

        return [constant_array(op.operands[2]) for op in m.main.ops if op.name == "qir.linear"]

    original = skewed_mlp().fc1.bias.numpy()
    shift_t = np.abs(biases("per-tensor")[0] - original).mean()
    shift_c = np.abs(biases("per-channel")[0] - original).mean()
    assert 0 < shift_c < shift_t


def test_bias_correction_needs_calibration_data():
    m = frontends.from_torch(skewed_mlp(), skewed_inputs(0))
    ctx = PassContext(calibration_data=[{"x": skewed_inputs(1)[0].numpy()}], progress=False)
    PassManager("insert-observers,calibrate", ctx=ctx).run(m)
    with pytest.raises(qir.QirError, match="calib"):
        PassManager("bias-correction", ctx=PassContext(progress=False)).run(m)
