"""The quantization report: per quantized tensor, its scale, zero point, representable
range and SQNR of the quantized value against the float model's value on sample inputs.

Quantized values are matched to float values by name: the passes name a quantized
tensor after the float value it stands for (`conv1` → `conv1_q`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qir.ir import Module, Op
from qir.types import QuantType

_SUFFIXES = ("_q", "_acc", "_dq")


@dataclass
class LayerRow:
    value: str
    op: str
    loc: str
    storage: str
    scale: float
    zero_point: int
    lo: float
    hi: float
    sqnr_db: float | None


def _float_name(name: str, float_names: set[str]) -> str | None:
    cand = name
    while cand not in float_names:
        for s in _SUFFIXES:
            if cand.endswith(s):
                cand = cand[: -len(s)]
                break
        else:
            return None
    return cand


def _sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    noise = float(((ref - got) ** 2).sum())
    signal = float((ref ** 2).sum())
    if noise == 0:
        return float("inf")
    return 10 * np.log10(signal / noise) if signal > 0 else float("-inf")


def quantization_report(float_module: Module, quant_module: Module,
                        samples: list[dict[str, np.ndarray]]) -> list[LayerRow]:
    """Rows for every per-tensor quantized value of `quant_module` in function order."""
    from backends.numpy import dequantize_values, run

    float_names = {v.name for v in float_module.main.values()}
    wanted: dict[str, Op] = {}
    for op in quant_module.main.ops:
        for r in op.results:
            q = r.type.elem
            if isinstance(q, QuantType) and q.axis is None and op.name != "qir.param":
                if _float_name(r.name, float_names) is not None:
                    wanted[r.name] = op
    fvals: dict[str, list] = {}
    qvals: dict[str, list] = {}
    targets = {_float_name(n, float_names) for n in wanted}

    def grab(store, names):
        def hook(op, results):
            for r, a in zip(op.results, results):
                if r.name in names:
                    store.setdefault(r.name, []).append(
                        dequantize_values(a, r.type) if r.type.is_quantized else a)
        return hook

    args = {a.name for a in float_module.main.args}
    for sample in samples:
        for name in targets & args:
            fvals.setdefault(name, []).append(sample[name])
        run(float_module, sample, hook=grab(fvals, targets))
        run(quant_module, sample, hook=grab(qvals, set(wanted)))
    rows = []
    for name, op in wanted.items():
        q: QuantType = op.results[[r.name for r in op.results].index(name)].type.quant
        fname = _float_name(name, float_names)
        s = None
        if fname in fvals and name in qvals:
            s = _sqnr(np.concatenate([a.ravel() for a in fvals[fname]]),
                      np.concatenate([a.ravel() for a in qvals[name]]))
        rows.append(LayerRow(name, op.name, str(op.loc) if not op.loc.is_unknown() else "",
                             q.storage, q.scale, q.zero_point,
                             q.scale * (q.qmin - q.zero_point), q.scale * (q.qmax - q.zero_point),
                             s))
    return rows


def format_report(rows: list[LayerRow]) -> str:
    head = (f"{'value':<28} {'op':<16} {'type':<4} {'scale':>11} {'zp':>6} "
            f"{'range':>23} {'SQNR dB':>8}  loc")
    lines = ["===== quantization report =====", head]
    for r in rows:
        sq = "-" if r.sqnr_db is None else f"{r.sqnr_db:8.1f}"
        lines.append(f"{r.value[:28]:<28} {r.op[4:][:16]:<16} {r.storage:<4} {r.scale:11.4g} "
                     f"{r.zero_point:6d} {f'[{r.lo:.3g}, {r.hi:.3g}]':>23} {sq:>8}  {r.loc}")
    return "\n".join(lines) + "\n"
