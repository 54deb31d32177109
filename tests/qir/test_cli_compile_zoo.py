"""The backends issue's promise, through the command line, on every zoo model:
`qir compile MODEL.pt2 --target llvm --int8` (and `--int8 --pow2-scales`, `--nf4`),
then `qir run OUTDIR` and `qir run OUTDIR --backend numpy` give the same outputs bit for
bit — except where --nf4 leaves a CNN's convolutions float: those keep the float
contract (within 1e-5, docs/semantics.md)."""

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


FLOAT_CONVS = ("functional_net", "mobilenet_style", "resnet_style", "small_cnn")


@pytest.mark.parametrize("flags", [["--int8"], ["--int8", "--pow2-scales"], ["--nf4"]],
                         ids=["int8", "pow2", "nf4"])
@pytest.mark.parametrize("name", sorted(ZOO))
def test_llvm_artifact_equals_the_interpreter(name, flags, tmp_path):
    entry = ZOO[name]
    archive = tmp_path / f"{name}.pt2"
    torch.export.save(torch.export.export(entry.build(), entry.example_inputs(0)), archive)
    calib = calibration_batches(name, 16)
    np.savez(tmp_path / "calib.npz", **{
        arg: torch.stack([b[i] for b in calib]).numpy()
        for i, arg in enumerate(entry.input_names)})
    np.savez(tmp_path / "in.npz", **_stacked(name, (301, 302)))
    out = tmp_path / "out"
    assert main(["compile", str(archive), *flags, "--target", "llvm", "--calib",
                 str(tmp_path / "calib.npz"), "-o", str(out), "--no-progress"]) == 0
    for backend, result in (([], "llvm.npz"), (["--backend", "numpy"], "numpy.npz")):
        assert main(["run", str(out), "--inputs", str(tmp_path / "in.npz"), "-o",
                     str(tmp_path / result), *backend]) == 0
    a, b = np.load(tmp_path / "llvm.npz"), np.load(tmp_path / "numpy.npz")
    assert list(a) == list(b) and len(a)
    float_convs = flags == ["--nf4"] and name in FLOAT_CONVS
    for key in a:
        assert a[key].shape[0] == 2
        if float_convs:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}: output {key}")
