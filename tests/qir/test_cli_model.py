"""End to end through the command line: import a torch.export archive, run it, quantize
it with calibration data, run the integer module."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import qir
from qir.cli import main
from tests.zoo import ZOO


def export(tmp_path, name="small_cnn"):
    entry = ZOO[name]
    model = entry.build()
    args = entry.example_inputs(0)
    path = tmp_path / f"{name}.pt2"
    torch.export.save(torch.export.export(model, args), path)
    return model, entry, path


def test_import_run_quantize_run(tmp_path, capsys):
    model, entry, archive = export(tmp_path)
    assert main(["import", str(archive), "-o", str(tmp_path / "m.qir")]) == 0
    assert (tmp_path / "m.qir.npz").exists()
    module = qir.load(tmp_path / "m.qir")
    name = module.main.args[0].name
    assert name == entry.input_names[0]

    # qir run with a leading axis over whole inputs: N runs, outputs stacked
    xs = torch.stack([entry.example_inputs(s)[0] for s in (1, 2, 3)])
    np.savez(tmp_path / "in.npz", **{name: xs.numpy()})
    assert main(["run", str(tmp_path / "m.qir"), "--inputs", str(tmp_path / "in.npz"),
                 "-o", str(tmp_path / "out.npz")]) == 0
    with np.load(tmp_path / "out.npz") as z:
        (key, got), = z.items()
    assert key == module.main.outputs[0].name
    want = torch.stack([model(x) for x in xs]).detach().numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())

    # qir opt -p int8 --calib: integer IR that verifies
    calib = torch.stack([entry.example_inputs(100 + s)[0] for s in range(8)]).numpy()
    np.savez(tmp_path / "calib.npz", **{name: calib})
    assert main(["opt", str(tmp_path / "m.qir"), "-p", "int8", "--calib",
                 str(tmp_path / "calib.npz"), "-o", str(tmp_path / "q.qir"),
                 "--dump-dir", str(tmp_path / "stages"), "--no-progress", "--report"]) == 0
    report = capsys.readouterr().err
    assert "===== quantization report =====" in report
    cells = [line[line.index("]") + 1:].split()[0] for line in report.splitlines()[2:]
             if "]" in line]
    sqnrs = [float(c) for c in cells if c != "-"]
    assert len(sqnrs) >= 4 and min(sqnrs) > 25, sqnrs
    q = qir.load(tmp_path / "q.qir")
    qir.verify(q)
    ops = {op.name for op in q.main.ops}
    assert {"qir.qconv2d", "qir.requantize"} <= ops and "qir.conv2d" not in ops
    stages = sorted(p.name for p in (tmp_path / "stages").glob("*.qir"))
    assert stages[0] == "00-import.qir" and stages[-1] == "11-canonicalize.qir"
    assert len(stages) == 12

    assert main(["run", str(tmp_path / "q.qir"), "--inputs", str(tmp_path / "in.npz"),
                 "-o", str(tmp_path / "qout.npz")]) == 0
    with np.load(tmp_path / "qout.npz") as z:
        qgot = next(iter(z.values()))
    err = np.abs(qgot - want).max() / np.abs(want).max()
    assert err < 0.05


def test_run_input_errors(tmp_path, capsys):
    _, entry, archive = export(tmp_path, "mlp")
    assert main(["import", str(archive), "-o", str(tmp_path / "m.qir")]) == 0
    name = qir.load(tmp_path / "m.qir").main.args[0].name
    np.savez(tmp_path / "bad.npz", **{name: np.zeros((3, 3), np.float32)})
    assert main(["run", str(tmp_path / "m.qir"), "--inputs", str(tmp_path / "bad.npz"),
                 "-o", str(tmp_path / "o.npz")]) == 1
    err = capsys.readouterr().err
    assert f"input '{name}' has shape [3, 3]; expected" in err
    np.savez(tmp_path / "bad2.npz", other=np.zeros((3, 3), np.float32))
    assert main(["run", str(tmp_path / "m.qir"), "--inputs", str(tmp_path / "bad2.npz"),
                 "-o", str(tmp_path / "o.npz")]) == 1
    assert f"missing input(s) {name}; unknown input(s) other" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


def test_pickled_model_refused_without_trust(tmp_path):
    model = ZOO["mlp"].build()
    path = tmp_path / "model.pt"
    torch.save(model, path)
    exe = Path(sys.executable).with_name("qir")
    r = subprocess.run([str(exe), "import", str(path), "-o", str(tmp_path / "m.qir")],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "torch.export" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "m.qir").exists()
    # the pickle names tests.zoo classes: run where they import
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([str(exe), "import", str(path), "--trust-pickle", "--input-shape",
                        "4,64", "-o", str(tmp_path / "m.qir")], capture_output=True, text=True,
                       cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m.qir").exists()
