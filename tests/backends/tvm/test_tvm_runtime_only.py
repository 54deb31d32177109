"""Compiled artifacts run where TVM is installed without its compiler (a GPU machine given
TVM's runtime alone, docs/backends.md): `qir run` and `qir bench` on an OUTDIR in a fresh
process whose `tvm` is the runtime-only copy bench/gpu_check.py packs, and the whole GPU
check (pack, then run) on this machine's CPU with llvm artifacts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.gpu_check import pack, pack_runtime

ROOT = Path(__file__).resolve().parents[3]


def python(args: list[str], pythonpath: list[Path], **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(map(str, [*pythonpath, ROOT])))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600, **kw)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("runtime")
    pack_runtime(where)
    assert not (where / "runtime" / "tvm" / "lib" / "libtvm_compiler.so").exists()
    return where / "runtime"


def test_qir_run_and_bench_with_tvm_runtime_alone(runtime, tmp_path):
    from tests.debug.export_zoo import export

    from qir.cli import main

    export("mlp", str(tmp_path / "mlp.pt2"), str(tmp_path / "data.npz"), samples=4)
    out = tmp_path / "out"
    assert main(["compile", str(tmp_path / "mlp.pt2"), "--int8", "--calib",
                 str(tmp_path / "data.npz"), "--target", "llvm", "-o", str(out),
                 "--no-progress"]) == 0
    probe = python(["-c", "import tvm; print(tvm.base._RUNTIME_ONLY, tvm.__file__)"], [runtime])
    assert probe.stdout.split()[0] == "True" and str(runtime) in probe.stdout, probe
    got = python(["-m", "qir", "run", str(out), "--inputs", str(tmp_path / "data.npz"), "-o",
                  str(tmp_path / "got.npz")], [runtime])
    assert got.returncode == 0, got.stderr
    want = python(["-m", "qir", "run", str(out), "--backend", "numpy", "--inputs",
                   str(tmp_path / "data.npz"), "-o", str(tmp_path / "want.npz")], [])
    assert want.returncode == 0, want.stderr
    g, w = np.load(tmp_path / "got.npz"), np.load(tmp_path / "want.npz")
    assert list(g) == list(w)
    for key in w:
        np.testing.assert_array_equal(g[key], w[key])
    bench = python(["-m", "qir", "bench", str(out), "--repeat", "5", "--json", "--profile"],
                   [runtime])
    assert bench.returncode == 0, bench.stderr
    report = json.loads(bench.stdout.strip().splitlines()[-1])
    assert report["median_ms"] > 0
    rows = [r["kernel"] for r in report["profile"]]  # --profile: kernels, then the VM's row
    assert any(r.startswith("qir_") for r in rows) and rows[-1].startswith("(VM and launch")
    assert "total us" in bench.stdout


def test_gpu_check_packs_and_runs_on_this_cpu(tmp_path):
    """The GPU check end to end with llvm artifacts: the pack is one archive, and `run`
    unpacks it, checks the command line and every artifact (a failure would exit 1)."""
    pack(tmp_path / "pack", ["mlp"], [], target="llvm", wheels=False)
    assert sorted(p.name for p in (tmp_path / "pack").iterdir()) == ["pack.tar.xz"]
    proc = python(["-m", "bench.gpu_check", "run", str(tmp_path / "pack"), "--repeat", "3",
                   "-o", str(tmp_path / "report.json")], [])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["tvm"]["runtime_only"]
    assert report["cli"]["run"]["exit"] == 0 and report["cli"]["run"]["compare"]["ok"]
    assert report["cli"]["bench"]["exit"] == 0
    assert sorted(report["entries"]) == ["mlp-float", "mlp-int8", "mlp-int8-probes"]
    assert all(e["ok"] for e in report["entries"].values())
    assert "| mlp-int8 | bit-exact vs numpy | pass |" in proc.stdout


def test_sort_runs_with_tvm_runtime_alone(runtime, tmp_path):
    """Sort and top-k call TVM's sort library (in libtvm_runtime_extra, which the runtime
    alone does not load by itself): an artifact using them still runs."""
    import torch

    from qir.cli import main

    class SortTopk(torch.nn.Module):
        def forward(self, x):
            return torch.sort(x, dim=1)[0], torch.topk(x, 2)[1]

    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    torch.export.save(torch.export.export(SortTopk(), (x,)), tmp_path / "m.pt2")
    out = tmp_path / "out"
    assert main(["compile", str(tmp_path / "m.pt2"), "--target", "llvm", "-o", str(out),
                 "--no-progress"]) == 0
    np.savez(tmp_path / "in.npz", x=x.numpy())
    got = python(["-m", "qir", "run", str(out), "--inputs", str(tmp_path / "in.npz"), "-o",
                  str(tmp_path / "got.npz")], [runtime])
    assert got.returncode == 0, got.stderr
    g = np.load(tmp_path / "got.npz")
    values, indices = (g[k] for k in g)
    np.testing.assert_array_equal(values, np.sort(x.numpy(), axis=1))
    np.testing.assert_array_equal(indices, torch.topk(x, 2)[1].numpy())


def test_gpu_check_packs_the_last_core_aten_ops(tmp_path):
    """`pack --writes` on this machine's CPU: the scatter / sort / grid_sample models
    (integer outputs exact, floats within 1e-4) and the int8 island model, all pass."""
    pack(tmp_path / "pack", [], [], target="llvm", wheels=False, writes=True)
    proc = python(["-m", "bench.gpu_check", "run", str(tmp_path / "pack"), "--repeat", "3",
                   "-o", str(tmp_path / "report.json")], [])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    entries = json.loads((tmp_path / "report.json").read_text())["entries"]
    assert {"writes-scatter", "writes-sort_ties", "writes-grid_scatter_int8"} <= set(entries)
    assert all(e["ok"] for e in entries.values()), entries
    assert "| writes-sort_ties | vs numpy: integers exact, floats 1e-4 | pass" in proc.stdout
