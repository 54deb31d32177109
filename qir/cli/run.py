"""`qir run FILE.qir --inputs IN.npz -o OUT.npz`: run a module in the numpy interpreter.

npz keys are the function's argument names. An input with one extra leading axis over
its declared shape (all inputs alike) runs the model once per index and stacks outputs.
`--check-finite` reports, tensor by tensor, the NaN and infinite values of the inputs
and outputs, and exits 1 when there are any (after writing the outputs): a quantized
model computes on with them as docs/semantics.md says (NaN stores the zero point,
+-Inf the storage bounds), so finite outputs do not prove finite inputs.
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
    p.add_argument("--backend", choices=("numpy", "llvm", "cuda", "onnx"), default=None,
                   help="for an OUTDIR: run what it was compiled to (default: its library, "
                   "or model.onnx in ONNX Runtime) or its IR in the numpy interpreter")
    p.add_argument("--check-finite", action="store_true", help="report NaN/Inf in each "
                   "input and output tensor; exit 1 when there are any")
    p.set_defaults(func=run)


def non_finite(arrays: dict[str, np.ndarray], kind: str) -> list[str]:
    """One line per float tensor holding NaN or +-Inf: how many of each, of how many."""
    lines = []
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind != "f":
            if a.dtype.kind in "biu" or a.dtype.itemsize > 2:
                continue
            a = a.astype(np.float32)  # bfloat16 / float8 (ml_dtypes)
        nan = int(np.isnan(a).sum())
        pos, neg = int(np.isposinf(a).sum()), int(np.isneginf(a).sum())
        if nan or pos or neg:
            lines.append(f"{kind} '{name}' {list(a.shape)} {np.asarray(arrays[name]).dtype}:"
                         f" {nan} NaN, {pos} +Inf, {neg} -Inf of {a.size} values")
    return lines


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

    arrays = load_npz(args.inputs)
    batches, stacked = split_batches(spec, arrays)
    results = [execute(b) for b in batches]
    if stacked:
        out = {k: np.stack([r[k] for r in results]) for k in results[0]}
    else:
        out = results[0]
    save_npz(out, args.output)
    if args.check_finite:
        import sys

        found = non_finite(arrays, "input") + non_finite(out, "output")
        for line in found:
            print(f"qir run: check-finite: {line}", file=sys.stderr)
        if found:
            return 1
        print(f"qir run: check-finite: every value of the {len(arrays)} input(s) and "
              f"{len(out)} output(s) is finite", file=sys.stderr)
    return 0
