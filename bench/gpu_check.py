"""The GPU check: qir's CUDA artifacts run on a GPU, bit for bit against the numpy
interpreter, and timed against torch on the same GPU.

Two steps, because the machine that compiles (this one: TVM's compiler, nvcc, no GPU)
is not the one that runs (a GPU machine with its own Python and torch, no package
registry, at most 64 MiB of files shipped to it):

    .venv/bin/python -m bench.gpu_check pack [-o .gpu]     # here
    python3 -m bench.gpu_check run .gpu [-o result.json]   # there, from the repo root

`pack` compiles every zoo model (float and int8, with `qir compile --target cuda`, the
int8 ones also with every integer intermediate as an output: where a model differs, the
first op that does is named) and torchvision's ResNet-18 and MobileNetV2 (int8, batch 1
and 32), computes the references here (the numpy interpreter for int8, torch eager for
float), adds TVM without its compiler, and writes it all as one archive,
`.gpu/pack.tar.xz`, beside the wheels of apache-tvm-ffi and lark for that machine's
Python (`.gpu/wheels/`). `run` unpacks the archive, installs the wheels into the unpacked
tree (pip, from those files alone) and puts both first on the path: the command above is
all the GPU machine needs.

It checks `qir run` and `qir bench` through the command line in a fresh process (the
runtime-only path: the CUDA runtime found and loaded by qir itself), then every artifact:
int8 outputs equal to the interpreter's, float outputs within 1e-4 (relative to the
largest) of torch, median latency with inputs on the device; and times torch fp32 and
fp16 eager (cuDNN autotuned) and with CUDA graphs on the same GPU. It prints a table
(markdown) and writes the figures as JSON. docs/performance.md holds the latest run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 64 * 2**20  # what may be shipped to the GPU machine in one call
ARCHIVE = "pack.tar.xz"
ZOO_FEEDS = 3  # input samples per zoo model
REAL_BATCHES = (1, 32)
DISTINCT = 4  # distinct images in a batch-32 input (tiled 8 times: see real_feed)
FLOAT_RTOL = 1e-4
PYTHON_TAG = "3.12"  # the GPU machine's Python
WHEELS = ("apache-tvm-ffi==0.1.14.post1", "lark")
TVM_LEFT_OUT = ("lib/libtvm_compiler.so", "3rdparty", "src", "web", "include", "lib64",
                "relax", "s_tir", "topi")  # the compiler and what only it imports


# --- pack (the compiling machine) ----------------------------------------------------------


def _qir(*args: str) -> None:
    from qir.cli import main

    code = main([*args, "--no-progress"] if args[0] == "compile" else list(args))
    if code:
        raise RuntimeError(f"qir {' '.join(args)} exited with {code}")


def _save(entry_dir: Path, outdir: Path, info: dict, feeds: list[dict], want: list[dict]
          ) -> dict:
    entry_dir.mkdir(parents=True)
    from qir.cli.artifact import sha256

    shutil.copy(outdir / "model.so", entry_dir / "model.so")
    manifest = json.loads((outdir / "manifest.json").read_text())
    shipped = entry_dir / "model.so"  # the manifest lists what ships (qir.cli.artifact)
    manifest["files"] = {"model.so": {"bytes": shipped.stat().st_size,
                                      "sha256": sha256(shipped)}}
    (entry_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    np.savez(entry_dir / "inputs.npz", **{f"{i}/{k}": v for i, feed in enumerate(feeds)
                                          for k, v in feed.items()})
    np.savez(entry_dir / "want.npz", **{f"{i}/{k}": v for i, out in enumerate(want)
                                        for k, v in out.items()})
    info = dict(info, dir=entry_dir.name, feeds=len(feeds))
    (entry_dir / "info.json").write_text(json.dumps(info, indent=1))
    return info


def _interpret(outdir: Path, feeds: list[dict]) -> list[dict]:
    from qir.cli.artifact import runner

    execute = runner(str(outdir), "numpy").run
    return [execute(f) for f in feeds]


def references(out: Path, scheme: str, feeds_t: list, build_model) -> tuple:
    """(module, feeds, expected outputs, check) of a compiled OUTDIR on the inputs
    `feeds_t` (tensors in argument order): the interpreter's outputs for int8 (to be met
    bit for bit), torch's first outputs for float (within FLOAT_RTOL)."""
    import torch

    from qir.io import load

    module = load(out / "model.qir")
    feeds = [{a.name: t.numpy() for a, t in zip(module.main.args, ts)} for ts in feeds_t]
    if scheme == "int8":
        return module, feeds, _interpret(out, feeds), "exact"
    model = build_model()
    with torch.no_grad():
        want = [_torch_outputs(model(*ts), _interpret(out, [f])[0])
                for ts, f in zip(feeds_t, feeds)]
    return module, feeds, want, "float"


