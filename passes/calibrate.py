"""calibrate: run the float model over calibration data and record, on every
`qir.observe`, the clipping range its method chooses (attributes `min`, `max`,
`outlier_ratio`). The ranges are stored in the IR, so a calibrated module can be printed,
saved, inspected and quantized later.

Methods (see passes/observers.py): minmax, moving-average, percentile, entropy, mse.
Histogram methods run the data twice (once for the global range, once for histograms).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np

from qir.diagnostics import QirError
from qir.ir import Module, Op

from passes.manager import PassContext
from passes.registry import register_pass

METHODS = ("minmax", "moving-average", "percentile", "entropy", "mse")


class CalibrationFailed(QirError):
    """Calibration data is missing or unusable, or an observed tensor is not finite."""


def _describe(op: Op) -> str:
    where = f" ({op.loc})" if not op.loc.is_unknown() else ""
    return f"observer '{op.attr('id')}'{where}"


def _failed(op: Op, e: Exception) -> CalibrationFailed:
    """The observer's own message already names it; add where the tensor comes from."""
    where = f" [at {op.loc}]" if not op.loc.is_unknown() else ""
    return CalibrationFailed(f"{e}{where}")


def _run_all(module: Module, batches: list[dict[str, Any]], observers: dict, second: bool,
             progress: bool, desc: str) -> None:
    from backends.numpy import run

    def hook(op: Op, results: list[np.ndarray]) -> None:
        obs = observers.get(id(op))
        if obs is None:
            return
        try:
            (obs.observe_second if second else obs.observe)(results[0])
        except ValueError as e:
            raise _failed(op, e) from None

    iterator = batches
    if progress:
        from tqdm import tqdm

        iterator = tqdm(batches, desc=desc, unit="batch", leave=False)
    for batch in iterator:
        run(module, batch, hook=hook)


@register_pass("calibrate")
def calibrate(module: Module, ctx: PassContext, *,
              method: Annotated[str, "override every observer's method (default: keep "
                                "the method each observer names)"] = "",
              bins: Annotated[int, "histogram bins (percentile, entropy, mse)"] = 2048,
              percentile: Annotated[float, "percentile for method=percentile"] = 99.999,
              ) -> bool:
    """Run calibration data through the float model and record each observer's range."""
    from passes.observers import RangeObserver

    if method and method not in METHODS:
        raise CalibrationFailed(f"unknown calibration method '{method}' (known: "
                                f"{', '.join(METHODS)})")
    batches = ctx.calibration_data
    if batches is None:
        raise CalibrationFailed("no calibration data: pass --calib CALIB.npz (or set "
                                "PassContext.calibration_data)")
    if len(batches) == 0:
        raise CalibrationFailed("the calibration set is empty")
    fn = module.main
    observers: dict[int, Any] = {}
    ops: dict[int, Op] = {}
    for op in fn.walk("qir.observe"):
        m = method or op.attr("method")
        if m not in METHODS:
            raise CalibrationFailed(f"{_describe(op)}: unknown method '{m}' (known: "
                                    f"{', '.join(METHODS)})")
        try:
            observers[id(op)] = RangeObserver(m, bins=bins, percentile=percentile,
                                              name=op.attr("id"))
        except ValueError as e:
            raise CalibrationFailed(f"{_describe(op)}: {e}") from None
        ops[id(op)] = op
    if not observers:
        return False
    _run_all(module, batches, observers, False, ctx.progress, "calibrate")
    if any(o.needs_second_pass for o in observers.values()):
        second = {k: o for k, o in observers.items() if o.needs_second_pass}
        for o in second.values():
            o.start_second_pass()
        _run_all(module, batches, second, True, ctx.progress, "calibrate (histograms)")
    for key, obs in observers.items():
        op = ops[key]
        try:
            lo, hi = obs.compute_range()
        except ValueError as e:
            raise _failed(op, e) from None
        op.attrs["min"] = float(lo)
        op.attrs["max"] = float(hi)
        op.attrs["method"] = obs.method
        op.attrs["outlier_ratio"] = (None if obs.outlier_ratio is None
                                     else float(obs.outlier_ratio))
        if obs.degenerate:
            where = "" if op.loc.is_unknown() else f" ({op.loc})"
            ctx.notes.append(f"observer '{op.attr('id')}'{where}: {obs.degenerate}; it gets "
                             f"the range [{lo:g}, {hi:g}] (passes/observers.py)")
    ctx.notes.append(f"calibrated {len(observers)} observers on {len(batches)} batches")
    return True
