"""Draw a module as a Graphviz graph: ops as boxes, values as edges labelled with their
name, shape and quantization (per-channel lists summarised).

`to_dot` needs nothing outside the standard library; `render` runs Graphviz's `dot`
program for svg/png and says how to install it when it is missing.
"""

from __future__ import annotations

import shutil
import subprocess

from qir.diagnostics import QirError
from qir.ir import Function, Module, Op, Value
from qir.pretty import is_default_attr, short_attr, type_short

INSTALL_HINT = ("install Graphviz (`apt-get install graphviz`, `brew install graphviz`, "
                "`conda install graphviz`), or write dot text with `--format dot` and "
                "render it elsewhere")

_FILL = {
    "quant": "#fff4c2",     # quantize / dequantize / requantize
    "int": "#d6e9ff",       # integer compute
    "data": "#eeeeee",      # params and constants
    "float": "#ffffff",
}
_QUANT_OPS = ("qir.quantize", "qir.dequantize", "qir.requantize", "qir.observe")
_INT_OPS = ("qir.qconv1d", "qir.qconv2d", "qir.qlinear", "qir.qmatmul", "qir.qadd",
            "qir.qmul")


def _esc(text: str) -> str:
    """A dot double-quoted string body (lines joined with dot's `\\n`)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _short_attr(value) -> str:
    if isinstance(value, (list, tuple)) and len(value) > 4:
        return f"[{len(value)} values]"
    text = short_attr(value, limit=4)
    return text if len(text) <= 40 else text[:37] + "…"


def _wrap(items: list[str], width: int = 48) -> list[str]:
    lines, cur = [], ""
    for item in items:
        if cur and len(cur) + len(item) + 2 > width:
            lines.append(cur)
            cur = item
        else:
            cur = f"{cur}, {item}" if cur else item
    return lines + ([cur] if cur else [])


def _op_label(op: Op) -> str:
    results = ", ".join(f"%{r.name}" for r in op.results)
    lines = [f"{results} = {op.name}" if results else op.name]
    if op.name in ("qir.param", "qir.constant"):
        if op.name == "qir.param":
            lines[0] = f"{results} = param \"{op.attrs.get('name', '')}\""
        lines.append(type_short(op.result.type))
    else:
        attrs = []
        for k, v in op.attrs.items():
            if k == "prov" or is_default_attr(op, k, v):
                continue
            attrs.append(f"{k}={_short_attr(v)}")
        lines.extend(_wrap(attrs))
    if op.loc is not None and op.loc.module_path:
        lines.append(f"@{op.loc.module_path}")
    return "\n".join(lines)


def _fill(op: Op) -> str:
    if op.name in _QUANT_OPS:
        return _FILL["quant"]
    if op.name in _INT_OPS:
        return _FILL["int"]
    if op.name in ("qir.param", "qir.constant"):
        return _FILL["data"]
    return _FILL["float"]


def _edge_color(v: Value) -> str:
    if v.type.is_quantized:
        return "#1f5fbf"
    if v.type.storage == "i32":
        return "#c06000"
    return "#333333"


def _function_dot(fn: Function, prefix: str, params: bool) -> list[str]:
    lines = []
    ids: dict[int, str] = {}
    for i, a in enumerate(fn.args):
        nid = f"{prefix}arg{i}"
        ids[id(a)] = nid
        lines.append(f'  {nid} [shape=ellipse, label="%{_esc(a.name)}\\n'
                     f'{_esc(type_short(a.type))}"];')
    hidden: set[int] = set()
    for i, op in enumerate(fn.ops):
        nid = f"{prefix}op{i}"
        if not params and op.name in ("qir.param", "qir.constant"):
            hidden.update(id(r) for r in op.results)
            continue
        for r in op.results:
            ids[id(r)] = nid
        shape = "note" if op.name in ("qir.param", "qir.constant") else "box"
        lines.append(f'  {nid} [shape={shape}, style="filled,rounded", '
                     f'fillcolor="{_fill(op)}", label="{_esc(_op_label(op))}"];')
    for i, op in enumerate(fn.ops):
        nid = f"{prefix}op{i}"
        if not params and op.name in ("qir.param", "qir.constant"):
            continue
        for v in op.operands:
            if id(v) in hidden or id(v) not in ids:
                continue
            lines.append(_edge(ids[id(v)], nid, v))
    out_id = f"{prefix}return"
    lines.append(f'  {out_id} [shape=house, label="return"];')
    for v in fn.outputs:
        if id(v) in ids:
            lines.append(_edge(ids[id(v)], out_id, v))
    return lines


def _edge(src: str, dst: str, v: Value) -> str:
    static = v.owner is not None and v.owner.name in ("qir.param", "qir.constant")
    label = "" if static else f'label="%{_esc(v.name)}\\n{_esc(type_short(v.type))}", '
    return f'  {src} -> {dst} [{label}color="{_edge_color(v)}"];'


def to_dot(module: Module, function: str | None = None, params: bool = True) -> str:
    """The module (or one function) as Graphviz dot text."""
    fns = list(module.functions.values())
    if function is not None:
        if function.lstrip("@") not in module.functions:
            known = ", ".join(f"@{n}" for n in module.functions) or "none"
            raise QirError(f"no function @{function.lstrip('@')} (functions: {known})")
        fns = [module.functions[function.lstrip("@")]]
    lines = ["digraph qir {", '  graph [rankdir=TB, fontname="Helvetica"];',
             '  node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=8];']
    if len(fns) == 1:
        lines.extend(_function_dot(fns[0], "", params))
    else:
        for k, fn in enumerate(fns):
            lines.append(f"  subgraph cluster_{k} {{")
            lines.append(f'  label="@{_esc(fn.name)}";')
            lines.extend(_function_dot(fn, f"f{k}_", params))
            lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def have_dot() -> bool:
    return shutil.which("dot") is not None


def render(dot_text: str, fmt: str) -> bytes:
    """Run Graphviz's `dot -T<fmt>`; a QirError when it is missing or fails."""
    exe = shutil.which("dot")
    if exe is None:
        raise QirError(f"{fmt} output needs Graphviz's `dot` program, which is not "
                       f"installed: {INSTALL_HINT}")
    try:
        r = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                           timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise QirError(f"running {exe} failed: {e}") from None
    if r.returncode != 0:
        raise QirError(f"{exe} -T{fmt} failed (exit {r.returncode}): "
                       f"{r.stderr.decode(errors='replace').strip()}")
    return r.stdout