def pack_zoo(name: str, work: Path, models: Path, target: str) -> list[dict]:
    from tests.backends.tvm.tvm_helpers import with_probes
    from tests.debug.export_zoo import export
    from tests.zoo import ZOO

    entry = ZOO[name]
    pt2, data = work / f"{name}.pt2", work / f"{name}.npz"
    export(name, str(pt2), str(data), samples=16)
    feeds_t = [entry.example_inputs(seed) for seed in range(100, 100 + ZOO_FEEDS)]
    infos = []
    for scheme in ("float", "int8"):
        out = work / f"{name}-{scheme}"
        _qir("compile", str(pt2), *(["--int8"] if scheme == "int8" else []), "--calib",
             str(data), "--target", target, "-o", str(out))
        module, feeds, want, check = references(out, scheme, feeds_t, entry.build)
        infos.append(_save(models / f"{name}-{scheme}", out,
                           {"model": name, "scheme": scheme, "batch": None, "check": check,
                            "timed": True}, feeds, want))
        if scheme == "int8":  # every integer intermediate an output: names the first diff
            from backends.tvm import build

            probed, _ = with_probes(module)
            probe_dir = work / f"{name}-int8-probes"
            probe_dir.mkdir()
            build(probed, target).export_library(str(probe_dir / "model.so"))
            shutil.copy(out / "manifest.json", probe_dir)
            from backends.numpy import run as interpret

            want = [interpret(probed, f) for f in feeds]
            infos.append(_save(models / f"{name}-int8-probes", probe_dir,
                               {"model": name, "scheme": "int8, every integer value an "
                                "output", "batch": None, "check": "exact", "timed": False,
                                "order": [op.results[0].name for op in probed.main.ops
                                          if op.results]}, feeds, want))
    return infos


def _torch_outputs(out, keyed: dict) -> dict:
    """torch's outputs (a tensor, a tuple, or a dict-like Hugging Face output) keyed like
    the interpreter's, in the same order."""
    import torch

    if isinstance(out, torch.Tensor):
        flat = [out]
    else:
        flat = list(out.values() if isinstance(out, dict) else out)
    return {k: t.numpy() for k, t in zip(keyed, flat)}


def pack_suite(name: str, work: Path, models: Path, target: str) -> list[dict]:
    """A model of the real-architecture suite (tests/real_models.py) at its test size:
    int8 against the interpreter, and float against torch for the small ones."""
    import torch

    from tests.real_models import REAL_MODELS, random_like

    model, inputs = REAL_MODELS[name].build()
    pt2 = work / f"suite-{name}.pt2"
    torch.export.save(torch.export.export(model, inputs), pt2)
    gen = torch.Generator().manual_seed(2)
    calib_t = [[random_like(t, gen) for t in inputs] for _ in range(4)]
    feeds_t = [[random_like(t, gen) for t in inputs] for _ in range(2)]
    infos = []
    small = sum(p.numel() for p in model.parameters()) < 2_000_000
    for scheme in ("int8", "float") if small else ("int8",):
        out = work / f"suite-{name}-{scheme}"
        if scheme == "int8":
            calib = work / f"suite-{name}-calib.npz"
            np.savez(calib, **{a: np.stack([c[i].numpy() for c in calib_t])
                               for i, a in enumerate(load_export_args(pt2))})
            _qir("compile", str(pt2), "--int8", "--calib", str(calib), "--target", target,
                 "-o", str(out))
        else:
            _qir("compile", str(pt2), "--target", target, "-o", str(out))
        _, feeds, want, check = references(out, scheme, feeds_t, lambda: model)
        infos.append(_save(models / f"suite-{name}-{scheme}", out,
                           {"model": name, "scheme": scheme, "batch": None, "check": check,
                            "timed": False}, feeds, want))
    return infos


