"""smoothquant: on the BERT-style zoo model (activation outlier channels ~40x the median),
plain W8A8 (int8 everywhere, quantize{outliers=keep}) loses the small channels; moving
the outliers into the weights first recovers it. On the GPT-style model (pre-LN) the
scales fold into the LayerNorms."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from method_models import STATIC_KEEP, feeds, imported, outputs, run_zoo, zoo_model

import qir
from passes import PassContext, PassManager
from tests.zoo import ZOO, calibration_batches


def test_smoothquant_recovers_w8a8_on_bert():
    plain, _, _ = run_zoo("bert_style", STATIC_KEEP.format(sq=""))
    smooth, module, ctx = run_zoo("bert_style", STATIC_KEEP.format(sq="smoothquant,"))
    # measured: 14.3 dB (cos 0.982) -> 36.1 dB (cos 0.9999)
    assert plain["sqnr"] < 20
    assert smooth["sqnr"] >= plain["sqnr"] + 6, (plain, smooth)
    assert smooth["cos"] > 0.999
    notes = [n for n in ctx.notes if n.startswith("smoothquant")]
    assert len(notes) == 5 and all("folded into mul" in n for n in notes)  # post-LN: mul
    storages = {v.type.quant.storage for op in module.main.ops for v in op.results
                if v.type.is_quantized}
    assert "i16" not in storages  # really W8A8


def test_smoothquant_alpha_search_and_options():
    plain, _, _ = run_zoo("bert_style", STATIC_KEEP.format(sq=""))
    searched, _, ctx = run_zoo("bert_style", STATIC_KEEP.format(sq="smoothquant{search=true},"))
    assert searched["sqnr"] >= plain["sqnr"] + 6
    alphas = {n.split("alpha ")[1].split(",")[0] for n in ctx.notes if "alpha" in n}
    assert alphas <= {"0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"} and len(alphas) > 1
    with pytest.raises(qir.QirError, match="alpha"):
        PassManager("smoothquant{alpha=1.5}", ctx=PassContext(calibration_data=[{}])).run(
            qir.parse("func @main(%x: tensor<1xf32>) -> (tensor<1xf32>) {\n  return %x\n}\n"))


@functools.cache
def _smoothed(name: str):
    entry = ZOO[name]
    module = imported(zoo_model(name), entry.example_inputs(0))
    ref = imported(zoo_model(name), entry.example_inputs(0))
    calib = feeds(module, calibration_batches(name, 4))
    ctx = PassContext(calibration_data=calib, progress=False)
    PassManager("canonicalize,smoothquant", ctx=ctx).run(module)
    return ref, module, ctx


@pytest.mark.parametrize("name", ["bert_style", "gpt_style"])
def test_smoothquant_keeps_float_outputs(name):
    ref, module, _ = _smoothed(name)
    feed = feeds(module, [ZOO[name].example_inputs(s) for s in (5, 6)])
    a, b = outputs(ref, feed)[0], outputs(module, feed)[0]
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()


def test_pre_ln_scales_fold_into_layer_norm():
    _, module, ctx = _smoothed("gpt_style")
    notes = [n for n in ctx.notes if n.startswith("smoothquant")]
    # ln_1 -> c_attn and ln_2 -> c_fc of both blocks, ln_f -> lm_head (8x outliers)
    assert len(notes) == 5 and all("folded into layer_norm" in n for n in notes)
    assert "qir.mul" not in {op.name for op in module.main.ops}
    # alpha 0.5 takes the square root of the outliers: 28x -> about 5x
    from passes.capture import collect, rows

    x = [op.operands[0] for op in module.main.ops if op.name == "qir.linear"][0]
    seen = collect(module, ctx.calibration_data, [x],
                   lambda _v, a: np.abs(rows(a)).max(axis=0))[id(x)]
    per = np.max(seen, axis=0)
    assert "28x outliers" in notes[0] and per.max() / np.median(per) < 8
