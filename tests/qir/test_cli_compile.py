"""`qir compile`, `qir run OUTDIR`, `qir bench`: the artifact layout, atomic output,
bit-exact llvm vs numpy, cuda codegen without a GPU."""

import hashlib
import json

import numpy as np
import pytest
import torch

import qir
from qir.cli import main
from tests.zoo import ZOO


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compile")
    entry = ZOO["small_cnn"]
    model = entry.build()
    archive = tmp / "cnn.pt2"
    torch.export.save(torch.export.export(model, entry.example_inputs(0)), archive)
    name = entry.input_names[0]
    np.savez(tmp / "calib.npz", **{name: torch.stack(
        [entry.example_inputs(100 + i)[0] for i in range(8)]).numpy()})
    np.savez(tmp / "in.npz", **{name: torch.stack(
        [entry.example_inputs(200 + i)[0] for i in range(3)]).numpy()})
    return tmp, archive


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_compile_llvm_int8_bit_exact_against_numpy(model_files, capsys):
    tmp, archive = model_files
    before = digest(archive)
    out = tmp / "llvm"
    assert main(["compile", str(archive), "--int8", "--target", "llvm", "--calib",
                 str(tmp / "calib.npz"), "-o", str(out), "--no-progress"]) == 0
    assert digest(archive) == before  # the input model is never modified
    assert sorted(p.name for p in out.iterdir()) == [
        "float.qir", "float.qir.npz", "manifest.json", "model.qir", "model.qir.npz", "model.so"]
    man = json.loads((out / "manifest.json").read_text())
    assert man["target"] == "llvm" and man["int8"] and man["versions"]["tvm"]
    from backends.tvm.kernels.common import kernel_family
    from backends.tvm.target import resolve_target

    assert man["cpu"] == kernel_family(resolve_target("llvm"))  # the kernels chosen here
    assert man["cpu"]["kernels"] in ("avx512-vnni", "avx-vnni", "avx512", "avx2", "none")
    assert man["inputs"][0]["shape"] == [1, 3, 32, 32] and man["inputs"][0]["dtype"] == "float32"
    assert man["pipeline"].startswith("canonicalize,fold-batchnorm")
    qir.verify(qir.load(out / "model.qir"))
    assert main(["run", str(out), "--inputs", str(tmp / "in.npz"), "-o",
                 str(tmp / "a.npz")]) == 0
    assert main(["run", str(out), "--inputs", str(tmp / "in.npz"), "-o", str(tmp / "b.npz"),
                 "--backend", "numpy"]) == 0
    a, b = np.load(tmp / "a.npz"), np.load(tmp / "b.npz")
    assert list(a) == list(b)
    for k in a:
        assert a[k].shape[0] == 3
        np.testing.assert_array_equal(a[k], b[k])
    capsys.readouterr()
    assert main(["bench", str(out), "--repeat", "3", "--warmup", "1", "--json"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last)["median_ms"] > 0


def test_compile_cuda_without_gpu(model_files):
    tmp, archive = model_files
    out = tmp / "cuda"
    assert main(["compile", str(archive), "--int8", "--target", "cuda", "--calib",
                 str(tmp / "calib.npz"), "-o", str(out), "--no-progress"]) == 0
    assert (out / "model.so").stat().st_size > 10_000
    assert json.loads((out / "manifest.json").read_text())["target"] == "cuda"


def test_float_numpy_target_warns_without_calib(model_files, capsys):
    tmp, archive = model_files
    out = tmp / "np"
    assert main(["compile", str(archive), "--target", "numpy", "-o", str(out)]) == 0
    assert "model.so" not in {p.name for p in out.iterdir()}
    assert "qir.conv2d" in (out / "model.qir").read_text()  # float: no --int8
    capsys.readouterr()
    out8 = tmp / "np8"
    assert main(["compile", str(archive), "--int8", "--target", "numpy", "-o", str(out8),
                 "--no-progress"]) == 0
    assert "calibrating on the example inputs stored in the export archive" in \
        capsys.readouterr().err


def test_outdir_is_atomic(model_files, capsys):
    tmp, archive = model_files
    out = tmp / "np"  # exists from the previous test, or make it
    if not out.exists():
        assert main(["compile", str(archive), "--target", "numpy", "-o", str(out)]) == 0
    assert main(["compile", str(archive), "--target", "numpy", "-o", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    bad = tmp / "bad_calib.npz"
    np.savez(bad, wrong_name=np.zeros((2, 1, 3, 32, 32), np.float32))
    fail = tmp / "never"
    assert main(["compile", str(archive), "--int8", "--calib", str(bad), "--target", "numpy",
                 "-o", str(fail)]) == 1
    assert "missing input(s)" in capsys.readouterr().err
    assert not fail.exists()
    assert not [p for p in tmp.iterdir() if p.name.startswith(".never")]
    assert main(["compile", str(archive), "--int8", "--target", "numpy", "-o", str(out),
                 "--force", "--calib", str(tmp / "calib.npz"), "--no-progress"]) == 0
    assert "qir.qconv2d" in (out / "model.qir").read_text()


def test_emit_relax_prints_tvmscript(model_files, capsys):
    tmp, archive = model_files
    assert main(["compile", str(archive), "--emit", "relax", "--target", "llvm"]) == 0
    text = capsys.readouterr().out
    assert "R.function" in text and "def main" in text


@pytest.fixture(scope="module")
def bert_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bert")
    entry = ZOO["bert_style"]
    model = entry.build()
    archive = tmp / "bert.pt2"
    torch.export.save(torch.export.export(model, entry.example_inputs(0)), archive)
    batches = [entry.example_inputs(100 + i) for i in range(8)]
    np.savez(tmp / "calib.npz", **{n: torch.stack([b[i] for b in batches]).numpy()
                                   for i, n in enumerate(entry.input_names)})
    return tmp, archive


@pytest.mark.parametrize("flags, expect", [
    (["--w4a16"], "weight-only{bits=4,group-size=128,gptq=true}"),  # GPTQ: --calib given
    (["--w4a16", "--method", "awq", "--group-size", "64"],
     "weight-only{bits=4,group-size=64,awq=true}"),
    (["--w4a16", "--method", "rtn"], "weight-only{bits=4,group-size=128}"),
    (["--w8a16"], "weight-only{bits=8,group-size=0,gptq=true}"),
    (["--dynamic"], "dynamic-quant"),
    (["--fp8"], "fp8{format=e4m3}"),
    (["--int8", "--smoothquant"], "smoothquant,insert-observers"),
    (["--int8", "--max-drop", "1%"], "mixed-precision{min-sqnr=40.0"),
])
def test_method_flags(bert_files, flags, expect):
    tmp, archive = bert_files
    out = tmp / ("o" + "_".join(f.strip("-%") for f in flags))
    assert main(["compile", str(archive), "--target", "numpy", "--calib",
                 str(tmp / "calib.npz"), "-o", str(out), "--no-progress", *flags]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert expect in man["pipeline"]
    qir.verify(qir.load(out / "model.qir"))


def test_scheme_flags_conflict(bert_files, capsys):
    tmp, archive = bert_files
    assert main(["compile", str(archive), "--int8", "--fp8", "-o", str(tmp / "x")]) == 1
    assert "choose one of" in capsys.readouterr().err
    assert main(["compile", str(archive), "--smoothquant", "-o", str(tmp / "x")]) == 1
    assert "apply to --int8" in capsys.readouterr().err
    assert main(["compile", str(archive), "--nf4", "--pow2-scales", "-o", str(tmp / "x")]) == 1
    assert "--pow2-scales" in capsys.readouterr().err
    assert main(["compile", str(archive), "--int8", "--kv-int8", "-o", str(tmp / "x")]) == 1
    assert "--kv-int8 applies to causal LMs" in capsys.readouterr().err
    assert not (tmp / "x").exists()


def test_fp8_llvm_matches_numpy(model_files):
    """fp8 encode/decode kernels stay unfused (fused, LLVM rejected the bit casts)."""
    tmp, archive = model_files
    out = tmp / "fp8"
    assert main(["compile", str(archive), "--fp8", "--target", "llvm", "--calib",
                 str(tmp / "calib.npz"), "-o", str(out), "--no-progress"]) == 0
    assert "f8e4m3" in (out / "model.qir").read_text()
    assert main(["run", str(out), "--inputs", str(tmp / "in.npz"), "-o",
                 str(tmp / "f1.npz")]) == 0
    assert main(["run", str(out), "--inputs", str(tmp / "in.npz"), "-o", str(tmp / "f2.npz"),
                 "--backend", "numpy"]) == 0
    a, b = np.load(tmp / "f1.npz"), np.load(tmp / "f2.npz")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_compile_tune_caches_and_stays_exact(model_files, tmp_path, capsys):
    tmp, archive = model_files
    common = [str(archive), "--int8", "--calib", str(tmp / "calib.npz"), "--no-progress",
              "--tune", "2", "--tune-cache", str(tmp_path / "cache")]
    assert main(["compile", *common, "-o", str(tmp_path / "a")]) == 0
    first = capsys.readouterr().err
    assert "tuned now, 0 from the cache" in first
    tuning = json.loads((tmp_path / "a" / "manifest.json").read_text())["tuning"]
    assert tuning["trials"] == 2 and tuning["kernels"]
    assert not any(k["cached"] for k in tuning["kernels"])
    assert main(["compile", *common, "-o", str(tmp_path / "b")]) == 0
    assert "(0 tuned now" in capsys.readouterr().err
    tuning = json.loads((tmp_path / "b" / "manifest.json").read_text())["tuning"]
    assert all(k["cached"] for k in tuning["kernels"])
    assert main(["run", str(tmp_path / "b"), "--inputs", str(tmp / "in.npz"), "-o",
                 str(tmp_path / "llvm.npz")]) == 0
    assert main(["run", str(tmp_path / "b"), "--inputs", str(tmp / "in.npz"), "-o",
                 str(tmp_path / "numpy.npz"), "--backend", "numpy"]) == 0
    a, b = np.load(tmp_path / "llvm.npz"), np.load(tmp_path / "numpy.npz")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("flags, message", [
    (["--tune", "0"], "at least 1"),
    (["--tune", "2", "--target", "cuda"], "applies to --target llvm"),
    (["--tune-cache", "x"], "applies with --tune N"),
])
def test_compile_tune_errors(model_files, tmp_path, capsys, flags, message):
    tmp, archive = model_files
    assert main(["compile", str(archive), "--int8", "--calib", str(tmp / "calib.npz"),
                 "-o", str(tmp_path / "out"), *flags]) != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
