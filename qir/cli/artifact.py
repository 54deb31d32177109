"""Loading a `qir compile` output directory for `qir run OUTDIR` and `qir bench`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass
class Runner:
    """How to run an OUTDIR: its arguments (as `qir.cli.run.arguments` gives them),
    `run(inputs) -> outputs`, and the compiled library when it runs one (None for the
    interpreter)."""

    arguments: list
    run: Callable[[dict], dict]
    compiled: object | None = None


def runner(outdir: str, backend: str | None = None) -> Runner:
    """The Runner of an OUTDIR on `backend` (default: its target). A compiled library is
    run from model.so and the manifest alone (its signature is inside it): that works
    where TVM is installed without its compiler, and never reads the IR's weights."""
    man = read_manifest(outdir)
    backend = backend or man["target"]
    if backend == "numpy":
        from backends.numpy import run
        from qir.cli.run import arguments
        from qir.io import load

        module = load(Path(outdir) / "model.qir")
        return Runner(arguments(module.main), lambda inputs: run(module, inputs))
    if backend != man["target"]:
        raise QirError(f"{outdir} was compiled for {man['target']}; run it with --backend "
                       f"{man['target']} or --backend numpy")
    so = Path(outdir) / "model.so"
    if not so.exists():
        raise QirError(f"{outdir}: model.so is missing")
    from backends.tvm import load as load_library
    from backends.tvm.runtime import numpy_dtype

    compiled = load_library(str(so))
    spec = [(name, tuple(shape), numpy_dtype(dtype))
            for name, shape, dtype in compiled.signature.inputs]
    return Runner(spec, compiled.run, compiled)
