"""Pass infrastructure: pipeline strings, options, instruments, custom passes."""

import io
from pathlib import Path

import pytest

import qir
from passes import (PassFailed, PassManager, PipelineError, apply_patterns, get_pass,
                    parse_pipeline, pattern, register_pass)
from qir.cli import main

ROOT = Path(__file__).resolve().parents[2]
TEXT = """func @main(%x: tensor<4xf32>) -> (tensor<4xf32>) {
  %a = qir.add %x, %x : tensor<4xf32>
  %r = qir.clamp %a {min = 0.0, max = 6.0} : tensor<4xf32>
  %d = qir.exp %x : tensor<4xf32>
  return %r
}
"""


def test_pipeline_parsing():
    steps = parse_pipeline("canonicalize{fold=false, cse=true},fold-batchnorm")
    assert [str(s) for s in steps] == ["canonicalize{fold=false,cse=true}", "fold-batchnorm"]
    assert steps[0].options == {"fold": False, "cse": True}
    assert [s.name for s in parse_pipeline("optimize")][0] == "canonicalize"
    assert parse_pipeline("  ") == []


@pytest.mark.parametrize("text, msg", [
    ("nope", "unknown pass 'nope'"),
    ("canonicalize{fold=maybe}", "expects true or false, got 'maybe'"),
    ("canonicalize{speed=3}", r"has no option 'speed' \(options: fold, cse\)"),
    ("canonicalize{fold}", "needs a value"),
    ("canonicalize,,fold-batchnorm", "malformed pipeline at column 14"),
    ("quantize{weights=per-row}", "expects one of per-channel, per-tensor"),
])
def test_pipeline_errors(text, msg):
    with pytest.raises(PipelineError, match=msg):
        parse_pipeline(text)


def test_instruments(tmp_path):
    m = qir.parse(TEXT)
    out = io.StringIO()
    pm = PassManager("fuse-activations,canonicalize", print_after=("canonicalize",),
                     dump_dir=tmp_path / "dump", timing=True, out=out)
    pm.run(m)
    files = sorted(p.name for p in (tmp_path / "dump").iterdir())
    assert files == ["00-import.qir", "01-fuse-activations.qir", "02-canonicalize.qir"]
    assert "qir.exp" in (tmp_path / "dump" / "01-fuse-activations.qir").read_text()
    assert "qir.exp" not in (tmp_path / "dump" / "02-canonicalize.qir").read_text()
    text = out.getvalue()
    assert "// ----- after canonicalize -----" in text
    assert "===== pass timing =====" in text and "fuse-activations" in text
    assert [t.changed for t in pm.timings] == [True, True]


def test_verify_each_names_the_broken_pass():
    @register_pass("test-break-types")
    def break_types(module):
        """Corrupts a result type (for this test)."""
        op = module.main.ops[0]
        op.results[0].type = op.results[0].type.with_shape((5,))
        return True

    with pytest.raises(PassFailed, match="does not verify after pass 'test-break-types'"):
        PassManager("test-break-types").run(qir.parse(TEXT))


def test_pattern_driver_detects_non_convergence():
    @pattern("qir.add")
    def flip(op, rw):
        rw.set_operand(op, 0, op.operands[1])
        return True

    with pytest.raises(qir.QirError, match="did not converge"):
        apply_patterns(qir.parse(TEXT), [flip])


def test_custom_pass_from_user_file(tmp_path, capsys):
    src = tmp_path / "m.qir"
    src.write_text(TEXT)
    example = ROOT / "docs" / "examples" / "my_passes.py"
    assert main(["opt", str(src), "--load-passes", str(example), "-p",
                 "canonicalize,cap-relu6{limit=4}"]) == 0
    out = capsys.readouterr().out
    assert "qir.clamp %a {min = 0.0, max = 4.0}" in out
    assert get_pass("cap-relu6").options["limit"].doc == "new upper bound for relu6 clamps"
    assert main(["passes", "--load-passes", str(example)]) == 0
    assert "cap-relu6: Rewrite every relu6" in capsys.readouterr().out


def test_broken_user_file_names_its_line(tmp_path, capsys):
    bad = tmp_path / "bad_passes.py"
    bad.write_text("import os\n\nraise RuntimeError('oops')\n")
    src = tmp_path / "m.qir"
    src.write_text(TEXT)
    assert main(["opt", str(src), "--load-passes", str(bad)]) == 1
    assert f"{bad}:3: error while loading passes: RuntimeError: oops" in capsys.readouterr().err


def test_cli_dump_dir_and_print_after(tmp_path, capsys):
    src = tmp_path / "m.qir"
    src.write_text(TEXT)
    assert main(["opt", str(src), "-p", "optimize", "--dump-dir", str(tmp_path / "d"),
                 "--print-after", "fuse-activations"]) == 0
    assert len(list((tmp_path / "d").glob("*.qir"))) == 5
    assert "after fuse-activations" in capsys.readouterr().err
    assert main(["opt", str(src), "-p", "optimize", "--print-after", "quantize"]) == 1
    assert "the pipeline has no pass 'quantize'" in capsys.readouterr().err
