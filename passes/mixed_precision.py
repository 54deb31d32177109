"""mixed-precision: insert-observers that keeps the most sensitive layers in float, as few
as it takes for the quantized model to reach an output SQNR target.

Runs where insert-observers would (it inserts the observers itself), on the float module,
with calibration data. It ranks the layers insert-observers would quantize by the output
error each causes when it alone is quantized (passes/debug_report.py `sensitivity`,
worst first), then finds the smallest k such that the model quantized with the k worst
layers kept in float reaches `min-sqnr` dB at its outputs (binary search over k, each
candidate calibrated, quantized to QDQ and run on the calibration data), and finally
inserts observers everywhere else. The chosen layers are listed in the notes. Later
passes (calibrate, quantize, lower-to-integer, ...) run as usual.

Measured on the calibration data: hold some data out to check the result generalizes.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np

from qir.ir import Module

from passes.capture import calibration_batches
from passes.manager import PassContext, PassManager
from passes.registry import register_pass


def _output_sqnr(reference: list[list[np.ndarray]], module: Module, batches) -> float:
    """Worst output SQNR (dB) of `module` against reference outputs over the batches."""
    from backends.numpy import run

    signal = noise = None
    for ref, batch in zip(reference, batches):
        got = list(run(module, batch).values())
        s = np.array([np.sum(np.asarray(r, np.float64) ** 2) for r in ref])
        n = np.array([np.sum((np.asarray(r, np.float64) - np.asarray(g, np.float64)) ** 2)
                      for r, g in zip(ref, got)])
        signal, noise = (s, n) if signal is None else (signal + s, noise + n)
    with np.errstate(divide="ignore"):
        db = 10 * np.log10(signal / noise)
    return float(np.min(db))


@register_pass("mixed-precision")
def mixed_precision(
    module: Module, ctx: PassContext, *,
    min_sqnr: Annotated[float, "output SQNR target in dB (on the calibration data)"] = 35.0,
    max_float: Annotated[int, "keep at most this many layers in float (0: no limit)"] = 0,
    outliers: Annotated[Literal["int16", "float", "keep"],
                        "quantize's outliers option used while searching (use the same "
                        "later)"] = "int16",
) -> bool:
    """Insert observers on every quantizable layer except the most sensitive ones, kept
    float, as few as needed to reach min-sqnr (sensitivity ranking + binary search)."""
    from backends.numpy import run
    from passes.debug_report import copy_module, sensitivity
    from passes.insert_observers import insert_observers, policy_ops

    batches = calibration_batches(ctx, "mixed-precision")
    quantize = f"quantize{{outliers={outliers}}}"
    reference = [list(run(module, b).values()) for b in batches]
    names: list[str] = []

    def score(k: int) -> float:
        trial = copy_module(module)
        insert_observers(trial, keep_float=",".join(f"%{n}" for n in names[:k]))
        PassManager(f"calibrate,{quantize}", verify_each=False,
                    ctx=PassContext(calibration_data=batches, progress=False)).run(trial)
        return _output_sqnr(reference, trial, batches)

    scores = {0: score(0)}
    if scores[0] >= min_sqnr:
        k = 0  # no ranking needed
    else:
        ranking = sensitivity(module, batches,
                              pipeline=f"insert-observers,calibrate,{quantize}")
        names = [row.layer for row in ranking]
        limit = len(names) if max_float <= 0 else min(max_float, len(names))
        lo, hi = 0, limit  # score(lo) < target; find the smallest k in (lo, hi] that meets it
        scores[hi] = score(hi)
        if scores[hi] < min_sqnr:
            k = hi
        else:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                scores[mid] = score(mid)
                if scores[mid] >= min_sqnr:
                    hi = mid
                else:
                    lo = mid
            k = hi
    kept = names[:k]
    total = len(names) or len(policy_ops(module.main))
    insert_observers(module, keep_float=",".join(f"%{n}" for n in kept))
    met = "meets" if scores[k] >= min_sqnr else "misses"
    ctx.notes.append(f"mixed-precision: {k} of {total} layers kept float "
                     f"({', '.join('%' + n for n in kept) or 'none'}): output SQNR "
                     f"{scores[0]:.1f} -> {scores[k]:.1f} dB on the calibration data, {met} "
                     f"the {min_sqnr:g} dB target")
    return True
