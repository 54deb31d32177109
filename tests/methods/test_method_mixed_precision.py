"""mixed-precision: keeps the most sensitive layers (passes/debug_report.py sensitivity
ranking) in float, as few as it takes to reach an output SQNR target."""

from __future__ import annotations

import re

from method_models import TAIL, run_custom, run_zoo

MIXED = ("canonicalize,fold-batchnorm,fuse-activations,mixed-precision{{min-sqnr={t},"
         "outliers=keep{cap}}},calibrate,quantize{{outliers=keep}}," + TAIL)


def _note(ctx):
    note = next(n for n in ctx.notes if n.startswith("mixed-precision"))
    m = re.match(r"mixed-precision: (\d+) of (\d+) layers kept float", note)
    return note, int(m.group(1)), int(m.group(2))


def test_mixed_precision_reaches_the_target_with_few_float_layers():
    plain, _, plain_ctx = run_zoo("bert_style", MIXED.format(t=0, cap=""), calib=4)
    mixed, module, ctx = run_zoo("bert_style", MIXED.format(t=25, cap=""), calib=4)
    note, kept, total = _note(ctx)
    # measured: 0 float layers 15.2 dB; 2 of 17 (pooler, layers.1.intermediate) 27.2 dB
    assert _note(plain_ctx)[1:] == (0, 17)
    assert plain["sqnr"] < 20 and mixed["sqnr"] >= 23, (plain, mixed, note)
    assert 1 <= kept <= total // 3, note
    float_linears = [op for op in module.main.ops if op.name == "qir.linear"]
    assert len(float_linears) == kept


def test_mixed_precision_respects_the_float_budget():
    _, _, ctx = run_custom("skewed_mlp", "canonicalize,mixed-precision{min-sqnr=200,"
                           "max-float=1},calibrate,quantize," + TAIL)
    note, kept, total = _note(ctx)
    assert kept == 1 and total == 3 and note.endswith("misses the 200 dB target")
