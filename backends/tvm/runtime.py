"""Running compiled modules: `Compiled.run`, `export_library` and `load`.

A compiled module carries its signature (argument names, shapes and dtypes; output
keys) inside the artifact, as a constant returned by the Relax function
"qir_signature", so an exported library is one self-contained file.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import tvm
import tvm_ffi
from tvm.runtime.vm import VirtualMachine

from backends.tvm.registry import TvmBuildError, error_summary
from qir import QirError
from qir.ir import Function, output_keys

SIGNATURE_FUNCTION = "qir_signature"


def _default_threads() -> None:
    """Run parallel kernels on every CPU this process may use, unless TVM_NUM_THREADS or
    OMP_NUM_THREADS says otherwise: TVM's own default counts physical cores, and on a
    VM whose vCPUs look like SMT siblings that is one (a parallel loop then runs on one
    thread and still pays the pool's ~7 us launch). Read once, when TVM's thread pool
    starts."""
    if not (os.environ.get("TVM_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")):
        os.environ["TVM_NUM_THREADS"] = str(len(os.sched_getaffinity(0)))


_default_threads()

# Inputs converted silently, as the numpy interpreter does: (given, expected).
_LOSSLESS_ENOUGH = {(np.dtype(np.float64), np.dtype(np.float32)),
                    (np.dtype(np.int32), np.dtype(np.int64))}


@dataclass(frozen=True)
class Signature:
    """What a compiled function takes and returns, and which qir ops each of its kernels
    computes (backends/tvm/trace.py)."""

    function: str
    inputs: tuple[tuple[str, tuple[int, ...], str], ...]  # (name, shape, numpy dtype)
    outputs: tuple[str, ...]  # result keys, as backends.numpy.run names them
    target: str  # "llvm" or "cuda"
    # kernel name -> the ops it computes: [{"value", "op", "loc"}] (trace.describe_kernels)
    kernels: dict[str, list[dict]] = field(default_factory=dict, compare=False, hash=False)

    @staticmethod
    def of(fn: Function, target: str, kernels: dict[str, list[dict]] | None = None
           ) -> Signature:
        inputs = tuple((a.name, a.type.shape, a.type.dtype.name) for a in fn.args)
        keys = output_keys(v.name for v in fn.outputs)
        return Signature(fn.name, inputs, tuple(keys), target, dict(kernels or {}))

    def to_json(self) -> str:
        return json.dumps({"function": self.function, "target": self.target,
                           "inputs": [[n, list(s), d] for n, s, d in self.inputs],
                           "outputs": list(self.outputs), "kernels": self.kernels})

    @staticmethod
    def from_json(text: str) -> Signature:
        d = json.loads(text)
        return Signature(d["function"], tuple((n, tuple(s), dt) for n, s, dt in d["inputs"]),
                         tuple(d["outputs"]), d["target"], d.get("kernels", {}))

    def as_constant(self) -> np.ndarray:
        return np.frombuffer(self.to_json().encode(), dtype=np.uint8).copy()


def numpy_dtype(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes  # bfloat16 / float8 names

        return np.dtype(getattr(ml_dtypes, name))


class Compiled:
    """A module compiled by TVM for one target, runnable in this process (when the
    target's device exists) and exportable as a shared library."""

    def __init__(self, executable: tvm.runtime.Module, signature: Signature, *,
                 device_code: list[tuple[str, bytes]] | None = None,
                 device_format: str = "cubin"):
        self.executable = executable  # the root runtime module (a relax.VMExecutable)
        self.signature = signature
        self.device_code = device_code or []  # CUDA (source, binary) compiled by qir
        self.device_format = device_format
        self._vm = None
        self._main = None  # (the VM's entry function, its device)

    @property
    def target(self) -> str:
        return self.signature.target

    def _device(self):
        if self.target == "cuda":
            enable_cuda()
            dev = tvm.cuda(0)
            if not dev.exist:
                raise TvmBuildError("this module runs on CUDA, but no CUDA device is present "
                                    "(export_library it and run it on a machine with a GPU)")
            return dev
        return tvm.cpu(0)

    @property
    def vm(self) -> VirtualMachine:
        if self._vm is None:
            dev = self._device()
            mod = self.executable
            if self.device_code and not _loadable_here(mod):
                raise TvmBuildError("this module's CUDA code was compiled without a CUDA "
                                    "driver: export_library it and load() the file")
            self._vm = VirtualMachine(mod, dev)
        return self._vm

    def run(self, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]
            ) -> dict[str, np.ndarray]:
        """Run on `inputs` (a dict keyed by argument name, or a list in argument order);
        returns the outputs keyed like backends.numpy.run."""
        if self._main is None:  # looked up once: ~4 us a call otherwise
            self._main = (self.vm[self.signature.function], self._device())
        main, dev = self._main
        args = [_to_device(a, dev) for a in self._bind(inputs)]
        out = main(*args)
        return {key: _to_numpy(t) for key, t in zip(self.signature.outputs, out)}

    def time_ms(self, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray], *,
                repeat: int = 50, warmup: int = 5) -> list[float]:
        """Milliseconds of each of `repeat` calls (after `warmup`) with the inputs
        already on the device and the outputs left there, each call waited for (on a
        GPU the device is synchronised): the model's latency without host transfers."""
        if self._main is None:
            self._main = (self.vm[self.signature.function], self._device())
        main, dev = self._main
        args = [tvm.runtime.tensor(a, device=dev) for a in self._bind(inputs)]
        for _ in range(warmup):
            main(*args)
        dev.sync()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            main(*args)
            dev.sync()
            times.append((time.perf_counter() - start) * 1e3)
        return times

    def profile(self, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray], *,
                repeat: int = 10) -> list[tuple[str, int, float]]:
        """Where a call's time goes: (function, calls per run, milliseconds per run) for
        each function the VM calls (kernels and VM builtins), most expensive first,
        medians over `repeat` runs. The device is synchronised around every call, so each
        figure includes that call's launch and the sum exceeds an unprofiled run."""
        if self._main is None:
            self._main = (self.vm[self.signature.function], self._device())
        main, dev = self._main
        args = [tvm.runtime.tensor(a, device=dev) for a in self._bind(inputs)]
        main(*args)  # warm up: first-call loading and allocation are not a kernel's time
        runs: list[dict[str, list[float]]] = []
        started: list[float] = []

        def instrument(func, name, before, ret, *call_args) -> int:
            dev.sync()
            if before:
                started.append(time.perf_counter())
            else:
                runs[-1].setdefault(str(name), []).append(
                    (time.perf_counter() - started.pop()) * 1e3)
            return 0  # VMInstrumentReturnKind.NO_OP: go on

        self.vm.set_instrument(instrument)
        try:
            for _ in range(repeat):
                runs.append({})
                main(*args)
        finally:
            self.vm.set_instrument(None)
        names = {n for r in runs for n in r}
        rows = [(n, len(runs[0].get(n, [])), statistics.median(sum(r.get(n, [])) for r in runs))
                for n in names]
        return sorted(rows, key=lambda row: -row[2])

    def _bind(self, inputs) -> list[np.ndarray]:
        sig = self.signature
        names = [n for n, _, _ in sig.inputs]
        if isinstance(inputs, Mapping):
            missing = [n for n in names if n not in inputs]
            extra = [str(k) for k in inputs if k not in names]
            if missing or extra:
                raise QirError(f"@{sig.function}: missing inputs {missing}, unknown inputs "
                               f"{extra} (arguments: {', '.join(names)})")
            values = [inputs[n] for n in names]
        elif isinstance(inputs, Sequence) and not isinstance(inputs, (str, bytes)):
            if len(inputs) != len(names):
                raise QirError(f"@{sig.function} takes {len(names)} inputs, got {len(inputs)}")
            values = list(inputs)
        else:
            raise QirError("inputs must be a dict keyed by argument name or a list in "
                           f"argument order, got {type(inputs).__name__}")
        out = []
        for (name, shape, dtype), value in zip(sig.inputs, values):
            arr = np.asarray(value)
            want = numpy_dtype(dtype)
            if arr.dtype != want:
                if (arr.dtype, want) not in _LOSSLESS_ENOUGH:
                    raise QirError(f"input '{name}' has dtype {arr.dtype}, expected {want}")
                arr = arr.astype(want)
            if arr.shape != tuple(shape):
                raise QirError(f"input '{name}' has shape {list(arr.shape)}, expected "
                               f"{list(shape)}")
            out.append(arr if arr.flags.c_contiguous else arr.copy(order="C"))
        return out

    def export_library(self, path: str) -> str:
        """Write a shared library (.so) that `load` (or tvm.runtime.load_module) reads;
        for CUDA it carries the compiled device code."""
        path = str(path)
        kwargs = {}
        if self.device_code:
            from backends.tvm.cuda import packer

            kwargs["fpack_imports"] = packer(self.device_code, self.device_format)
        try:
            self.executable.export_library(path, **kwargs)
        except QirError:
            raise
        except Exception as e:  # noqa: BLE001  (compiler / linker failure)
            raise TvmBuildError(f"export_library({path!r}) failed: {type(e).__name__}: "
                                f"{error_summary(e)}") from e
        return path


