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


def _run_all(module: Module, function: str, batches: list[dict[str, Any]], observers: dict,
             second: bool, progress: bool, desc: str) -> None:
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
        run(module, batch, function=function, hook=hook)


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
    observers: dict[int, Any] = {}
    ops: dict[int, Op] = {}
    data: dict[str, list[dict[str, Any]]] = {}
    for fn in module.functions.values():
        found = list(fn.walk("qir.observe"))
        if not found:
            continue
        batches = ctx.batches(fn.name)
        if batches is None and fn.name == "main":
            raise CalibrationFailed("no calibration data: pass --calib CALIB.npz (or set "
                                    "PassContext.calibration_data)")
        if batches is None:
            raise CalibrationFailed(
                f"@{fn.name} has {len(found)} observers and no calibration data: set "
                f"PassContext.function_data['{fn.name}'] (qir compile of a causal LM "
                "makes @decode's from --calib)")
        if len(batches) == 0:
            raise CalibrationFailed("the calibration set is empty" + (
                "" if fn.name == "main" else f" (@{fn.name})"))
        data[fn.name] = batches
        for op in found:
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
    for name, batches in data.items():
        mine = {k: o for k, o in observers.items() if ops[k].function.name == name}
        _run_all(module, name, batches, mine, False, ctx.progress, f"calibrate @{name}")
        second = {k: o for k, o in mine.items() if o.needs_second_pass}
        if second:
            for o in second.values():
                o.start_second_pass()
            _run_all(module, name, batches, second, True, ctx.progress,
                     f"calibrate @{name} (histograms)")
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
    runs = " and ".join(f"{len(v)} batches" + ("" if list(data) == ["main"] else f" of @{k}")
                        for k, v in data.items())
    ctx.notes.append(f"calibrated {len(observers)} observers on {runs}")
    return True
