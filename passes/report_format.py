"""Rendering a DebugReport (passes/debug_report.py): a terminal table with the worst
layers marked, JSON with everything, and a self-contained HTML page (inline CSS, the
tables, and matplotlib plots of per-layer SQNR embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from dataclasses import asdict

from passes.debug_report import DebugReport

RED, BOLD, DIM, RESET = "\x1b[31m", "\x1b[1m", "\x1b[2m", "\x1b[0m"


def _f(x: float | None, fmt: str) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return format(x, fmt)


def short_loc(loc: str) -> str:
    """`layer1.0.conv1 at /long/path/zoo.py:212` → `layer1.0.conv1 zoo.py:212`."""
    if " at " in loc:
        path, where = loc.split(" at ", 1)
        return f"{path} {os.path.basename(where)}"
    return os.path.basename(loc) if "/" in loc else loc


def worst_layers(report: DebugReport, n: int = 3) -> list[str]:
    """Names of the n layers with the lowest SQNR (finite or not)."""
    rows = [r for r in report.layers if r.sqnr_db is not None]
    return [r.value for r in sorted(rows, key=lambda r: r.sqnr_db)[:n]]


def format_table(report: DebugReport, *, sort: str = "order", worst: int = 3,
                 color: bool = False) -> str:
    """The terminal report: per-layer table (the `worst` lowest-SQNR rows marked with
    `!` and, with color, red), the outputs, the parameter sizes, the sensitivity."""
    def paint(code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if color else text

    bad = set(worst_layers(report, worst))
    rows = list(report.layers)
    if sort == "sqnr":
        rows.sort(key=lambda r: r.sqnr_db if r.sqnr_db is not None else float("inf"))
    out = [paint(BOLD, f"===== per-layer error: quantized vs float on {report.samples} "
                       f"sample{'s' if report.samples != 1 else ''} =====")]
    head = (f"  {'value':<24} {'op':<11} {'type':<4} {'scale':>10} {'zp':>5} "
            f"{'SQNR dB':>8} {'cosine':>9} {'max|err|':>10} {'clip %':>7}  loc")
    out.append(head)
    for r in rows:
        line = (f"{'!' if r.value in bad else ' '} {r.value[:24]:<24} {r.op[4:][:11]:<11} "
                f"{r.storage:<4} {r.scale:10.4g} {r.zero_point:5d} {_f(r.sqnr_db, '8.1f'):>8} "
                f"{_f(r.cosine, '9.6f'):>9} {_f(r.max_abs_err, '10.4g'):>10} "
                f"{_f(None if r.clip_rate is None else 100 * r.clip_rate, '7.3f'):>7}  "
                f"{short_loc(r.loc)}")
        out.append(paint(RED, line) if r.value in bad else line)
    if bad:
        out.append(paint(DIM, f"  ! = the {len(bad)} layers with the lowest SQNR"))
    out.append("")
    out.append(paint(BOLD, "===== outputs (end to end) ====="))
    out.append(f"  {'output':<24} {'SQNR dB':>8} {'cosine':>9} {'max|err|':>10}")
    for o in report.outputs:
        out.append(f"  {o.name[:24]:<24} {_f(o.sqnr_db, '8.1f'):>8} {_f(o.cosine, '9.6f'):>9} "
                   f"{_f(o.max_abs_err, '10.4g'):>10}")
    out.append("")
    out.append(paint(BOLD, "===== model size (parameters) ====="))
    ratio = report.float_bytes / report.quant_bytes if report.quant_bytes else float("inf")
    out.append(f"  float {_bytes(report.float_bytes)} -> quantized "
               f"{_bytes(report.quant_bytes)} ({ratio:.2f}x smaller)")
    if report.sensitivity is not None:
        out.append("")
        out.append(paint(BOLD, "===== sensitivity: output error with only this layer "
                               "quantized (worst first) ====="))
        out.append(f"  {'layer':<24} {'op':<11} {'SQNR dB':>8} {'cosine':>9} "
                   f"{'max|err|':>10}  loc")
        for s in report.sensitivity:
            out.append(f"  {s.layer[:24]:<24} {s.op[4:][:11]:<11} {_f(s.sqnr_db, '8.1f'):>8} "
                       f"{_f(s.cosine, '9.6f'):>9} {_f(s.max_abs_err, '10.4g'):>10}  "
                       f"{short_loc(s.loc)}")
    for note in report.notes:
        out.append(f"note: {note}")
    return "\n".join(out) + "\n"


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 ** 2:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 ** 2:.2f} MiB"


def _clean(x):
    """JSON-safe: non-finite floats become the strings "inf", "-inf", "nan"."""
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def to_dict(report: DebugReport) -> dict:
    d = asdict(report)
    d["size"] = {"float_bytes": report.float_bytes, "quant_bytes": report.quant_bytes,
                 "ratio": (report.float_bytes / report.quant_bytes
                           if report.quant_bytes else None)}
    del d["float_bytes"], d["quant_bytes"]
    d["worst_layers"] = worst_layers(report)
    return _clean(d)


def to_json(report: DebugReport) -> str:
    """Everything in the report; SQNR of identical tensors is the string "inf"."""
    return json.dumps(to_dict(report), indent=2, allow_nan=False) + "\n"


# ---- HTML ---------------------------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em;
       color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: right; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.l, th.l { text-align: left; font-family: ui-monospace, Menlo, Consolas, monospace; }
tr.worst td { background: #ffe3e0; color: #9b1c12; font-weight: 600; }
.summary td { text-align: left; border: none; }
img { max-width: 100%; border: 1px solid #eee; }
.note { color: #666; font-size: 0.85em; }
"""


