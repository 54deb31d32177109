"""Model files: torch.export archives are read; everything else gets a clear refusal.

The format is recognised by content, not extension: a `.pt` that is really an export
archive is fine, and a `.pt2` holding a pickle is not. Pickled nn.Modules (`torch.save(model)`)
execute code when loaded, so they are refused unless the caller trusts the file.
"""

from __future__ import annotations

import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Any, Sequence

import torch

from frontends.export import from_exported_program
from qir import Module, QirError

EXPORT_SNIPPET = ("    ep = torch.export.export(model.eval(), example_args)\n"
                  "    torch.export.save(ep, \"model.pt2\")")


class ModelFileError(QirError):
    """The file is not a model qir can import (or not safely)."""


def load_model_file(path: str | Path, *, trust_pickle: bool = False,
                    input_shapes: Sequence[Sequence[int]] | None = None) -> Module:
    """Import a model file: a torch.export archive (`torch.export.save`), or, only with
    trust_pickle=True and input_shapes, a pickled nn.Module (`torch.save(model)`)."""
    return load_model_file_with_examples(path, trust_pickle=trust_pickle,
                                         input_shapes=input_shapes)[0]


def load_model_file_with_examples(path: str | Path, *, trust_pickle: bool = False,
                                  input_shapes: Sequence[Sequence[int]] | None = None
                                  ) -> tuple[Module, tuple | None]:
    """Like load_model_file, plus the example inputs stored in an export archive (positional
    tensors, usable for calibration), or None when the file has none."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    kind = _sniff(path)
    if kind == "export":
        return _load_export(path)
    if kind == "torchscript":
        raise ModelFileError(
            f"{path} is a TorchScript file (torch.jit.save); TorchScript is not supported, "
            "export with torch.export instead:\n" + EXPORT_SNIPPET)
    if kind == "zip":
        raise ModelFileError(f"{path} is a zip archive but neither a torch.export archive nor "
                             "a torch.save file; export the model with:\n" + EXPORT_SNIPPET)
    return _load_pickle(path, trust_pickle, input_shapes)


def _sniff(path: Path) -> str:
    """'export', 'torchscript', 'torch.save' (pickle, zip or legacy) or 'zip'."""
    if not zipfile.is_zipfile(path):
        return "torch.save"  # maybe a legacy pickle; _load_pickle decides
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return "torch.save"
    inner = {n.split("/", 1)[1] if "/" in n else n for n in names}
    if "archive_format" in inner or any(n.startswith("models/") and n.endswith(".json")
                                        for n in inner) or \
            "serialized_exported_program.json" in inner:
        return "export"
    if "constants.pkl" in inner or any(n.startswith("code/") for n in inner):
        return "torchscript"
    if "data.pkl" in inner:
        return "torch.save"
    return "zip"


def _load_export(path: Path) -> tuple[Module, tuple | None]:
    try:
        ep = torch.export.load(str(path))
    except Exception as e:
        raise ModelFileError(f"{path} looks like a torch.export archive but cannot be read "
                             f"({type(e).__name__}: {e}); re-export it with this torch "
                             f"version ({torch.__version__}):\n" + EXPORT_SNIPPET) from None
    examples = getattr(ep, "example_inputs", None)
    args = tuple(examples[0]) if examples is not None and not examples[1] else None
    return from_exported_program(ep), args


def _load_pickle(path: Path, trust_pickle: bool,
                 input_shapes: Sequence[Sequence[int]] | None) -> tuple[Module, None]:
    try:  # the safe unpickler: tensors and plain containers only, no code runs
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise ModelFileError(f"{path} is not a PyTorch model file ({_first_line(e)}); qir "
                                 "reads torch.export archives, made with:\n" + EXPORT_SNIPPET) \
                from None
        obj = _UNSAFE  # it references classes: a pickled module (or other object)
    except Exception as e:
        raise ModelFileError(f"{path} is not a PyTorch model file ({type(e).__name__}: "
                             f"{_first_line(e)}); qir reads torch.export archives, made "
                             "with:\n" + EXPORT_SNIPPET) from None
    if obj is not _UNSAFE:
        raise ModelFileError(_weights_only_message(path, obj))
    first_class = _first_pickled_class(path)
    if first_class is None:
        raise ModelFileError(f"{path} is not a PyTorch model file (its pickle cannot be "
                             "read); qir reads torch.export archives, made with:\n"
                             + EXPORT_SNIPPET)
    if not trust_pickle:
        raise ModelFileError(
            f"{path} is a pickled Python object ({first_class}, saved with torch.save(model))."
            " Loading it runs code "
            "stored in the file, so qir does not load it. Export the model instead:\n"
            + EXPORT_SNIPPET + "\nand import model.pt2, or, if you trust this file, pass "
            "trust_pickle=True together with input_shapes (the shape of each forward() "
            "input).")
    if not input_shapes:
        raise ModelFileError(f"{path}: a pickled module has no record of its input shapes; "
                             "pass input_shapes (one shape per forward() input), e.g. "
                             "[[1, 3, 224, 224]]")
    try:
        model = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as e:
        raise ModelFileError(f"{path}: unpickling failed ({type(e).__name__}: "
                             f"{_first_line(e)}); the classes it needs must be importable") \
            from None
    if not isinstance(model, torch.nn.Module):
        raise ModelFileError(f"{path} holds a {type(model).__name__}, not an nn.Module")
    from frontends import from_torch

    args = tuple(torch.randn(*[int(d) for d in shape]) for shape in input_shapes)
    return from_torch(model.eval(), args), None


_UNSAFE = object()


def _first_pickled_class(path: Path) -> str | None:
    """The first class a torch.save pickle refers to, read without unpickling (None when
    the bytes are not a readable pickle)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next(n for n in z.namelist() if n.endswith("data.pkl"))
                data = z.read(name)
        else:
            data = path.read_bytes()
        ops = list(pickletools.genops(data))
    except Exception:  # not a pickle at all
        return None
    strings = []
    for op, arg, _ in ops:
        if op.name == "GLOBAL":
            return str(arg).replace(" ", ".")
        if isinstance(arg, str):
            strings.append(arg)
        if op.name == "STACK_GLOBAL" and len(strings) >= 2:
            return f"{strings[-2]}.{strings[-1]}"
    return "an object"


def _weights_only_message(path: Path, obj: Any) -> str:
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return (f"{path} is a state_dict ({len(obj)} tensors, e.g. {next(iter(obj))!r}): "
                "weights alone are not a model. Load them into the model and export it:\n"
                "    model.load_state_dict(torch.load(path))\n" + EXPORT_SNIPPET)
    if isinstance(obj, torch.Tensor):
        return f"{path} holds a single tensor, not a model"
    return (f"{path} holds a {type(obj).__name__}, not a model; export the model with:\n"
            + EXPORT_SNIPPET)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""
