"""`qir bench OUTDIR [--inputs IN.npz] [--repeat N] [--warmup N] [--json]`: time in-process
execution of a compiled model; prints median/min/max ms (with --json the last line is a
JSON object with at least `median_ms`). A compiled library is timed with its inputs and
outputs on its device (on a GPU, each call synchronised; no host transfers); --backend
numpy times the interpreter."""

from __future__ import annotations

import json
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
    p.add_argument("--backend", choices=("numpy", "llvm", "cuda"), default=None)
    p.add_argument("--json", action="store_true")
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


def run(args) -> int:
    from qir.cli.artifact import read_manifest, runner

    if args.repeat < 1 or args.warmup < 0:
        raise QirError("--repeat must be >= 1 and --warmup >= 0")
    man = read_manifest(args.outdir)
    spec, execute = runner(args.outdir, args.backend)
    inputs = _inputs(spec, args.inputs)
    timer = getattr(execute, "__self__", None)  # a compiled library: time it on its device
    if timer is not None and hasattr(timer, "time_ms"):
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
    if args.json:
        print(json.dumps(result))
    return 0
