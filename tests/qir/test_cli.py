"""The `qir` command line: exit codes, stdin/stdout, atomic outputs, readable errors."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import qir
from qir.cli import main

GOOD = """func @main(%x: tensor<2x4xf32>) -> (tensor<2x3xf32>) {
  %w = qir.param {name = "fc.weight"} : tensor<3x4xf32>
  %y = qir.linear %x, %w : tensor<2x3xf32>  loc("fc", "model.py":7)
  return %y
}
"""
BAD = GOOD.replace("tensor<2x3xf32>  loc", "tensor<2x3xf32  loc")


def test_console_script_version():
    exe = Path(sys.executable).with_name("qir")
    qir_cmd = str(exe) if exe.exists() else shutil.which("qir")
    out = subprocess.run([qir_cmd, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"qir {qir.__version__}"


def test_verify_ok_and_error(tmp_path, capsys):
    good = tmp_path / "good.qir"
    good.write_text(GOOD)
    assert main(["verify", str(good)]) == 0
    bad = tmp_path / "bad.qir"
    bad.write_text(GOOD.replace("tensor<2x3xf32>", "tensor<2x5xf32>"))
    assert main(["verify", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3:3: error: result %y has shape [2, 5], expected [2, 3]" in err


def test_opt_syntax_error_prints_location_and_caret(tmp_path, capsys):
    bad = tmp_path / "bad.qir"
    bad.write_text(BAD)
    assert main(["opt", str(bad), "-p", ""]) == 1
    err = capsys.readouterr().err.splitlines()
    col = BAD.splitlines()[2].index("loc") + 1
    assert err[0].startswith(f"{bad}:3:{col}: error: unexpected 'loc'")
    assert err[2].index("^") == err[1].index("loc")
    assert "Traceback" not in "\n".join(err)


def test_opt_stdin_to_stdout(monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(GOOD))
    assert main(["opt", "-"]) == 0
    assert capsys.readouterr().out == qir.print_module(qir.parse(GOOD))


def test_opt_writes_text_and_sidecar(tmp_path):
    m = qir.parse(GOOD)
    m.params["fc.weight"] = np.arange(12, dtype=np.float32).reshape(3, 4)
    src = tmp_path / "in.qir"
    qir.save(m, src)
    assert (tmp_path / "in.qir.npz").exists()
    out = tmp_path / "out.qir"
    assert main(["opt", str(src), "-o", str(out)]) == 0
    back = qir.load(out)
    np.testing.assert_array_equal(back.params["fc.weight"], m.params["fc.weight"])
    assert qir.print_module(back) == qir.print_module(m)


def test_param_data_checked_against_type(tmp_path, capsys):
    m = qir.parse(GOOD)
    m.params["fc.weight"] = np.zeros((4, 3), np.float32)
    src = tmp_path / "m.qir"
    qir.save(m, src)
    assert main(["verify", str(src)]) == 1
    assert "parameter 'fc.weight' has shape [4, 3] but the op says [3, 4]" in \
        capsys.readouterr().err


def test_missing_file_and_unknown_pass(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nope.qir")]) == 1
    assert "no such file" in capsys.readouterr().err
    good = tmp_path / "good.qir"
    good.write_text(GOOD)
    assert main(["opt", str(good), "-p", "no-such-pass"]) == 1
    assert "no-such-pass" in capsys.readouterr().err


def test_failed_write_leaves_nothing(tmp_path, capsys):
    good = tmp_path / "good.qir"
    good.write_text(GOOD)
    assert main(["opt", str(good), "-o", str(tmp_path / "missing-dir" / "o.qir")]) == 1
    assert "cannot write" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.qir"]