def _cudart_candidates() -> list[str]:
    """Where libcudart (CUDA 13, which TVM's CUDA runtime links) may be: the loader's
    search path, then the nvidia-cuda-runtime wheels a PyTorch installation brings."""
    found = ["libcudart.so.13"]
    for root in sys.path:
        found += sorted(glob.glob(os.path.join(root, "nvidia", "*", "lib", "libcudart.so.13")))
        found += sorted(glob.glob(os.path.join(root, "nvidia", "*", "*", "lib",
                                               "libcudart.so.13")))
    return found


def enable_cuda() -> str | None:
    """Make TVM's CUDA runtime usable in this process; None when it is, else why not.

    With its compiler, TVM loads its CUDA runtime at import where a driver is present.
    Installed as the runtime alone (a GPU machine given no compiler:
    docs/backends.md), it does not: the CUDA runtime library (libcudart, found on the
    loader's path or in a PyTorch installation's nvidia wheels) and TVM's
    libtvm_runtime_cuda are loaded here, once."""
    if tvm_ffi.get_global_func("device_api.cuda", allow_missing=True) is not None:
        return None
    errors = []
    for path in _cudart_candidates():
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            break
        except OSError as e:
            errors.append(str(e))
    else:
        return "libcudart.so.13 (the CUDA 13 runtime) was not found: " + "; ".join(errors[:1])
    lib = os.path.join(os.path.dirname(tvm.__file__), "lib", "libtvm_runtime_cuda.so")
    try:
        ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        return f"TVM's CUDA runtime ({lib}) does not load: {e}"
    if tvm_ffi.get_global_func("device_api.cuda", allow_missing=True) is None:
        return f"{lib} loaded but registered no CUDA device API"
    return None