def _flat_outputs(model):
    """`model` with its outputs as a flat tuple of tensors (torch.export cannot save
    torch.return_types such as sort's)."""
    import torch

    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            return tuple(torch.utils._pytree.tree_leaves(self.model(*args)))

    return Flat().eval()


def pack_writes(work: Path, models: Path, target: str) -> list[dict]:
    """The last Core ATen ops (tests/frontends/test_import_writes.py: scatters, index_put,
    embedding bags, fold, sort / topk, 3-d pooling, distances, grid sampling), float
    builds against the interpreter (integer outputs such as sort's indices exactly, float
    ones within FLOAT_RTOL), and an int8 model with grid_sample and scatter-add islands
    bit for bit."""
    import torch

    from tests.frontends import test_import_writes as writes
    from tests.frontends.helpers import Fn

    infos = []
    cases = {name: (model, args, None) for name, (model, args) in writes.MODELS.items()}
    ties = torch.randint(-3, 4, (6, 40), generator=torch.Generator().manual_seed(3)).float()
    cases["sort_ties"] = (Fn(lambda x: (  # stable: equal values keep their order
        *torch.sort(x, dim=1, stable=True), torch.topk(x, 5)[1],
        x.argsort(dim=0, descending=True, stable=True))), (ties,), None)
    model, args = writes.grid_scatter_int8()
    cases["grid_scatter_int8"] = (model, args, writes.grid_scatter_calib)
    for name, (model, args, calib_of) in cases.items():
        pt2, out = work / f"writes-{name}.pt2", work / f"writes-{name}"
        torch.export.save(torch.export.export(_flat_outputs(model), tuple(args)), pt2)
        names = load_export_args(pt2)
        if calib_of is None:
            _qir("compile", str(pt2), "--target", target, "-o", str(out))
        else:
            calib = work / f"writes-{name}-calib.npz"
            samples = [calib_of(seed) for seed in range(4)]
            np.savez(calib, **{a: np.stack([s[i] for s in samples])
                               for i, a in enumerate(names)})
            _qir("compile", str(pt2), "--int8", "--calib", str(calib), "--target", target,
                 "-o", str(out))
        feeds = [{a: t.numpy() for a, t in zip(names, args)}]
        infos.append(_save(models / f"writes-{name}", out,
                           {"model": name, "scheme": "int8" if calib_of else "float",
                            "batch": None, "check": "exact" if calib_of else "mixed",
                            "timed": False}, feeds, _interpret(out, feeds)))
    return infos


def load_export_args(pt2: Path) -> list[str]:
    """The user input names of a torch.export archive (what --calib keys are)."""
    from frontends import load_model_file_with_examples

    module, _ = load_model_file_with_examples(str(pt2))
    return [a.name for a in module.main.args]


