"""`qir diff`: a structural diff of two modules, with diff(1)'s exit codes."""

from __future__ import annotations

import io
import re

import pytest

import qir
from qir.cli import main
from qir.cli.diff import use_color

MODELS = ["functional_net", "resnet_style"]
INT8_PERCENTILE = ("canonicalize,fold-batchnorm,fuse-activations,insert-observers,"
                   "calibrate{method=percentile},quantize,propagate-scales,lower-to-integer,"
                   "fuse-requantize,canonicalize")


def diff(capsys, *args) -> tuple[int, str, str]:
    code = main(["diff", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name", MODELS)
def test_identical_files_are_the_same(name, quantized_zoo, capsys, tmp_path):
    q = quantized_zoo(name)
    assert diff(capsys, q.model, q.model) == (0, "", "")
    # the same module printed again (aliases re-hoisted) is still the same
    copy = tmp_path / "copy.qir"
    qir.save(qir.load(q.model), copy)
    assert diff(capsys, q.model, copy) == (0, "", "")


@pytest.mark.parametrize("name", MODELS)
def test_one_scale_changed(name, quantized_zoo, capsys, tmp_path):
    q = quantized_zoo(name)
    module = qir.load(q.model)
    op = next(op for op in module.main.ops if op.name == "qir.requantize")
    r = op.result
    old = r.type.quant
    r.type = r.type.with_elem(old.with_params([old.scale * 1.065], old.zero_points))
    changed = tmp_path / "changed.qir"
    qir.save(module, changed)
    code, out, err = diff(capsys, q.model, changed)
    assert code == 2 and err == ""
    entries = [line for line in out.splitlines() if line.startswith(("~ %", "+ ", "- "))]
    assert entries == [f"~ %{r.name} = qir.requantize"], out
    want = re.escape(f"scale {old.scale:.4g} → {old.scale * 1.065:.4g} (+6.5%)")
    assert re.search(want, out), out
    assert "@@ @main" in out and f'loc("{op.loc.module_path}"' in out


@pytest.mark.parametrize("name", MODELS)
def test_calibrate_to_quantize_stages(name, quantized_zoo, capsys):
    """Observers go, quantize/dequantize pairs come, conv/linear get new operands."""
    q = quantized_zoo(name)
    before = qir.load(q.stages / "06-calibrate.qir")
    observers = [op for op in before.main.ops if op.name == "qir.observe"]
    code, out, _ = diff(capsys, q.stages / "06-calibrate.qir", q.stages / "07-quantize.qir")
    assert code == 2
    removed = [line for line in out.splitlines() if line.startswith("- %")]
    assert sum("= qir.observe" in line for line in removed) == len(observers)
    # the rest: float bias constants, replaced by quantized parameters
    assert all("= qir.constant" in line for line in removed if "= qir.observe" not in line)
    added = [line for line in out.splitlines() if line.startswith("+ %")]
    assert sum("= qir.quantize" in line for line in added) > 0
    assert any(line.startswith("~ %") and "qir.conv2d" in line for line in out.splitlines())
    code, stat, _ = diff(capsys, "--stat", q.stages / "06-calibrate.qir",
                         q.stages / "07-quantize.qir")
    assert code == 2
    row = next(line for line in stat.splitlines() if line.startswith("qir.observe"))
    assert row.split() == ["qir.observe", "0", str(len(observers)), "0"]
    assert re.fullmatch(r"\d+ added, \d+ removed, \d+ changed(, 1 signature change)?",
                        stat.splitlines()[-1])
    total_removed = int(stat.splitlines()[-1].split(", ")[1].split()[0])
    assert total_removed == len(removed)


@pytest.mark.parametrize("name", MODELS)
def test_insert_observers_to_calibrate_changes_attributes(name, quantized_zoo, capsys):
    q = quantized_zoo(name)
    code, out, _ = diff(capsys, q.stages / "05-insert-observers.qir",
                        q.stages / "06-calibrate.qir")
    assert code == 2
    lines = out.splitlines()[2:]
    assert not [line for line in lines if line.startswith(("+", "-"))]  # the same ops
    assert all(line.startswith(("@@", "~ %", "~     ")) for line in lines)
    assert re.search(r"~     max: none → [0-9.e+-]+", out)


def test_added_and_removed_ops(capsys, tmp_path):
    a = tmp_path / "a.qir"
    b = tmp_path / "b.qir"
    a.write_text("""func @main(%x: tensor<4xf32>) -> (tensor<4xf32>) {
  %r = qir.relu %x : tensor<4xf32>  loc("act")
  %n = qir.neg %r : tensor<4xf32>  loc("neg")
  return %n
}
""")
    b.write_text("""func @main(%x: tensor<4xf32>) -> (tensor<4xf32>) {
  %r = qir.relu %x : tensor<4xf32>  loc("act")
  %t = qir.tanh %r : tensor<4xf32>  loc("squash")
  %n = qir.neg %t : tensor<4xf32>  loc("neg")
  return %n
}
""")
    code, out, _ = diff(capsys, a, b)
    assert code == 2
    assert out.splitlines() == [
        f"--- {a}", f"+++ {b}",
        '@@ @main loc("squash") @@',
        "+ %t = qir.tanh %r : 4 f32",
        '@@ @main loc("neg") @@',
        "~ %n = qir.neg",
        "~     operands %r → %t",
    ]
    code, out, _ = diff(capsys, b, a)
    assert code == 2 and "- %t = qir.tanh %r : 4 f32" in out
    assert diff(capsys, "--stat", b, a)[1].splitlines()[-1] == "0 added, 1 removed, 1 changed"


def test_renamed_values_still_match(quantized_zoo, capsys, tmp_path):
    """conv2d_q_1 vs conv2d_q: the same op under another name is no difference."""
    q = quantized_zoo("functional_net")
    text = q.model.read_text()
    assert "%conv2d_q " in text
    renamed = tmp_path / "renamed.qir"
    renamed.write_text(re.sub(r"%conv2d_q\b", "%conv2d_q_1", text)
                       .replace("%conv2d_acc", "%acc_7"))
    assert diff(capsys, q.model, renamed) == (0, "", "")
    # and a real change next to a renamed value is still found under the new name
    changed = re.sub(r"(%conv2d_q_1 = qir.requantize %acc_7 \{)", r"\1rounding = "
                     r'"gemmlowp", ', renamed.read_text())
    renamed.write_text(changed)
    code, out, _ = diff(capsys, q.model, renamed)
    assert code == 2
    assert "~ %conv2d_q_1 = qir.requantize  (was %conv2d_q)" in out
    assert '~     rounding: "single" → "gemmlowp"' in out


@pytest.mark.parametrize("name", MODELS)
def test_two_pipelines(name, quantized_zoo, capsys):
    minmax, percentile = quantized_zoo(name), quantized_zoo(name, INT8_PERCENTILE)
    code, out, _ = diff(capsys, minmax.model, percentile.model)
    assert code == 2
    assert re.search(r"~     scale [0-9.e-]+ → [0-9.e-]+ \([+-][0-9.e-]+%\)", out), out
    assert "(minmax)" in out and "(percentile)" in out  # the provenance says why


def test_parse_error_and_missing_file_exit_2(quantized_zoo, capsys, tmp_path):
    q = quantized_zoo("functional_net")
    bad = tmp_path / "bad.qir"
    bad.write_text(q.model.read_text().replace(" : tensor<1x3x32x32x!q0>", " tensor<", 1))
    code, out, err = diff(capsys, q.model, bad)
    assert code == 1 and out == ""
    assert re.match(rf"{re.escape(str(bad))}:\d+:\d+: error: ", err), err
    assert "Traceback" not in err
    code, out, err = diff(capsys, q.model, tmp_path / "nope.qir")
    assert code == 1 and f"{tmp_path / 'nope.qir'}: no such file" in err


def test_color(quantized_zoo, capsys, monkeypatch):
    q = quantized_zoo("functional_net")
    a, b = q.stages / "06-calibrate.qir", q.stages / "07-quantize.qir"
    assert "\x1b[31m- " in diff(capsys, "--color=always", a, b)[1]
    assert "\x1b[" not in diff(capsys, "--color=never", a, b)[1]
    assert "\x1b[" not in diff(capsys, a, b)[1]  # captured: not a terminal

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_color("auto", Tty()) and not use_color("auto", io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color("auto", Tty()) and use_color("always", Tty())
