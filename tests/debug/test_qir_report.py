"""`qir report`: float and quantized side by side, per layer and per output; sizes; HTML;
per-layer sensitivity (also as `passes.debug_report.sensitivity`)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import qir
from backends.numpy import run
from passes import PassContext, PassManager
from passes.debug_report import (copy_module, debug_report, quantize_with_reference,
                                 sensitivity)
from passes.report import quantization_report
from qir.cli import main
from tests.debug.conftest import samples_of, save_samples


def report(capsys, *args) -> tuple[int, str, str]:
    code = main(["report", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def sqnr(ref, got) -> float:
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    return float(10 * np.log10((ref ** 2).sum() / ((ref - got) ** 2).sum()))


@pytest.mark.parametrize("name", ["small_cnn", "multi_io"])
def test_report_on_an_export_archive(name, exported_zoo, capsys):
    archive, data = exported_zoo(name)
    code, out, err = report(capsys, archive, "--inputs", data)
    assert code == 0, err
    assert "===== per-layer error: quantized vs float on 8 samples =====" in out
    assert "===== outputs (end to end) =====" in out
    assert re.search(r"float [0-9.]+ KiB -> quantized [0-9.]+ KiB \([0-9.]+x smaller\)", out)
    marked = [line for line in out.splitlines() if line.startswith("! ")]
    assert len(marked) == 3

    code, out, _ = report(capsys, archive, "--inputs", data, "--json")
    d = json.loads(out)
    assert d["samples"] == 8 and d["pipeline"] == "int8"
    layer_keys = {"value", "op", "loc", "storage", "scale", "zero_point", "lo", "hi",
                  "sqnr_db", "float_value", "cosine", "max_abs_err", "clip_rate"}
    assert d["layers"] and all(set(r) == layer_keys for r in d["layers"])
    for r in d["layers"]:
        assert r["sqnr_db"] > 20 and 0.99 < r["cosine"] <= 1.0 + 1e-12
        assert r["max_abs_err"] >= 0 and 0 <= r["clip_rate"] <= 1
        assert r["lo"] == pytest.approx(r["scale"] * (-128 - r["zero_point"]))
    assert len(d["outputs"]) == {"small_cnn": 1, "multi_io": 3}[name]
    assert all(o["sqnr_db"] > 25 for o in d["outputs"])
    assert 3.0 < d["size"]["ratio"] < 4.2  # int8 weights, int32 biases
    worst = sorted(d["layers"], key=lambda r: r["sqnr_db"])[:3]
    assert d["worst_layers"] == [r["value"] for r in worst]


@pytest.mark.parametrize("name", ["resnet_style", "gpt_style"])
def test_numbers_match_an_independent_computation(name, quantized_zoo):
    """Per-layer SQNR equals `qir opt --report`'s; output SQNR, cosine and max error
    equal numpy on the interpreter's outputs; sizes are the parameter bytes."""
    q = quantized_zoo(name)
    module = qir.load(q.imported)
    ref, quant, _ = quantize_with_reference(module, q.samples)
    r = debug_report(ref, quant, q.samples)
    old = {row.value: row.sqnr_db for row in quantization_report(ref, quant, q.samples)}
    assert old and {row.value: row.sqnr_db for row in r.layers} == pytest.approx(old)
    refs = [list(run(ref, s).values()) for s in q.samples]
    gots = [list(run(quant, s).values()) for s in q.samples]
    for i, o in enumerate(r.outputs):
        a = np.concatenate([x[i].ravel() for x in refs]).astype(np.float64)
        b = np.concatenate([x[i].ravel() for x in gots]).astype(np.float64)
        assert o.sqnr_db == pytest.approx(sqnr(a, b), rel=1e-9)
        assert o.cosine == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        assert o.max_abs_err == pytest.approx(np.abs(a - b).max())
    assert r.float_bytes == sum(ref.params[op.attr("name")].nbytes for op in ref.main.ops
                                if op.name == "qir.param") + sum(
        op.attr("value").nbytes for op in ref.main.ops if op.name == "qir.constant")
    assert r.quant_bytes < r.float_bytes / 2  # (gpt_style keeps embeddings float)


def test_clip_rate(quantized_zoo):
    """Calibrated on data half as wide, the input quantizer saturates: the clip rate is
    the share of inputs beyond the range by more than half a step."""
    q = quantized_zoo("mlp")
    module = qir.load(q.imported)
    small = [{k: v * 0.5 for k, v in s.items()} for s in q.samples]
    ref, quant, _ = quantize_with_reference(module, small)
    r = debug_report(ref, quant, q.samples)
    row = next(row for row in r.layers if row.value == "x_q")
    x = np.concatenate([s["x"].ravel() for s in q.samples])
    want = np.mean((x < row.lo - row.scale / 2) | (x > row.hi + row.scale / 2))
    assert row.clip_rate == pytest.approx(want) and 0.05 < want < 0.5
    r2 = debug_report(ref, quant, small)
    assert next(x for x in r2.layers if x.value == "x_q").clip_rate == 0