def real_feed(u8: np.ndarray, batch: int) -> np.ndarray:
    """The float input of a batch from the distinct images `u8` [DISTINCT, 3, H, W]: one
    image for batch 1, the images repeated to fill a bigger batch."""
    from bench.real_models import from_bytes

    x = from_bytes(u8)
    return x[:1] if batch == 1 else np.concatenate([x] * (batch // len(x)))


def pack_real(name: str, batch: int, work: Path, models: Path, target: str,
              graph: bool = False) -> dict:
    import torch

    from bench.real_models import build, image_bytes, images

    model = build(name)
    pt2, calib = work / f"{name}-b{batch}.pt2", work / f"{name}-b{batch}-calib.npz"
    example = torch.from_numpy(images(batch, seed=1))
    torch.export.save(torch.export.export(model, (example,)), pt2)
    samples = max(1, 8 // batch)
    np.savez(calib, x=np.stack([images(batch, seed=10 + i) for i in range(samples)]))
    label = f"{name}-b{batch}-int8" + ("-graph" if graph else "")
    out = work / label
    _qir("compile", str(pt2), "--int8", "--calib", str(calib), "--target", target, "-o",
         str(out), *(["--cuda-graph"] if graph else []))
    u8 = image_bytes(DISTINCT, seed=7)
    feeds = [{"x": real_feed(u8, batch)}]
    want = _interpret(out, feeds)
    info = _save(models / label, out,
                 {"model": name, "scheme": "int8, CUDA graph" if graph else "int8",
                  "batch": batch, "check": "exact", "timed": True, "profile": not graph,
                  "torch": None if graph else name, "images": "images.npy"}, [], want)
    np.save(models / info["dir"] / "images.npy", u8)  # the input is rebuilt from these
    return info


def pack_runtime(out: Path) -> None:
    """TVM without its compiler (its runtime libraries and Python package)."""
    import tvm

    src = Path(tvm.__file__).parent
    dst = out / "runtime" / "tvm"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for rel in TVM_LEFT_OUT:
        path = dst / rel
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def download_wheels(where: Path) -> None:
    """The wheels the GPU machine's Python needs beside its own packages (from PyPI)."""
    where.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                    "--only-binary=:all:", "--python-version", PYTHON_TAG, "--implementation",
                    "cp", "--platform", "manylinux_2_28_x86_64", "-d", str(where),
                    *WHEELS], check=True)


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pack(out: Path, zoo: list[str], real: list[str], target: str = "cuda",
         wheels: bool = True, suite: tuple[str, ...] = (), writes: bool = False) -> None:
    graph = target.startswith("cuda")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    entries = []
    with tempfile.TemporaryDirectory(prefix="qir_gpu_pack_") as tmp:
        work, stage = Path(tmp) / "work", Path(tmp) / "stage"
        work.mkdir()
        models = stage / "models"
        models.mkdir(parents=True)
        for name in zoo:
            print(f"pack: {name}", flush=True)
            entries += pack_zoo(name, work, models, target)
        for name in suite:
            print(f"pack: {name} (real-architecture suite)", flush=True)
            entries += pack_suite(name, work, models, target)
        if writes:
            print("pack: the last Core ATen ops (scatter, sort, grid_sample, ...)", flush=True)
            entries += pack_writes(work, models, target)
        for name in real:
            for batch in REAL_BATCHES:
                print(f"pack: {name} batch {batch}", flush=True)
                entries.append(pack_real(name, batch, work, models, target))
            if graph:  # batch 1 is where launches dominate
                print(f"pack: {name} batch 1, CUDA graph", flush=True)
                entries.append(pack_real(name, 1, work, models, target, graph=True))
        pack_runtime(stage)
        (stage / "pack.json").write_text(json.dumps({"entries": entries}, indent=1))
        unpacked = size_of(stage)
        with tarfile.open(out / ARCHIVE, "w:xz", preset=6) as tar:
            for path in sorted(stage.iterdir()):
                tar.add(path, arcname=path.name)
    if wheels:
        download_wheels(out / "wheels")
    total = size_of(out)
    print(f"pack: {out} holds {len(entries)} artifacts: {total / 2**20:.1f} MiB to ship "
          f"({unpacked / 2**20:.1f} MiB unpacked)")
    if total > LIMIT - 4 * 2**20:
        raise SystemExit(f"pack: {total / 2**20:.1f} MiB is over what one call may ship "
                         f"({LIMIT / 2**20:.0f} MiB with the repository): pack fewer models")


# --- run (the GPU machine) -------------------------------------------------------------------


def _feeds(entry_dir: Path, info: dict) -> list[dict]:
    if info.get("images"):
        u8 = np.load(entry_dir / info["images"])
        return [{"x": real_feed(u8, info["batch"])}]
    return _unflatten(np.load(entry_dir / "inputs.npz"))


def _unflatten(z) -> list[dict]:
    """The dicts _save flattened into one npz ("<index>/<name>" keys)."""
    out = [{} for _ in range(1 + max((int(k.split("/", 1)[0]) for k in z.files), default=-1))]
    for key in z.files:
        i, name = key.split("/", 1)
        out[int(i)][name] = z[key]
    return out


def compare(got: dict, want: dict, check: str, order: list[str] | None) -> dict:
    """What differs: exact (every integer and float bit), float (relative 1e-4), or
    mixed (integer outputs exact, float ones relative 1e-4)."""
    result = {"ok": True}
    bad = []
    for key, w in want.items():
        g = np.asarray(got[key])
        exact = check == "exact" or (check == "mixed" and w.dtype.kind in "biu")
        if exact:
            if g.shape != w.shape or not np.array_equal(g.view(np.uint8) if g.dtype.kind == "f"
                                                        else g, w.view(np.uint8) if
                                                        w.dtype.kind == "f" else w):
                diff = int(np.sum(g != w)) if g.shape == w.shape else -1
                bad.append((key, diff, w.size))
        else:
            scale = float(np.max(np.abs(w))) or 1.0
            err = float(np.max(np.abs(g.astype(np.float64) - w))) / scale
            result["max_rel_err"] = max(result.get("max_rel_err", 0.0), err)
            if not err <= FLOAT_RTOL:
                bad.append((key, err, w.size))
    if bad:
        result["ok"] = False
        if order:
            rank = {n: i for i, n in enumerate(order)}
            bad.sort(key=lambda b: rank.get(b[0].split("#")[0], len(rank)))
        result["first_difference"] = [list(map(str, b)) for b in bad[:5]]
        result["values_differing"] = len(bad)
    return result


def cli_check(pack_dir: Path, info: dict, env: dict) -> dict:
    """`qir run` and `qir bench` on an artifact, in a fresh process (the path a user takes
    on a machine with TVM's runtime alone)."""
    entry_dir = pack_dir / "models" / info["dir"]
    with tempfile.TemporaryDirectory() as tmp:
        feed = _feeds(entry_dir, info)[0]
        np.savez(Path(tmp) / "in.npz", **feed)
        cmds = {"run": ["run", str(entry_dir), "--inputs", f"{tmp}/in.npz", "-o",
                        f"{tmp}/out.npz"],
                "bench": ["bench", str(entry_dir), "--repeat", "20", "--json"]}
        result = {}
        for what, args in cmds.items():
            proc = subprocess.run([sys.executable, "-m", "qir", *args], capture_output=True,
                                  text=True, timeout=300, env=env, cwd=ROOT)
            result[what] = {"exit": proc.returncode,
                            "output": (proc.stdout + proc.stderr).strip()[-400:]}
        if result["run"]["exit"] == 0:
            want = _unflatten(np.load(entry_dir / "want.npz"))[0]
            got = dict(np.load(f"{tmp}/out.npz"))
            result["run"]["compare"] = compare(got, want, info["check"], None)
    return result


def time_torch(name: str, batch: int, repeat: int) -> dict:
    """torch fp32 / fp16 eager and CUDA-graph latency (ms, median) of torchvision's
    `name` on this GPU."""
    import torch

    from bench.real_models import build

    torch.backends.cudnn.benchmark = True
    out = {}
    for dtype, label in ((torch.float32, "fp32"), (torch.float16, "fp16")):
        model = build(name).to("cuda", dtype)
        x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=dtype)
        with torch.no_grad():
            out[f"torch {label} eager"] = _median_cuda(lambda: model(x), repeat)
            graph = torch.cuda.CUDAGraph()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    model(x)
            torch.cuda.current_stream().wait_stream(stream)
            with torch.cuda.graph(graph):
                model(x)
            out[f"torch {label} CUDA graph"] = _median_cuda(graph.replay, repeat)
    return out


