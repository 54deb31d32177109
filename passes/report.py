"""The quantization report: per quantized tensor, its scale, zero point, representable
range and how far the quantized value is from the float model's value on sample inputs
(SQNR, cosine, max abs error, clipping rate); and the same for the model outputs.

Quantized values are matched to float values by name: the passes name a quantized
tensor after the float value it stands for (`conv1` → `conv1_q`). Statistics are
accumulated sample by sample, so memory stays at one sample's activations.
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
    float_value: str = ""             # the float value it is compared with
    cosine: float | None = None
    max_abs_err: float | None = None
    clip_rate: float | None = None    # share of float values the range saturates


@dataclass
class OutputRow:
    """End-to-end error of one model output."""

    name: str
    sqnr_db: float | None
    cosine: float | None
    max_abs_err: float | None


class ErrorStats:
    """Running sums for SQNR, cosine and max abs error of `got` against `ref`, and the
    share of `ref` outside [lo, hi] by more than half a step (saturated by the range)."""

    def __init__(self, lo: float | None = None, hi: float | None = None, step: float = 0.0):
        self.lo, self.hi, self.step = lo, hi, step
        self.signal = self.noise = self.dot = self.got2 = 0.0
        self.max_abs = 0.0
        self.clipped = self.count = 0

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        ref = np.asarray(ref, np.float64).ravel()
        got = np.asarray(got, np.float64).ravel()
        err = ref - got
        self.signal += float(ref @ ref)
        self.noise += float(err @ err)
        self.dot += float(ref @ got)
        self.got2 += float(got @ got)
        if err.size:
            self.max_abs = max(self.max_abs, float(np.abs(err).max()))
        if self.lo is not None:
            tol = self.step / 2
            self.clipped += int(np.count_nonzero((ref < self.lo - tol) | (ref > self.hi + tol)))
        self.count += ref.size

    @property
    def sqnr_db(self) -> float | None:
        if not self.count:
            return None
        if self.noise == 0:
            return float("inf")
        return 10 * float(np.log10(self.signal / self.noise)) if self.signal > 0 \
            else float("-inf")

    @property
    def cosine(self) -> float | None:
        if not self.count:
            return None
        denom = np.sqrt(self.signal) * np.sqrt(self.got2)
        if denom == 0:
            return 1.0 if self.signal == self.got2 else 0.0
        return float(self.dot / denom)

    @property
    def clip_rate(self) -> float | None:
        return self.clipped / self.count if self.count and self.lo is not None else None


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


def compare_modules(float_module: Module, quant_module: Module,
                    samples: list[dict[str, np.ndarray]]
                    ) -> tuple[list[LayerRow], list[OutputRow]]:
    """Per quantized tensor rows (in function order) and per output rows, comparing
    `quant_module` against `float_module` on `samples`."""
    from backends.numpy import dequantize_values, run

    float_names = {v.name for v in float_module.main.values()}
    # fallback for renamed values: the float op of the same name at the same location
    by_loc: dict[tuple, list[Op]] = {}
    for op in float_module.main.ops:
        by_loc.setdefault((op.name, op.loc), []).append(op)
    wanted: dict[str, tuple[Op, QuantType, str]] = {}
    for op in quant_module.main.ops:
        for r in op.results:
            q = r.type.elem
            if isinstance(q, QuantType) and q.axis is None and op.name != "qir.param":
                fname = _float_name(r.name, float_names)
                same = by_loc.get((op.name, op.loc), [])
                if fname is None and len(same) == 1 and len(op.results) == 1 and \
                        not op.loc.is_unknown():
                    fname = same[0].result.name
                if fname is not None:
                    wanted[r.name] = (op, q, fname)
    stats = {}
    for name, (_, q, _) in wanted.items():
        lo, hi = q.scale * (q.qmin - q.zero_point), q.scale * (q.qmax - q.zero_point)
        stats[name] = ErrorStats(lo, hi, q.scale)
    targets = {fname for _, _, fname in wanted.values()}
    by_float: dict[str, list[str]] = {}
    for name, (_, _, fname) in wanted.items():
        by_float.setdefault(fname, []).append(name)
    f_out = [v.name for v in float_module.main.outputs]
    outputs = [ErrorStats() for _ in quant_module.main.outputs]
    args = {a.name for a in float_module.main.args}
    for sample in samples:
        fvals = {name: np.asarray(sample[name]) for name in targets & args}

        def grab_float(op, results):
            for r, a in zip(op.results, results):
                if r.name in targets:
                    fvals[r.name] = a

        def compare(op, results):
            for r, a in zip(op.results, results):
                if r.name in wanted:
                    ref = fvals.get(wanted[r.name][2])
                    if ref is not None:
                        stats[r.name].add(ref, dequantize_values(a, r.type))

        fout = run(float_module, sample, hook=grab_float)
        qout = run(quant_module, sample, hook=compare)
        for acc, v, ref, got in zip(outputs, quant_module.main.outputs, fout.values(),
                                    qout.values()):
            acc.add(ref, dequantize_values(got, v.type) if v.type.is_quantized else got)
        del fvals
    rows = []
    for name, (op, q, fname) in wanted.items():
        s = stats[name]
        rows.append(LayerRow(name, op.name, str(op.loc) if not op.loc.is_unknown() else "",
                             q.storage, q.scale, q.zero_point, s.lo, s.hi, s.sqnr_db,
                             fname, s.cosine, s.max_abs if s.count else None, s.clip_rate))
    out_rows = [OutputRow(f_out[i] if i < len(f_out) else v.name, s.sqnr_db, s.cosine,
                          s.max_abs if s.count else None)
                for i, (v, s) in enumerate(zip(quant_module.main.outputs, outputs))]
    return rows, out_rows


def quantization_report(float_module: Module, quant_module: Module,
                        samples: list[dict[str, np.ndarray]]) -> list[LayerRow]:
    """Rows for every per-tensor quantized value of `quant_module` in function order."""
    return compare_modules(float_module, quant_module, samples)[0]


def format_report(rows: list[LayerRow]) -> str:
    head = (f"{'value':<28} {'op':<16} {'type':<4} {'scale':>11} {'zp':>6} "
            f"{'range':>23} {'SQNR dB':>8}  loc")
    lines = ["===== quantization report =====", head]
    for r in rows:
        sq = "-" if r.sqnr_db is None else f"{r.sqnr_db:8.1f}"
        lines.append(f"{r.value[:28]:<28} {r.op[4:][:16]:<16} {r.storage:<4} {r.scale:11.4g} "
                     f"{r.zero_point:6d} {f'[{r.lo:.3g}, {r.hi:.3g}]':>23} {sq:>8}  {r.loc}")
    return "\n".join(lines) + "\n"
