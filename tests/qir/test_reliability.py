"""Damaged artifacts and inputs are refused cleanly (a one-line error, exit 1), non-finite
values follow docs/semantics.md in every backend, and compiles are reproducible."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from qir.cli import main
from qir.cli.artifact import cpu_flags
from tests.zoo import ZOO

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """small_cnn exported, calibration and input files, and an int8 llvm OUTDIR."""
    tmp = tmp_path_factory.mktemp("reliability")
    entry = ZOO["small_cnn"]
    torch.export.save(torch.export.export(entry.build(), entry.example_inputs(0)),
                      tmp / "cnn.pt2")
    name = entry.input_names[0]
    np.savez(tmp / "calib.npz", **{name: torch.stack(
        [entry.example_inputs(100 + i)[0] for i in range(8)]).numpy()})
    np.savez(tmp / "in.npz", **{name: entry.example_inputs(7)[0].numpy()})
    assert main(["compile", str(tmp / "cnn.pt2"), "--int8", "--calib", str(tmp / "calib.npz"),
                 "-o", str(tmp / "out"), "--no-progress"]) == 0
    return tmp, name


def qir(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The qir command in a fresh process (a damaged library must not take pytest down)."""
    return subprocess.run([sys.executable, "-m", "qir", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, **(env or {})},
                          check=False)


def one_line_error(proc, *words: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in proc.stderr, lines
    for w in words:
        assert w in lines[0], (w, lines[0])


def damaged(built, tmp_path, file: str, how) -> Path:
    tmp, _ = built
    out = tmp_path / "out"
    shutil.copytree(tmp / "out", out)
    path = out / file
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(how(data)))
    return out


