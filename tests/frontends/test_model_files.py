"""load_model_file: torch.export archives by content (any extension), and clear refusals
for pickled modules, TorchScript, state_dicts and files that are no model at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import frontends
import qir
from backends.numpy import run
from frontends import ModelFileError


class Small(nn.Module):
    """Module-level, so that a pickled instance can be unpickled with trust_pickle."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return torch.relu(self.fc(x))


def _model() -> Small:
    torch.manual_seed(0)
    return Small().eval()


def _assert_matches(module: qir.Module, model: nn.Module, x: torch.Tensor) -> None:
    (out,) = run(module, [x.numpy()]).values()
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("filename", ["model.pt2", "model.pt", "model.bin"])
def test_export_archive_round_trip(tmp_path: Path, filename: str) -> None:
    model, x = _model(), torch.randn(2, 4)
    path = tmp_path / filename
    torch.export.save(torch.export.export(model, (x,)), path)
    module, examples = frontends.load_model_file_with_examples(path)
    qir.verify(module)
    _assert_matches(module, model, torch.randn(2, 4))
    assert set(module.params) == {"fc.weight", "fc.bias"}
    assert examples is not None and torch.equal(examples[0], x)
    assert [a.name for a in frontends.load_model_file(path).main.args] == ["x"]


def test_pickled_module_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt2"  # the extension does not matter
    torch.save(_model(), path)
    with pytest.raises(ModelFileError) as info:
        frontends.load_model_file(path)
    text = str(info.value)
    assert "pickled" in text and "runs code" in text
    assert "ep = torch.export.export(model.eval(), example_args)" in text
    assert 'torch.export.save(ep, "model.pt2")' in text
    assert "trust_pickle=True" in text


def test_trusted_pickle_needs_input_shapes(tmp_path: Path) -> None:
    model = _model()
    path = tmp_path / "model.pt"
    torch.save(model, path)
    with pytest.raises(ModelFileError, match="input_shapes"):
        frontends.load_model_file(path, trust_pickle=True)
    module = frontends.load_model_file(path, trust_pickle=True, input_shapes=[[5, 4]])
    assert module.main.args[0].type == qir.TensorType((5, 4), "f32")
    _assert_matches(module, model, torch.randn(5, 4))


def test_torchscript_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(_model()), path)
    with pytest.raises(ModelFileError, match="TorchScript is not supported, export with "
                                             "torch.export"):
        frontends.load_model_file(path)


def test_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(_model().state_dict(), path)
    with pytest.raises(ModelFileError, match="weights alone are not a model"):
        frontends.load_model_file(path)


@pytest.mark.parametrize("content", [b"hello, not a model\n", b"\x80\x04garbage", b""])
def test_garbage_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.pt2"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="is not a PyTorch model file"):
        frontends.load_model_file(path)


def test_other_zip_is_refused(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "model.pt2"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(ModelFileError, match="zip archive but neither"):
        frontends.load_model_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such file"):
        frontends.load_model_file(tmp_path / "nope.pt2")
