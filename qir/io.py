"""Saving and loading modules: `model.qir` (text) plus `model.qir.npz` (parameter arrays).

Writes are atomic: both files are written to temporaries and renamed, so a failed save
never leaves a half-written model behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from qir.diagnostics import QirError
from qir.ir import Module
from qir.parser import parse_file
from qir.printer import print_module

_DTYPES_KEY = "__qir_dtypes__"


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".npz")


def _encode(arr: np.ndarray) -> tuple[np.ndarray, str | None]:
    """npz cannot hold ml_dtypes (bf16, fp8) portably: store their bits with a tag."""
    if arr.dtype.kind in "biuf" and arr.dtype.name in np.sctypeDict:
        return arr, None
    bits = {1: np.uint8, 2: np.uint16}[arr.dtype.itemsize]
    return arr.view(bits), arr.dtype.name


def save_params(params: dict[str, np.ndarray], path: str | Path) -> None:
    arrays, tags = {}, {}
    for name, arr in params.items():
        arrays[name], tag = _encode(np.asarray(arr))
        if tag:
            tags[name] = tag
    if tags:
        arrays[_DTYPES_KEY] = np.array(json.dumps(tags))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_params(path: str | Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise QirError(f"{path}: cannot read parameters: {e}") from None
    tags = json.loads(str(data.pop(_DTYPES_KEY))) if _DTYPES_KEY in data else {}
    if tags:
        import ml_dtypes

        for name, tag in tags.items():
            data[name] = data[name].view(getattr(ml_dtypes, tag, None) or np.dtype(tag))
    return data


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fix_mode(path: str | Path, directory: bool = False) -> None:
    """Temporary files are created private (0600/0700); give the final file the mode a
    plain open() would have."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def save(module: Module, path: str | Path) -> None:
    """Write `path` (text) and, when the module has parameters, `path.npz` beside it."""
    path = Path(path)
    text = print_module(module)
    directory = path.parent if str(path.parent) else Path(".")
    tmp_files = []
    try:
        fd, tmp_text = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
        tmp_files.append(tmp_text)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        tmp_npz = None
        if module.params:
            fd, tmp_npz = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz",
                                           dir=directory)
            os.close(fd)
            tmp_files.append(tmp_npz)
            save_params(module.params, tmp_npz)
        fix_mode(tmp_text)
        os.replace(tmp_text, path)
        if tmp_npz:
            fix_mode(tmp_npz)
            os.replace(tmp_npz, sidecar_path(path))
        elif sidecar_path(path).exists():
            sidecar_path(path).unlink()
    except OSError as e:
        raise QirError(f"{path}: cannot write: {e.strerror or e}") from None
    finally:
        for f in tmp_files:
            if os.path.exists(f):
                os.unlink(f)


def load(path: str | Path) -> Module:
    """Parse `path` and attach the parameters from its `.npz` sidecar, if there is one."""
    module = parse_file(path)
    side = sidecar_path(path)
    if side.exists():
        module.params = load_params(side)
    return module
