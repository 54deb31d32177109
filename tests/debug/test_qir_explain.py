"""Scale provenance (`prov` on the ops that decide a quantization) and `qir explain`."""

from __future__ import annotations

import pytest

import qir
from qir.cli import main
from qir.provenance import chain, explain
from tests.zoo import ZOO

CONCAT_PIPELINE = ("canonicalize,fold-batchnorm,fuse-activations,"
                   "insert-observers{ops=conv2d,linear,matmul,add,concat},calibrate,quantize,"
                   "propagate-scales,lower-to-integer,fuse-requantize,canonicalize")


def run_explain(capsys, path, value) -> tuple[int, str, str]:
    code = main(["explain", str(path), value])
    out = capsys.readouterr()
    return code, out.out, out.err


def first(module, op_name, pred=lambda op: True):
    return next(op for op in module.main.ops if op.name == op_name and pred(op))


@pytest.mark.parametrize("name", ["small_cnn", "functional_net"])
def test_conv_output_names_observer_and_method(name, quantized_zoo, capsys):
    q = quantized_zoo(name)
    acc = first(q.module, "qir.qconv2d")
    rq = acc.result.users[0]
    code, out, err = run_explain(capsys, q.model, f"%{rq.result.name}")
    assert code == 0 and err == ""
    assert out.startswith(f"%{rq.result.name}: tensor<")
    assert "quantization: i8 per-tensor, scale " in out
    observer = rq.attr("prov").split("'")[1]
    assert f"observer '{observer}' (minmax): range [" in out
    # the accumulator's operands are explained too: weight and bias rules
    assert "weight per-channel symmetric max|w|/127" in out
    assert "bias: s_in·s_w" in out


@pytest.mark.parametrize("name", ["small_cnn", "functional_net"])
def test_maxpool_shares_its_input_scale(name, quantized_zoo, capsys):
    q = quantized_zoo(name)
    pool = first(q.module, "qir.max_pool2d")
    src = pool.operands[0]
    assert pool.result.type.is_quantized
    code, out, _ = run_explain(capsys, q.model, pool.result.name)
    assert code == 0
    lines = out.splitlines()
    i = lines.index("provenance:")
    assert lines[i + 1] == (f"  %{pool.result.name} = qir.max_pool2d: moves data on the "
                            f"integers: shares the scale of its input %{src.name}")
    assert lines[i + 2].startswith(f"  <- %{src.name} = qir.requantize: observer '")


@pytest.mark.parametrize("name", ["small_cnn", "resnet_style"])
def test_bias_says_s_in_times_s_w(name, quantized_zoo, capsys):
    q = quantized_zoo(name)
    acc = first(q.module, "qir.qconv2d", lambda op: len(op.operands) == 3)
    bias = acc.operands[2]
    code, out, _ = run_explain(capsys, q.model, f"%{bias.name}")
    assert code == 0
    assert f"%{bias.name} = qir.param: bias: s_in·s_w" in out


def test_concat_inputs_are_aligned(quantized_zoo, capsys):
    q = quantized_zoo("functional_net", CONCAT_PIPELINE)
    cat = first(q.module, "qir.concat")
    assert cat.result.type.is_quantized
    aligned = [v for v in cat.operands if v.owner.name == "qir.requantize"]
    assert aligned, "expected at least one input requantized to the concat's scale"
    code, out, _ = run_explain(capsys, q.model, aligned[0].name)
    assert code == 0
    assert f"aligned to the concat %{cat.result.name}'s scale (observer 'cat' (minmax)" in out
    code, out, _ = run_explain(capsys, q.model, cat.result.name)
    assert "its inputs were aligned to its scale" in out and "aligned to the concat" in out


def test_int16_for_outlier_channels(quantized_zoo, capsys):
    q = quantized_zoo("bert_style")
    op = first(q.module, "qir.quantize", lambda op: op.result.type.quant.storage == "i16")
    code, out, _ = run_explain(capsys, q.model, op.result.name)
    assert code == 0
    assert "-> i16 symmetric; i16 because of outlier channels (" in out
    assert "x the median, threshold 16)" in out


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_quantized_value_has_a_provenance(name, quantized_zoo):
    """Every chain ends at a recorded provenance; it survives save/load unchanged."""
    q = quantized_zoo(name)
    loaded = qir.load(q.model)
    for op in q.module.main.ops:
        for v in op.results:
            if not v.type.is_quantized:
                continue
            last = chain(v)[-1]
            assert last.op is not None and last.op.attr("prov"), (name, v.name, last.text)
        if op.name in ("qir.requantize", "qir.qadd", "qir.qmul", "qir.quantize"):
            assert op.attr("prov"), (name, op)
    for v in q.module.main.values():
        if v.type.is_quantized:  # all but the "defined by" line, which has file:line:col
            mem, disk = explain(q.module, v.name), explain(loaded, v.name)
            assert mem.splitlines()[2:] == disk.splitlines()[2:]
            assert f"{q.model}:" in disk.splitlines()[1]


def test_survives_print_and_parse(quantized_zoo):
    q = quantized_zoo("resnet_style")
    text = qir.print_module(q.module)
    assert 'prov = "observer ' in text and 'prov = "bias: s_in·s_w' in text
    assert qir.print_module(qir.parse(text)) == text


def test_method_recorded(quantized_zoo, capsys):
    pipeline = ("canonicalize,fold-batchnorm,fuse-activations,insert-observers,"
                "calibrate{method=percentile},quantize,propagate-scales,lower-to-integer,"
                "fuse-requantize,canonicalize")
    q = quantized_zoo("small_cnn", pipeline)
    rq = first(q.module, "qir.requantize")
    code, out, _ = run_explain(capsys, q.model, rq.result.name)
    assert "(percentile): range [" in out


def test_unknown_value_suggests_names(quantized_zoo, capsys):
    q = quantized_zoo("functional_net")
    name = first(q.module, "qir.max_pool2d").result.name  # max_pool2d_1
    base = name.rsplit("_", 1)[0]
    assert base != name
    code, out, err = run_explain(capsys, q.model, f"%{base}")
    assert code == 1 and out == ""
    assert f"no value %{base} in {q.model}; did you mean %{name}" in err
    assert "Traceback" not in err
    code, out, err = run_explain(capsys, q.model, "%conv2d")
    assert code == 1 and "did you mean %conv2d_q" in err


def test_float_values_and_arguments(quantized_zoo, capsys):
    q = quantized_zoo("mlp")
    x = q.module.main.args[0].name
    code, out, _ = run_explain(capsys, q.model, x)
    assert code == 0 and "quantization: none (f32)" in out and "function argument" in out
    dq = first(q.module, "qir.dequantize")
    code, out, _ = run_explain(capsys, q.model, dq.result.name)
    assert f"dequantizes %{dq.operands[0].name}" in out and "<- %" in out