def _median_cuda(fn, repeat: int, warmup: int = 10) -> float:
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def unpack(pack: Path, work: Path) -> dict[str, str]:
    """Unpack the archive into `work`, install the pack's wheels there (pip, from those
    files alone), and put the runtime and them first on this process's path; returns the
    environment a child process needs for the same."""
    with tarfile.open(pack / ARCHIVE) as tar:
        tar.extractall(work, filter="data")
    paths = [str(work / "runtime")]
    wheels = sorted((pack / "wheels").glob("*.whl")) if (pack / "wheels").is_dir() else []
    if wheels:
        site = work / "site"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--no-compile", "--target", str(site), *map(str, wheels)], check=True)
        paths.append(str(site))
    sys.path[:0] = paths
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [*paths, str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return env


def run(pack: Path, out_json: Path | None, repeat: int) -> int:
    with tempfile.TemporaryDirectory(prefix="qir_gpu_run_") as tmp:
        env = unpack(pack, Path(tmp))
        return run_unpacked(Path(tmp), env, out_json, repeat)


def run_unpacked(pack_dir: Path, env: dict, out_json: Path | None, repeat: int) -> int:
    entries = json.loads((pack_dir / "pack.json").read_text())["entries"]
    report: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "entries": {}}
    first_real = next((e for e in entries if e.get("torch")), entries[0])
    print(f"== qir run / qir bench through the command line ({first_real['dir']})", flush=True)
    report["cli"] = cli_check(pack_dir, first_real, env)
    print(json.dumps(report["cli"], indent=1), flush=True)

    import torch  # after the command-line check: that one found CUDA on its own

    import tvm

    report["tvm"] = {"path": str(Path(tvm.__file__).parent),
                     "runtime_only": bool(tvm.base._RUNTIME_ONLY)}
    gpu = torch.cuda.is_available()
    report["gpu"] = torch.cuda.get_device_name(0) if gpu else "none (torch sees no GPU)"
    report["torch"] = torch.__version__
    from backends.tvm import load

    for info in entries:
        entry_dir = pack_dir / "models" / info["dir"]
        rec: dict = {"model": info["model"], "scheme": info["scheme"], "batch": info["batch"]}
        try:
            start = time.perf_counter()
            compiled = load(str(entry_dir / "model.so"))
            rec["load_s"] = round(time.perf_counter() - start, 3)
            feeds = _feeds(entry_dir, info)
            want = _unflatten(np.load(entry_dir / "want.npz"))
            checks = [compare(compiled.run(f), w, info["check"], info.get("order"))
                      for f, w in zip(feeds, want)]
            rec["ok"] = all(c["ok"] for c in checks)
            rec["checks"] = [c for c in checks if not c["ok"]][:2] or checks[:1]
            if info["timed"]:
                rec["qir_ms"] = statistics.median(compiled.time_ms(feeds[0], repeat=repeat,
                                                                   warmup=10))
            if info.get("profile"):
                try:
                    rec["profile"] = [[n, calls, round(ms, 4)] for n, calls, ms
                                      in compiled.profile(feeds[0], repeat=5)][:15]
                except Exception as e:  # noqa: BLE001  (a diagnostic: keep the checks)
                    rec["profile"] = f"{type(e).__name__}: {e}"[-500:]
        except Exception as e:  # noqa: BLE001  (report it, go on with the others)
            rec["ok"] = False
            rec["error"] = f"{type(e).__name__}: {e}"[-2000:]
            traceback.print_exc()
        report["entries"][info["dir"]] = rec
        print(f"{info['dir']}: {json.dumps(rec)}", flush=True)

    report["torch_ms"] = {}
    for info in entries if gpu else []:
        if info.get("torch"):
            key = f"{info['torch']} b{info['batch']}"
            try:
                report["torch_ms"][key] = time_torch(info["torch"], info["batch"], repeat)
            except Exception as e:  # noqa: BLE001
                report["torch_ms"][key] = {"error": f"{type(e).__name__}: {e}"}
            print(f"{key}: {report['torch_ms'][key]}", flush=True)
    print(markdown(report, entries))
    if out_json is not None:
        out_json.write_text(json.dumps(report, indent=1))
    return 0 if all(r.get("ok") for r in report["entries"].values()) else 1


