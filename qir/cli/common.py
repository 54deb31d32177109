"""Helpers shared by CLI commands: reading/writing IR files and npz arrays."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from qir.diagnostics import QirError


def read_module(path: str):
    """Load a module from a .qir file (with its .npz sidecar) or '-' for stdin."""
    from qir.io import load
    from qir.parser import parse

    if path == "-":
        return parse(sys.stdin.read(), "<stdin>")
    if not Path(path).exists():
        raise QirError(f"{path}: no such file")
    return load(path)


def write_module(module, path: str | None) -> None:
    """Write to `path` (+ sidecar) atomically, or print to stdout for None / '-'."""
    from qir.io import save
    from qir.printer import print_module

    if path in (None, "-"):
        sys.stdout.write(print_module(module))
        sys.stdout.flush()
    else:
        save(module, path)


def load_npz(path: str, what: str = "inputs") -> dict[str, np.ndarray]:
    from qir.io import read_npz

    return read_npz(path, what)


def save_npz(arrays: dict[str, np.ndarray], path: str) -> None:
    """Atomic np.savez: a temp file in the same directory, then rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".qir-", suffix=".npz", dir=directory)
    try:
        from qir.io import write_npz

        with os.fdopen(fd, "wb") as f:
            write_npz(arrays, f)
        from qir.io import fix_mode

        fix_mode(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
