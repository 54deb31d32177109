"""`qir bench OUTDIR [--inputs IN.npz] [--repeat N] [--warmup N] [--json] [--profile]`:
time in-process execution of a compiled model; prints median/min/max ms (with --json the
last line is a JSON object with at least `median_ms`). A compiled library is timed with its
inputs and outputs on its device (on a GPU, each call synchronised; no host transfers);
--backend numpy times the interpreter. `--profile` then prints where the time goes, kernel
by kernel (Compiled.profile), with the VM's overhead as its own row (and in the JSON)."""

from __future__ import annotations

import json
import os
import statistics
import time

import numpy as np

from qir.cli.common import load_npz
from qir.diagnostics import QirError


def register(sub) -> None:
    p = sub.add_parser("bench", help="time a compiled OUTDIR")
    p.add_argument("outdir")
    p.add_argument("--inputs", default=None, help=".npz keyed by input names (default: "
                   "random floats, zeros for integer inputs)")
    p.add_argument("--repeat", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--backend", choices=("numpy", "llvm", "cuda", "onnx"), default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--profile", action="store_true", help="then time each kernel the model "
                   "calls (the device synchronised around each) and print where the time "
                   "goes, with the VM's own overhead as a row")
    p.set_defaults(func=run)


def _inputs(spec, path: str | None) -> dict[str, np.ndarray]:
    if path is not None:
        from qir.cli.run import split_batches

        batches, _ = split_batches(spec, load_npz(path))
        return batches[0]
    rng = np.random.default_rng(0)
    out = {}
    for name, shape, dt in spec:
        out[name] = (rng.standard_normal(shape).astype(dt) if dt.kind == "f"
                     else np.zeros(shape, dt))
    return out


def profile_table(rows: list[tuple[str, int, float]], run_ms: float,
                  kernel_ops: dict[str, list[dict]] | None = None) -> list[dict]:
    """Print the per-kernel table (kernels, then the VM's builtins together, then what the
    unprofiled run does not spend in kernels: launches and the VM's bookkeeping) and
    return it as records. `kernel_ops` (the signature's `kernels`) names the qir ops each
    kernel computes and their torch source: the table's last column, and "ops" in JSON."""
    kernel_ops = kernel_ops or {}
    builtins = [(n, c, ms) for n, c, ms in rows if n.startswith("vm.builtin.")]
    # what timing one call costs by itself: the cheapest builtin's time per call
    floor = min((ms / c for _, c, ms in builtins if c), default=0.0)
    kernels = [(n, c, max(ms - c * floor, 0.0)) for n, c, ms in rows
               if not n.startswith("vm.builtin.")]
    builtin = sum(ms for _, _, ms in builtins)
    in_kernels = sum(ms for _, _, ms in kernels)
    records = [{"kernel": n, "calls": c, "total_us": ms * 1e3, "mean_us": ms * 1e3 / max(c, 1),
                "percent": 100 * ms / run_ms if run_ms else 0.0, "ops": kernel_ops.get(n, [])}
               for n, c, ms in kernels]
    overhead = max(run_ms - in_kernels, 0.0)
    records.append({"kernel": "(VM and launch overhead)",
                    "calls": sum(c for n, c, _ in rows if n.startswith("vm.builtin.")),
                    "total_us": overhead * 1e3, "mean_us": None,
                    "percent": 100 * overhead / run_ms if run_ms else 0.0, "ops": []})
    print(f"{'kernel':<48} {'calls':>5} {'total us':>10} {'mean us':>9} {'% run':>6}  "
          "qir op (torch source)")
    for r in records:
        mean = f"{r['mean_us']:9.1f}" if r["mean_us"] is not None else f"{'':>9}"
        name = r["kernel"] if len(r["kernel"]) <= 48 else r["kernel"][:47] + "~"
        print(f"{name:<48} {r['calls']:>5} {r['total_us']:10.1f} {mean} "
              f"{r['percent']:6.1f}  {_ops_cell(r['ops'])}".rstrip())
    print(f"(each kernel timed alone, the device synchronised around it, less "
          f"{floor * 1e3:.1f} us a call that timing itself costs; the VM's builtins took "
          f"{builtin * 1e3:.1f} us of such calls; the overhead row is the run's median minus the "
          f"kernels; every kernel and its ops: \"kernels\" in "
          "the compiled signature, `qir explain OUTDIR/model.qir %VALUE` for an op)")
    return records


def _ops_cell(ops: list[dict]) -> str:
    """The first op a kernel computes (its anchor: the conv of conv+requantize+add), how
    many more, and where in the torch source it came from."""
    if not ops:
        return ""
    first = ops[0]
    more = f" +{len(ops) - 1}" if len(ops) > 1 else ""
    loc = first["loc"]
    if loc:  # "conv1 at /path/to/model.py:12" -> "conv1 at model.py:12"
        head, _, path = loc.rpartition(" at ")
        loc = f"{head} at {os.path.basename(path)}" if head else os.path.basename(loc)
    return f"%{first['value']} {first['op']}{more}" + (f"  ({loc})" if loc else "")


def run(args) -> int:
    from qir.cli.artifact import read_manifest, runner

    if args.repeat < 1 or args.warmup < 0:
        raise QirError("--repeat must be >= 1 and --warmup >= 0")
    man = read_manifest(args.outdir)
    found = runner(args.outdir, args.backend)
    execute, timer = found.run, found.compiled  # a compiled library: timed on its device
    inputs = _inputs(found.arguments, args.inputs)
    if timer is not None:
        times = timer.time_ms(inputs, repeat=args.repeat, warmup=args.warmup)
    else:
        for _ in range(args.warmup):
            execute(inputs)
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            execute(inputs)
            times.append((time.perf_counter() - start) * 1e3)
    result = {"median_ms": statistics.median(times), "min_ms": min(times),
              "max_ms": max(times), "repeat": args.repeat, "warmup": args.warmup,
              "backend": args.backend or man["target"], "outdir": args.outdir}
    print(f"{args.outdir} [{result['backend']}]: median {result['median_ms']:.3f} ms, "
          f"min {result['min_ms']:.3f} ms, max {result['max_ms']:.3f} ms "
          f"({args.repeat} runs, {args.warmup} warm-up)")
    if args.profile:
        if timer is None:
            raise QirError("--profile times the kernels of a TVM-compiled library (llvm, "
                           f"cuda), not {result['backend']}: for an ONNX model, ONNX "
                           "Runtime's own profiler (SessionOptions.enable_profiling)")
        result["profile"] = profile_table(timer.profile(inputs, repeat=min(args.repeat, 20)),
                                          result["median_ms"], timer.signature.kernels)
    if args.json:
        print(json.dumps(result))
    return 0