def markdown(report: dict, entries: list[dict]) -> str:
    lines = [f"GPU: {report.get('gpu')}, torch {report.get('torch')}, {report['started']}", "",
             "| artifact | check | result | qir ms |", "|---|---|---|---|"]
    for info in entries:
        rec = report["entries"].get(info["dir"], {})
        result = "error" if "error" in rec else ("pass" if rec.get("ok") else "FAIL")
        if rec.get("checks") and "max_rel_err" in rec["checks"][0]:
            result += f" (max rel err {rec['checks'][0]['max_rel_err']:.1e})"
        check = {"exact": "bit-exact vs numpy", "float": "vs torch, 1e-4",
                 "mixed": "vs numpy: integers exact, floats 1e-4"}[info["check"]]
        lines.append(f"| {info['dir']} | {check} | {result} | {_ms(rec.get('qir_ms'))} |")
    columns = ("torch fp32 eager", "torch fp16 eager", "torch fp32 CUDA graph",
               "torch fp16 CUDA graph")
    if report.get("torch_ms"):
        lines += ["", "| model | batch | qir int8 | qir int8, CUDA graph | "
                  + " | ".join(columns) + " |", "|---|---|---|---" + "|---" * len(columns) + "|"]
        for info in entries:
            if info.get("torch"):
                t = report["torch_ms"].get(f"{info['torch']} b{info['batch']}", {})
                q = report["entries"].get(info["dir"], {}).get("qir_ms")
                qg = report["entries"].get(info["dir"] + "-graph", {}).get("qir_ms")
                lines.append(f"| {info['torch']} | {info['batch']} | {_ms(q)} | {_ms(qg)} | "
                             + " | ".join(_ms(t.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _ms(v) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "-"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check",
                                description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    pk = sub.add_parser("pack", help="compile and pack the artifacts (here)")
    pk.add_argument("-o", "--output", default=".gpu")
    pk.add_argument("--zoo", nargs="*", default=None, help="zoo models (default: all)")
    pk.add_argument("--real", nargs="*", default=None,
                    help="torchvision models (default: resnet18 mobilenet_v2)")
    pk.add_argument("--suite", nargs="*", default=[], help="models of the real-architecture "
                    "suite (tests/real_models.py) at their test sizes; 'all' for every one "
                    "that is not marked slow")
    pk.add_argument("--writes", action="store_true", help="the last Core ATen ops' models "
                    "(tests/frontends/test_import_writes.py): scatter, sort, grid_sample, ...")
    pk.add_argument("--target", default="cuda", help="cuda (default), cuda:<arch>, or llvm "
                    "(to try the whole check on this machine's CPU)")
    pk.add_argument("--no-wheels", action="store_true",
                    help="leave out the GPU machine's wheels (a pack run here)")
    rn = sub.add_parser("run", help="run the packed artifacts (on the GPU machine)")
    rn.add_argument("pack")
    rn.add_argument("-o", "--output", default=None, help="write the figures as JSON")
    rn.add_argument("--repeat", type=int, default=100)
    args = p.parse_args(argv)
    if args.step == "pack":
        from bench.real_models import MODELS
        from tests.zoo import ZOO

        from tests.real_models import REAL_MODELS

        suite = ([n for n, m in REAL_MODELS.items() if not m.slow] if args.suite == ["all"]
                 else args.suite)
        pack(Path(args.output), sorted(ZOO) if args.zoo is None else args.zoo,
             list(MODELS) if args.real is None else args.real, args.target,
             not args.no_wheels, tuple(suite), args.writes)
        return 0
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run(Path(args.pack), Path(args.output) if args.output else None, args.repeat)


if __name__ == "__main__":
    sys.exit(main())
