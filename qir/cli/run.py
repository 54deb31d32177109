"""`qir run FILE.qir --inputs IN.npz -o OUT.npz`: run a module in the numpy interpreter.

npz keys are the function's argument names. An input with one extra leading axis over
its declared shape (all inputs alike) runs the model once per index and stacks outputs.
"""

from __future__ import annotations

import numpy as np

from qir.cli.common import load_npz, read_module, save_npz
from qir.diagnostics import QirError


def register(sub) -> None:
    p = sub.add_parser("run", help="run a .qir module or a compiled OUTDIR on inputs "
                       "from an .npz file")
    p.add_argument("file", help="a .qir file, or an OUTDIR written by qir compile")
    p.add_argument("--inputs", required=True, help=".npz keyed by input names")
    p.add_argument("-o", "--output", required=True, help="output .npz")
    p.add_argument("--backend", choices=("numpy", "llvm", "cuda"), default=None,
                   help="for an OUTDIR: run its compiled library (default) or its IR in "
                   "the numpy interpreter")
    p.set_defaults(func=run)


def arguments(fn) -> list[tuple[str, tuple[int, ...], np.dtype]]:
    """(name, shape, dtype) of each argument of a qir function, as `split_batches` and
    the compiled-artifact runners take them."""
    return [(a.name, tuple(a.type.shape), np.dtype(a.type.dtype)) for a in fn.args]


def split_batches(args, arrays: dict[str, np.ndarray]) -> tuple[list[dict], bool]:
    """Check names and shapes against `args` ((name, shape, dtype) triples, see
    `arguments`); return one input dict per run and whether a leading axis was
    stripped."""
    names = [name for name, _, _ in args]
    missing = [n for n in names if n not in arrays]
    extra = [k for k in arrays if k not in names]
    if missing or extra:
        msg = []
        if missing:
            msg.append("missing input(s) " + ", ".join(missing))
        if extra:
            msg.append("unknown input(s) " + ", ".join(extra))
        raise QirError("; ".join(msg) + f" (the model's inputs are: {', '.join(names)})")
    stacked = None
    for name, want, _ in args:
        arr, want = arrays[name], tuple(want)
        if arr.shape == want:
            kind = False
        elif arr.ndim == len(want) + 1 and arr.shape[1:] == want:
            kind = True
        else:
            raise QirError(f"input '{name}' has shape {list(arr.shape)}; expected "
                           f"{list(want)} (or [N, {', '.join(map(str, want))}] for N runs)")
        if stacked is None:
            stacked = kind
        elif stacked != kind:
            raise QirError(f"input '{name}': either every input has the extra leading "
                           "axis or none does")
    if not stacked:
        return [arrays], False
    counts = {arrays[n].shape[0] for n in names}
    if len(counts) != 1:
        raise QirError(f"inputs have different leading sizes {sorted(counts)}")
    n = counts.pop()
    return [{k: arrays[k][i] for k in names} for i in range(n)], True


def run(args) -> int:
    from qir.cli.artifact import is_outdir, runner
    from qir.verifier import verify

    if is_outdir(args.file):
        found = runner(args.file, args.backend)
        spec, execute = found.arguments, found.run
    else:
        if args.backend not in (None, "numpy"):
            raise QirError("--backend applies to a compiled OUTDIR; a .qir file runs in the "
                           "numpy interpreter")
        from backends.numpy import run as interpret

        module = read_module(args.file)
        verify(module)
        spec = arguments(module.main)

        def execute(inputs):
            return interpret(module, inputs)

    batches, stacked = split_batches(spec, load_npz(args.inputs))
    results = [execute(b) for b in batches]
    if stacked:
        out = {k: np.stack([r[k] for r in results]) for k in results[0]}
    else:
        out = results[0]
    save_npz(out, args.output)
    return 0