def test_outdir_and_float_qir(quantized_zoo, capsys, tmp_path):
    """(b) a `qir compile` output: float.qir + model.qir (+ manifest) compared as they
    are, on other inputs than the calibration data; (a) a float .qir quantized here."""
    q = quantized_zoo("small_cnn")
    module = qir.load(q.imported)
    ref, quant, _ = quantize_with_reference(module, q.samples)
    out = tmp_path / "out"
    out.mkdir()
    qir.save(ref, out / "float.qir")
    qir.save(quant, out / "model.qir")
    from qir.cli.artifact import FORMAT, sha256, versions

    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256(p)} for p in out.iterdir()}
    (out / "manifest.json").write_text(json.dumps({
        "format": FORMAT, "target": "numpy", "pipeline": "int8", "files": files,
        "versions": versions("numpy")}))
    held_out = samples_of(module, "small_cnn", 4, seed=500)
    save_samples(held_out, tmp_path / "held.npz")
    code, text, err = report(capsys, out, "--inputs", tmp_path / "held.npz", "--json")
    assert code == 0, err
    d = json.loads(text)
    want = debug_report(ref, quant, held_out)
    assert d["samples"] == 4
    assert [o["sqnr_db"] for o in d["outputs"]] == pytest.approx(
        [o.sqnr_db for o in want.outputs])
    code, text, err = report(capsys, q.imported, "--inputs", q.data, "--json")
    assert code == 0, err
    assert json.loads(text)["outputs"][0]["sqnr_db"] == pytest.approx(
        debug_report(ref, quant, q.samples).outputs[0].sqnr_db)


def test_sort_and_html(exported_zoo, capsys, tmp_path):
    archive, data = exported_zoo("small_cnn")
    page = tmp_path / "r.html"
    code, out, err = report(capsys, archive, "--inputs", data, "--sort", "sqnr", "--html",
                            page, "--sensitivity")
    assert code == 0 and f"wrote {page}" in err
    table = out.split("=====\n")[1].split("\n\n")[0].splitlines()
    end = table[0].index("SQNR dB") + len("SQNR dB")
    rows = [line for line in table[1:] if not line.startswith("  ! =")]
    values = [float(line[end - 8:end]) for line in rows]
    assert values == sorted(values) and len(values) >= 5
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
    assert html.count("data:image/png;base64,") == 2  # per-layer SQNR and sensitivity
    assert "<link" not in html and "<script" not in html and "http" not in html
    assert html.count("<tr class='worst'>") == 6  # 3 layers + 3 most sensitive
    import base64

    png = re.search(r"base64,([A-Za-z0-9+/=]+)", html).group(1)
    assert base64.b64decode(png)[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", ["resnet_style", "mlp"])
def test_sensitivity(name, quantized_zoo):
    """One layer at a time, worst first; a row equals quantizing that layer alone with
    insert-observers{only=%layer} and measuring the output by hand."""
    q = quantized_zoo(name)
    module = qir.load(q.imported)
    samples = q.samples[:4]  # the interpreter's float convs are what takes the time
    rows = sensitivity(module, samples)
    ref, quant, _ = quantize_with_reference(module, samples)
    n_layers = len([op for op in quant.main.ops if op.name in
                    ("qir.qconv2d", "qir.qlinear", "qir.qadd", "qir.qmatmul")])
    assert len(rows) == n_layers
    assert [r.sqnr_db for r in rows] == sorted(r.sqnr_db for r in rows)
    full = min(o.sqnr_db for o in debug_report(ref, quant, samples).outputs)
    assert rows[0].sqnr_db > full  # one layer alone errs less than all of them
    check = rows[len(rows) // 2]
    one = copy_module(module)
    pipeline = ("canonicalize,fold-batchnorm,fuse-activations,"
                f"insert-observers{{only=%{check.layer}}},calibrate,quantize,"
                "propagate-scales,lower-to-integer,fuse-requantize,canonicalize")
    PassManager(pipeline, ctx=PassContext(calibration_data=samples, progress=False)).run(one)
    integer = [op for op in one.main.ops if op.name in
               ("qir.qconv2d", "qir.qlinear", "qir.qadd", "qir.qmatmul")]
    assert len(integer) == 1 and integer[0].loc.module_path == \
        check.loc.split(" at ")[0].replace("<root>", "")
    outs = [(list(run(ref, s).values())[0], list(run(one, s).values())[0])
            for s in samples]
    a = np.concatenate([x.ravel() for x, _ in outs])
    b = np.concatenate([y.ravel() for _, y in outs])
    assert check.sqnr_db == pytest.approx(sqnr(a, b), rel=1e-9)


def test_errors_are_readable(quantized_zoo, capsys, tmp_path):
    q = quantized_zoo("mlp")
    code, _, err = report(capsys, q.model, "--inputs", q.data)
    assert code == 1 and "is already quantized" in err and "Traceback" not in err
    code, _, err = report(capsys, tmp_path, "--inputs", q.data)
    assert code == 1 and "missing float.qir, model.qir" in err
    code, _, err = report(capsys, q.imported, "--inputs", tmp_path / "none.npz")
    assert code == 1 and "none.npz: no such file" in err
    np.savez(tmp_path / "wrong.npz", y=np.zeros((2, 4, 64), np.float32))
    code, _, err = report(capsys, q.imported, "--inputs", tmp_path / "wrong.npz")
    assert code == 1 and "missing input(s) x; unknown input(s) y" in err
    code, _, err = report(capsys, q.imported, "--inputs", q.data, "--pipeline", "optimize",
                          "--sensitivity")
    assert code == 1 and "sensitivity needs a pipeline with insert-observers" in err
