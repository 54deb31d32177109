"""The backends issue's promise, through the command line, on every zoo model:
`qir compile MODEL.pt2 --target llvm --int8`, then `qir run OUTDIR` and
`qir run OUTDIR --backend numpy` give the same outputs bit for bit."""

import numpy as np
import pytest
import torch

from qir.cli import main
from tests.zoo import ZOO, calibration_batches


def _stacked(name: str, seeds) -> dict[str, np.ndarray]:
    """One npz entry per input: the inputs of `seeds` along a new leading axis."""
    batches = [ZOO[name].example_inputs(s) for s in seeds]
    return {arg: torch.stack([b[i] for b in batches]).numpy()
            for i, arg in enumerate(ZOO[name].input_names)}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_llvm_artifact_equals_the_interpreter(name, tmp_path):
    entry = ZOO[name]
    archive = tmp_path / f"{name}.pt2"
    torch.export.save(torch.export.export(entry.build(), entry.example_inputs(0)), archive)
    calib = calibration_batches(name, 16)
    np.savez(tmp_path / "calib.npz", **{
        arg: torch.stack([b[i] for b in calib]).numpy()
        for i, arg in enumerate(entry.input_names)})
    np.savez(tmp_path / "in.npz", **_stacked(name, (301, 302)))
    out = tmp_path / "out"
    assert main(["compile", str(archive), "--int8", "--target", "llvm", "--calib",
                 str(tmp_path / "calib.npz"), "-o", str(out), "--no-progress"]) == 0
    for backend, result in (([], "llvm.npz"), (["--backend", "numpy"], "numpy.npz")):
        assert main(["run", str(out), "--inputs", str(tmp_path / "in.npz"), "-o",
                     str(tmp_path / result), *backend]) == 0
    a, b = np.load(tmp_path / "llvm.npz"), np.load(tmp_path / "numpy.npz")
    assert list(a) == list(b) and len(a)
    for key in a:
        assert a[key].shape[0] == 2
        np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}: output {key}")