def truncate(data):
    return data[: len(data) // 2]


def flip_one_byte(data):
    data[len(data) // 3] ^= 0x40
    return data


@pytest.mark.parametrize("file,how", [("model.so", truncate), ("model.so", flip_one_byte),
                                      ("model.qir.npz", flip_one_byte),
                                      ("model.qir", truncate)])
def test_a_damaged_artifact_is_refused_before_loading(built, tmp_path, file, how):
    tmp, _ = built
    out = damaged(built, tmp_path, file, how)
    for cmd in (["run", str(out), "--inputs", str(tmp / "in.npz"), "-o", str(tmp_path / "o.npz")],
                ["bench", str(out), "--repeat", "1"]):
        one_line_error(qir(*cmd), file, "recompile")
    assert not (tmp_path / "o.npz").exists()  # nothing half-written


def test_report_refuses_a_damaged_outdir(built, tmp_path):
    tmp, _ = built
    out = damaged(built, tmp_path, "float.qir", flip_one_byte)
    one_line_error(qir("report", str(out), "--inputs", str(tmp / "in.npz")), "float.qir")


def test_a_deployed_outdir_of_library_and_manifest_runs(built, tmp_path):
    """Only model.so and manifest.json copied (docs/backends.md): it verifies and runs on
    its library; the interpreter, which needs model.qir, is refused."""
    tmp, _ = built
    out = tmp_path / "deployed"
    out.mkdir()
    for f in ("model.so", "manifest.json"):
        shutil.copy(tmp / "out" / f, out / f)
    assert qir("run", str(out), "--inputs", str(tmp / "in.npz"), "-o",
               str(tmp_path / "o.npz")).returncode == 0
    one_line_error(qir("run", str(out), "--backend", "numpy", "--inputs", str(tmp / "in.npz"),
                       "-o", str(tmp_path / "p.npz")), "model.qir", "missing")


def edit_manifest(built, tmp_path, edit) -> Path:
    tmp, _ = built
    out = tmp_path / "out"
    shutil.copytree(tmp / "out", out)
    man = json.loads((out / "manifest.json").read_text())
    edit(man)
    (out / "manifest.json").write_text(json.dumps(man))
    return out


@pytest.mark.skipif(cpu_flags() is None, reason="no /proc/cpuinfo to check CPU flags against")
def test_a_build_for_instructions_this_cpu_lacks_is_refused(built, tmp_path):
    out = edit_manifest(built, tmp_path,
                        lambda m: m["cpu"]["requires"].append("avx_from_the_future"))
    one_line_error(qir("bench", str(out), "--repeat", "1"), "avx_from_the_future",
                   "illegal instruction")
    # the interpreter runs no compiled code: it does not care
    tmp, _ = built
    assert qir("run", str(out), "--backend", "numpy", "--inputs", str(tmp / "in.npz"), "-o",
               str(tmp_path / "o.npz")).returncode == 0


def test_a_build_from_other_versions_is_refused(built, tmp_path):
    out = edit_manifest(built, tmp_path, lambda m: m["versions"].update(tvm="0.26.0"))
    one_line_error(qir("bench", str(out), "--repeat", "1"), "tvm 0.26.0", "recompile")


def test_a_malformed_manifest_is_located(built, tmp_path):
    tmp, _ = built
    out = tmp_path / "out"
    shutil.copytree(tmp / "out", out)
    (out / "manifest.json").write_text('{"format": "qir-compiled/2",\n  "target": }')
    one_line_error(qir("bench", str(out)), "manifest.json:2:13", "malformed")


@pytest.mark.parametrize("which", ["inputs", "calib"])
def test_truncated_npz_is_a_located_error(built, tmp_path, which):
    tmp, _ = built
    bad = tmp_path / "bad.npz"
    bad.write_bytes((tmp / ("in.npz" if which == "inputs" else "calib.npz")).read_bytes()[:300])
    if which == "inputs":
        proc = qir("run", str(tmp / "out"), "--inputs", str(bad), "-o", str(tmp_path / "o.npz"))
    else:
        proc = qir("compile", str(tmp / "cnn.pt2"), "--int8", "--calib", str(bad), "--target",
                   "numpy", "-o", str(tmp_path / "o"), "--no-progress")
    one_line_error(proc, str(bad), "npz")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.npz").exists()


def test_non_finite_inputs_quantize_as_documented_in_every_backend(built, tmp_path):
    """NaN stores the zero point and +-Inf the storage bounds (docs/semantics.md): llvm
    equals the interpreter bit for bit; --check-finite reports them and exits 1."""
    tmp, name = built
    x = ZOO["small_cnn"].example_inputs(3)[0].numpy().copy()
    x.reshape(-1)[[0, 5, 17, 100]] = [np.nan, np.inf, -np.inf, -np.nan]
    np.savez(tmp_path / "nan.npz", **{name: x})
    got = {}
    for backend in ("llvm", "numpy"):
        proc = qir("run", str(tmp / "out"), "--backend", backend, "--inputs",
                   str(tmp_path / "nan.npz"), "-o", str(tmp_path / f"{backend}.npz"),
                   "--check-finite")
        assert proc.returncode == 1, proc.stderr
        assert f"input '{name}'" in proc.stderr and "2 NaN, 1 +Inf, 1 -Inf" in proc.stderr
        got[backend] = dict(np.load(tmp_path / f"{backend}.npz"))  # written all the same
    for k in got["numpy"]:
        np.testing.assert_array_equal(got["llvm"][k], got["numpy"][k])
        assert np.isfinite(got["numpy"][k]).all()
    ok = qir("run", str(tmp / "out"), "--inputs", str(tmp / "in.npz"), "-o",
             str(tmp_path / "ok.npz"), "--check-finite")
    assert ok.returncode == 0 and "is finite" in ok.stderr


def test_quantize_of_non_finite_values_is_the_documented_integer():
    import qir as q
    from backends.numpy import run

    m = q.parse("""func @main(%x: tensor<6xf32>) -> (tensor<6x!quant.uniform<i8:f32, 0.5:3>>) {
  %a = qir.quantize %x : tensor<6x!quant.uniform<i8:f32, 0.5:3>>
  return %a
}
""")
    x = np.array([np.nan, -np.nan, np.inf, -np.inf, 1e30, 1.0], np.float32)
    np.testing.assert_array_equal(run(m, {"x": x})["a"], [3, 3, 127, -128, 127, 5])


def test_nan_calibration_data_names_the_observer(built, tmp_path):
    tmp, name = built
    calib = dict(np.load(tmp / "calib.npz"))
    calib[name][2, 0, 1, 1] = np.nan
    np.savez(tmp_path / "nan.npz", **calib)
    one_line_error(qir("compile", str(tmp / "cnn.pt2"), "--int8", "--calib",
                       str(tmp_path / "nan.npz"), "--target", "numpy", "-o",
                       str(tmp_path / "o"), "--no-progress"), "NaN")


def test_compiles_are_reproducible_and_threads_do_not_change_results(built, tmp_path):
    """The same model, data and flags: byte-identical model.qir, weights and library; the llvm
    build's outputs identical on 1 and 2 threads."""
    tmp, _ = built
    again = tmp_path / "again"
    assert main(["compile", str(tmp / "cnn.pt2"), "--int8", "--calib", str(tmp / "calib.npz"),
                 "-o", str(again), "--no-progress"]) == 0
    for f in ("model.qir", "model.qir.npz", "float.qir", "float.qir.npz", "model.so"):
        assert (again / f).read_bytes() == (tmp / "out" / f).read_bytes(), f
    outs = []
    for threads in ("1", "2"):
        proc = qir("run", str(tmp / "out"), "--inputs", str(tmp / "calib.npz"), "-o",
                   str(tmp_path / f"t{threads}.npz"), env={"TVM_NUM_THREADS": threads})
        assert proc.returncode == 0, proc.stderr
        outs.append(dict(np.load(tmp_path / f"t{threads}.npz")))
    for k in outs[0]:
        np.testing.assert_array_equal(outs[0][k], outs[1][k])


@pytest.mark.parametrize("dtype", ["bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_ml_dtypes_parameters_round_trip_through_npz(tmp_path, dtype):
    """ml_dtypes arrays are stored as their bits with a dtype tag (qir/io.py); float8_e5m2
    once went in as itself (numpy knows its name) and could not be read back."""
    import ml_dtypes

    from qir.io import load_params, save_params

    a = np.linspace(-3, 3, 24, dtype=np.float32).reshape(4, 6).astype(getattr(ml_dtypes, dtype))
    save_params({"w": a, "i": np.arange(3, dtype=np.int8)}, tmp_path / "p.npz")
    back = load_params(tmp_path / "p.npz")
    assert back["w"].dtype == a.dtype and back["i"].dtype == np.int8
    np.testing.assert_array_equal(back["w"].view(np.uint8 if a.itemsize == 1 else np.uint16),
                                  a.view(np.uint8 if a.itemsize == 1 else np.uint16))
