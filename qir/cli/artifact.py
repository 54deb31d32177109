"""Loading a `qir compile` output directory for `qir run OUTDIR`, `qir bench` and `qir
report`, and checking it first.

An OUTDIR verifies itself before anything in it is loaded (`verify`): its manifest
lists every file with its size and sha256, and records the qir, TVM and tvm-ffi versions
it was built with and, for llvm, the CPU features its code may use. A file that was
truncated, edited or replaced, a build from other versions, or a build whose
instructions this CPU lacks is refused with a message saying to recompile: loading
model.so runs its code (a damaged one can crash the process; one for a missing
instruction set dies of SIGILL), so it is never loaded unverified.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qir.diagnostics import QirError

FORMAT = "qir-compiled/2"
RECOMPILE = "recompile it with `qir compile ... -o OUTDIR`"


def is_outdir(path: str) -> bool:
    return Path(path).is_dir()


def read_manifest(outdir: str) -> dict:
    path = Path(outdir) / "manifest.json"
    if not path.exists():
        raise QirError(f"{outdir}: not a qir compile output (no manifest.json)")
    try:
        man = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise QirError(f"{path}:{e.lineno}:{e.colno}: malformed manifest: {e.msg}; "
                       f"{RECOMPILE}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise QirError(f"{path}: unreadable manifest: {e}; {RECOMPILE}") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        found = man.get("format") if isinstance(man, dict) else type(man).__name__
        raise QirError(f"{path}: manifest format {found!r}, this qir reads {FORMAT!r}; "
                       f"{RECOMPILE}")
    for key, kind in (("target", str), ("files", dict), ("versions", dict)):
        if not isinstance(man.get(key), kind):
            raise QirError(f"{path}: the manifest's {key!r} is missing or not a "
                           f"{kind.__name__}; {RECOMPILE}")
    return man


def versions(target: str) -> dict:
    """The versions an artifact for `target` depends on, as installed here."""
    from qir import __version__

    found = {"qir": __version__, "python": sys.version.split()[0]}
    if target in ("llvm", "cuda"):
        import tvm
        import tvm_ffi

        found.update(tvm=tvm.__version__, tvm_ffi=tvm_ffi.__version__)
    elif target == "onnx":  # recorded, not checked: any ONNX runtime may read the file
        import onnx

        found.update(onnx=onnx.__version__)
    return found


def cpu_flags() -> set[str] | None:
    """This CPU's feature flags as /proc/cpuinfo names them; None where there is no
    /proc/cpuinfo (the check is then skipped)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def verify(outdir: str, man: dict, backend: str, needs: tuple[str, ...]) -> None:
    """Refuse an OUTDIR that does not match its manifest or this machine (see the module
    docstring). `backend` is what will run it ("numpy" loads no library); `needs` the
    files that will be read (with their .npz weights where the manifest lists them): each
    must be there. Every listed file that is there is checked; one that is absent and
    not needed is not (a deployed OUTDIR may hold only model.so and manifest.json)."""
    root = Path(outdir)
    listed = man["files"]
    for name in listed:
        if Path(name).name != name or name in ("", ".", ".."):
            raise QirError(f"{root / 'manifest.json'}: file entry {name!r} is not a file "
                           f"name inside the directory; {RECOMPILE}")
    needed = {*needs, *(f"{n}.npz" for n in needs if f"{n}.npz" in listed)}
    for name in sorted(needed - listed.keys()):
        raise QirError(f"{root / 'manifest.json'}: does not list {name}, which running it "
                       f"needs; {RECOMPILE}")
    for name, entry in sorted(listed.items()):
        path = root / name
        if name == "manifest.json" or (name not in needed and not path.exists()):
            continue
        if not isinstance(entry, dict) or "sha256" not in entry or "bytes" not in entry:
            raise QirError(f"{root / 'manifest.json'}: file entry {name!r} has no size and "
                           f"sha256; {RECOMPILE}")
        if not path.is_file():
            raise QirError(f"{path}: missing (the manifest lists it); {RECOMPILE}")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise QirError(f"{path}: {size} bytes, the manifest says {entry['bytes']}: the "
                           f"file was truncated or changed after compiling; {RECOMPILE}")
        if sha256(path) != entry["sha256"]:
            raise QirError(f"{path}: its sha256 differs from the manifest's: the file was "
                           f"changed after compiling; {RECOMPILE}")
    try:  # the versions of what will run it: TVM for a library, nothing else checked
        here = versions(backend if backend in ("llvm", "cuda") else "numpy")
    except ImportError as e:
        raise QirError(f"{outdir}: running its {backend} library needs TVM ({e}); install "
                       "apache-tvm (README) or run it with --backend numpy") from None
    for key in ("qir", "tvm", "tvm_ffi"):
        built = man["versions"].get(key)
        if key in here and built != here[key]:
            raise QirError(f"{outdir} was built with {key.replace('_', '-')} {built}, this "
                           f"machine has {here[key]}; {RECOMPILE} here (or install "
                           f"{key.replace('_', '-')}=={built})")
    cpu = man.get("cpu") or {}
    requires = cpu.get("requires") if isinstance(cpu, dict) else None
    if requires is not None and not (isinstance(requires, list)
                                     and all(isinstance(f, str) for f in requires)):
        raise QirError(f"{root / 'manifest.json'}: cpu.requires is not a list of CPU flags; "
                       f"{RECOMPILE}")
    flags = cpu_flags()
    if backend == "llvm" and flags is not None and requires:
        missing = [f for f in requires if f not in flags]
        if missing:
            raise QirError(f"{outdir} was built for CPU {cpu.get('mcpu')!r} and uses "
                           f"{', '.join(missing)}, which this CPU lacks (it would stop with "
                           f"an illegal instruction); {RECOMPILE} on this machine")


def sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    if backend != "numpy" and backend != man["target"]:
        raise QirError(f"{outdir} was compiled for {man['target']}; run it with --backend "
                       f"{man['target']} or --backend numpy")
    library = {"onnx": "model.onnx"}.get(backend, "model.so")
    verify(outdir, man, backend, ("model.qir",) if backend == "numpy" else (library,))
    if backend == "onnx":  # ONNX Runtime
        import numpy as np

        from backends.onnx import OnnxModel
        from qir.ir import output_keys

        keys = output_keys(o["name"] for o in man.get("outputs", []))
        model = OnnxModel(str(Path(outdir) / library), keys)
        spec = [(i["name"], tuple(i["shape"]), np.dtype(i["dtype"]))
                for i in man.get("inputs", [])]
        return Runner(spec, model.run)
    if backend == "numpy":
        from backends.numpy import run
        from qir.cli.run import arguments
        from qir.io import load

        module = load(Path(outdir) / "model.qir")
        return Runner(arguments(module.main), lambda inputs: run(module, inputs))
    so = Path(outdir) / "model.so"
    if not so.exists():
        raise QirError(f"{outdir}: model.so is missing")
    from backends.tvm import load as load_library
    from backends.tvm.runtime import numpy_dtype

    compiled = load_library(str(so))
    spec = [(name, tuple(shape), numpy_dtype(dtype))
            for name, shape, dtype in compiled.signature.inputs]
    return Runner(spec, compiled.run, compiled)
