"""Saving and loading modules: `model.qir` (text) plus `model.qir.npz` (parameter arrays),
and the one place every .npz file is read (`read_npz`) and written (`write_npz`).

Writes are atomic: both files are written to temporaries and renamed, so a failed save
never leaves a half-written model behind. They are also reproducible: the same module
gives the same bytes (the .npz members carry a fixed timestamp, not the time of writing).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
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
    if arr.dtype.type.__module__ == "numpy":  # (float8_e5m2 says kind "f", name known)
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
        arrays[_DTYPES_KEY] = np.array(json.dumps(tags, sort_keys=True))
    with open(path, "wb") as f:
        write_npz(arrays, f)


def load_params(path: str | Path) -> dict[str, np.ndarray]:
    data = read_npz(path, "the module's parameters")
    try:
        tags = json.loads(str(data.pop(_DTYPES_KEY))) if _DTYPES_KEY in data else {}
    except json.JSONDecodeError as e:
        raise QirError(f"{path}: array '{_DTYPES_KEY}' is not the dtype table qir writes "
                       f"({e.msg}): the file is damaged; write it again") from None
    if tags:
        import ml_dtypes

        for name, tag in tags.items():
            dtype = getattr(ml_dtypes, str(tag), None)
            if name not in data or dtype is None:
                raise QirError(f"{path}: the dtype table names {name!r} as {tag!r}, which "
                               "is not an array of the file or not a known dtype: the file "
                               "is damaged; write it again")
            data[name] = data[name].view(dtype)
    return data


def write_npz(arrays: dict[str, np.ndarray], f) -> None:
    """np.savez's format (read back by np.load), written reproducibly: members in the
    given order, each stamped 1980-01-01 rather than the time of writing."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with z.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)


def read_npz(path: str | Path, what: str) -> dict[str, np.ndarray]:
    """Every array of the .npz file at `path` (`what` it holds, for messages), read whole
    and never unpickled. Whatever is wrong with the file (missing, not an archive,
    truncated, a member that does not decode, an object array) is a QirError naming the
    file, the array when one is at fault, and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise QirError(f"{path}: no such file ({what})" if not path.exists() else
                       f"{path}: not a file ({what}; expected an .npz archive)")
    if path.stat().st_size == 0:
        raise QirError(f"{path}: empty file ({what}; expected arrays saved with numpy.savez)")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001  (zip, npy-header and OS errors alike)
        raise QirError(f"{path}: not a readable .npz archive ({what}): {_reason(e)}; "
                       "expected arrays saved with numpy.savez") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise QirError(f"{path}: a single .npy array, not an .npz archive ({what}); save "
                       "it with numpy.savez(path, name=array)")
    out = {}
    with z:
        for key in z.files:
            try:
                out[key] = z[key]
            except Exception as e:  # noqa: BLE001
                if "allow_pickle" in str(e):
                    raise QirError(f"{path}: array '{key}' holds Python objects ({what}), "
                                   "which qir never unpickles: save numeric arrays") from None
                raise QirError(f"{path}: array '{key}' cannot be read ({what}): "
                               f"{_reason(e)}; the file is damaged or truncated: write it "
                               "again") from None
            if not isinstance(out[key], np.ndarray):  # numpy hands back a non-.npy member
                raise QirError(f"{path}: member '{key}' is not a .npy array ({what}); the "
                               "file is damaged, or not written by numpy.savez")
    return out


def read_npy(path: str | Path, what: str) -> np.ndarray:
    """The array of the .npy file at `path` (`what` it holds), never unpickled; an .npz
    with exactly one array is taken too. Errors as read_npz's."""
    path = Path(path)
    if not path.is_file():
        raise QirError(f"{path}: no such file ({what})" if not path.exists() else
                       f"{path}: not a file ({what}; expected an .npy array)")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise QirError(f"{path}: not a readable .npy array ({what}): {_reason(e)}; save it "
                       "with numpy.save") from None
    if isinstance(z, np.lib.npyio.NpzFile):
        z.close()
        arrays = read_npz(path, what)
        if len(arrays) != 1:
            raise QirError(f"{path}: an .npz with {len(arrays)} arrays ({what}); expected "
                           "one .npy array")
        return next(iter(arrays.values()))
    return z


def _reason(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


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
