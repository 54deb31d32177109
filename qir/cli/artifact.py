"""Loading a `qir compile` output directory for `qir run OUTDIR` and `qir bench`."""

from __future__ import annotations

import json
from pathlib import Path

from qir.diagnostics import QirError


def is_outdir(path: str) -> bool:
    return Path(path).is_dir()


def read_manifest(outdir: str) -> dict:
    path = Path(outdir) / "manifest.json"
    if not path.exists():
        raise QirError(f"{outdir}: not a qir compile output (no manifest.json)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise QirError(f"{path}:{e.lineno}:{e.colno}: malformed manifest: {e.msg}") from None


def runner(outdir: str, backend: str | None = None):
    """(module, run(inputs) -> outputs) for an OUTDIR on `backend` (default: its target)."""
    from qir.io import load

    man = read_manifest(outdir)
    module = load(Path(outdir) / "model.qir")
    backend = backend or man["target"]
    if backend == "numpy":
        from backends.numpy import run

        return module, (lambda inputs: run(module, inputs))
    if backend != man["target"]:
        raise QirError(f"{outdir} was compiled for {man['target']}; run it with --backend "
                       f"{man['target']} or --backend numpy")
    so = Path(outdir) / "model.so"
    if not so.exists():
        raise QirError(f"{outdir}: model.so is missing")
    from backends.tvm import load as load_library

    compiled = load_library(str(so))
    return module, compiled.run