_CPU = tvm.cpu().dlpack_device_type()  # (tvm.cpu() costs ~2 us a call)


def _to_device(a: np.ndarray, dev) -> tvm.runtime.Tensor:
    """`a` as a TVM tensor on `dev`: the host array itself (DLPack, no copy) on the CPU,
    else a copy (tvm.runtime.tensor costs ~30 us even for a small array)."""
    if dev.dlpack_device_type() == _CPU:
        try:
            return tvm.runtime.from_dlpack(a)
        except Exception:  # noqa: BLE001  (read-only or unaligned: copy it)
            pass
    return tvm.runtime.tensor(a, device=dev)


def _to_numpy(t: tvm.runtime.Tensor) -> np.ndarray:
    """A numpy copy of an output (the VM reuses its memory on the next call)."""
    if t.device.dlpack_device_type() == _CPU:
        try:
            return np.from_dlpack(t).copy()
        except Exception:  # noqa: BLE001  (a dtype numpy's DLPack does not know)
            pass
    return t.numpy()


def _loadable_here(mod: tvm.runtime.Module) -> bool:
    return all(m.is_runnable() for m in mod._collect_from_import_tree(lambda m: True))


def enable_extras() -> None:
    """Load TVM's runtime extras (libtvm_runtime_extra: the sort library that sort and
    top-k call) where TVM runs as its runtime alone, which does not load them itself.
    With the compiler they are already there."""
    if tvm_ffi.get_global_func("tvm.contrib.sort.argsort", allow_missing=True) is not None:
        return
    lib = os.path.join(os.path.dirname(tvm.__file__), "lib", "libtvm_runtime_extra.so")
    if os.path.exists(lib):
        ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)


_LOADED: dict[str, tuple] = {}  # real path -> (identity of the file, the module loaded)


def _load_module(path: str):
    """tvm.runtime.load_module, also for a file replaced since this process loaded that
    path (qir compile --force into the same OUTDIR, then load again): dlopen matches
    libraries by path and would return the first one, so a replaced file is loaded
    from a fresh name (a copy, removed once loaded: the mapping stays), and a path
    loads as the module last loaded from it while its file is unchanged."""
    real = os.path.realpath(path)
    st = os.stat(real)
    ident = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    seen = _LOADED.get(real)
    if seen is not None and seen[0] == ident:
        return seen[1]
    if seen is None:
        mod = tvm.runtime.load_module(path)
    else:
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory(prefix="qir-reload-") as tmp:
            fresh = os.path.join(tmp, os.path.basename(real))
            shutil.copyfile(real, fresh)
            mod = tvm.runtime.load_module(fresh)
    _LOADED[real] = (ident, mod)
    return mod


def load(path: str) -> Compiled:
    """Load a library written by `Compiled.export_library`."""
    path = str(path)
    enable_extras()
    try:
        mod = _load_module(path)
    except Exception as e:  # noqa: BLE001
        msg = error_summary(e)
        if "cuda" not in msg.lower():
            raise TvmBuildError(f"cannot load {path}: {msg}") from e
        why = enable_cuda()  # TVM installed as its runtime alone: load its CUDA half
        if why is not None:
            raise TvmBuildError(f"{path} contains CUDA device code, which needs a CUDA driver "
                                f"to load (no libcuda here): {msg}; {why}") from e
        try:
            mod = _load_module(path)
        except Exception as e2:  # noqa: BLE001
            raise TvmBuildError(f"cannot load {path}: {error_summary(e2)}") from e2
    on_cuda = bool(mod._collect_from_import_tree(lambda m: m.kind == "cuda"))
    try:
        vm = VirtualMachine(mod, tvm.cuda(0) if on_cuda else tvm.cpu(0))
        raw = vm[SIGNATURE_FUNCTION]().numpy()
    except Exception as e:  # noqa: BLE001
        raise TvmBuildError(f"{path} is not a library exported by qir's TVM backend "
                            f"(no {SIGNATURE_FUNCTION}): {error_summary(e)}") from e
    compiled = Compiled(mod, Signature.from_json(raw.tobytes().decode()))
    compiled._vm = vm
    return compiled