def _plot(labels: list[str], values: list[float | None], bad: set[str], title: str,
          ylabel: str) -> str:
    """A bar chart as a base64 PNG (matplotlib's Agg canvas; pyplot is not touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    finite = [v for v in values if v is not None and math.isfinite(v)]
    top = max(finite) if finite else 1.0
    shown = [top if v is None or not math.isfinite(v) else v for v in values]
    fig = Figure(figsize=(max(6.0, 0.32 * len(labels) + 2), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    colors = ["#d62728" if name in bad else "#4c78a8" for name in labels]
    ax.bar(range(len(labels)), shown, color=colors)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    if finite:
        low = min(finite)
        ax.set_ylim(bottom=max(0.0, low - 0.25 * (top - low) - 3.0))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()


def _td(x, fmt: str) -> str:
    return f"<td>{html.escape(_f(x, fmt))}</td>"


def to_html(report: DebugReport, worst: int = 3) -> str:
    """A self-contained page: summary, per-layer SQNR plot and table (worst layers
    highlighted), outputs, sizes, and the sensitivity ranking when computed."""
    e = html.escape
    bad = set(worst_layers(report, worst))
    ratio = report.float_bytes / report.quant_bytes if report.quant_bytes else float("inf")
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
             f"<title>qir report {e(report.model)}</title>", f"<style>{_CSS}</style>",
             "</head><body>", f"<h1>Quantization report: {e(report.model or 'model')}</h1>",
             "<table class='summary'>",
             f"<tr><td>pipeline</td><td class='l'>{e(report.pipeline or '-')}</td></tr>",
             f"<tr><td>samples</td><td>{report.samples}</td></tr>",
             f"<tr><td>parameters</td><td>float {_bytes(report.float_bytes)} → quantized "
             f"{_bytes(report.quant_bytes)} ({ratio:.2f}× smaller)</td></tr>", "</table>",
             "<h2>Outputs (end to end)</h2>",
             "<table><tr><th class='l'>output</th><th>SQNR dB</th><th>cosine</th>"
             "<th>max |err|</th></tr>"]
    for o in report.outputs:
        parts.append(f"<tr><td class='l'>{e(o.name)}</td>{_td(o.sqnr_db, '.1f')}"
                     f"{_td(o.cosine, '.6f')}{_td(o.max_abs_err, '.4g')}</tr>")
    parts.append("</table>")
    if report.layers:
        png = _plot([r.value for r in report.layers], [r.sqnr_db for r in report.layers],
                    bad, "per-layer SQNR (higher is better; red: worst)", "SQNR dB")
        parts += ["<h2>Per-layer error</h2>",
                  f"<img alt='per-layer SQNR' src='data:image/png;base64,{png}'>",
                  "<table><tr><th class='l'>value</th><th class='l'>op</th><th>type</th>"
                  "<th>scale</th><th>zp</th><th>SQNR dB</th><th>cosine</th>"
                  "<th>max |err|</th><th>clip %</th><th class='l'>loc</th></tr>"]
        for r in report.layers:
            cls = " class='worst'" if r.value in bad else ""
            parts.append(
                f"<tr{cls}><td class='l'>{e(r.value)}</td><td class='l'>{e(r.op)}</td>"
                f"<td>{e(r.storage)}</td>{_td(r.scale, '.4g')}<td>{r.zero_point}</td>"
                f"{_td(r.sqnr_db, '.1f')}{_td(r.cosine, '.6f')}{_td(r.max_abs_err, '.4g')}"
                f"{_td(None if r.clip_rate is None else 100 * r.clip_rate, '.3f')}"
                f"<td class='l'>{e(short_loc(r.loc))}</td></tr>")
        parts.append("</table>")
        parts.append("<p class='note'>SQNR = 10·log10(Σ float² / Σ (float − quantized)²) "
                     "over all samples; clip % = share of float values outside the "
                     "quantized range by more than half a step.</p>")
    if report.sensitivity is not None:
        sens = report.sensitivity
        worst_sens = {s.layer for s in sens[:worst]}
        png = _plot([s.layer for s in sens], [s.sqnr_db for s in sens], worst_sens,
                    "output SQNR with only this layer quantized (worst first)", "SQNR dB")
        parts += ["<h2>Sensitivity: one layer quantized at a time</h2>",
                  f"<img alt='sensitivity' src='data:image/png;base64,{png}'>",
                  "<table><tr><th class='l'>layer</th><th class='l'>op</th>"
                  "<th>output SQNR dB</th><th>cosine</th><th>max |err|</th>"
                  "<th class='l'>loc</th></tr>"]
        for s in sens:
            cls = " class='worst'" if s.layer in worst_sens else ""
            parts.append(f"<tr{cls}><td class='l'>{e(s.layer)}</td><td class='l'>{e(s.op)}"
                         f"</td>{_td(s.sqnr_db, '.1f')}{_td(s.cosine, '.6f')}"
                         f"{_td(s.max_abs_err, '.4g')}<td class='l'>{e(short_loc(s.loc))}"
                         "</td></tr>")
        parts.append("</table>")
    for note in report.notes:
        parts.append(f"<p class='note'>note: {e(note)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
