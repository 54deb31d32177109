"""The textual form of the IR. `parse(print_module(m))` prints back to identical text.

Canonical form: quantized element types are hoisted into aliases `!q0, !q1, ...` in
order of first use; attributes equal to their declared default are omitted; floats are
printed with the shortest text that parses back to the same value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from qir.types import QuantType, TensorType, format_float


def format_scale_zp(scale: float, zp: int) -> str:
    return format_float(scale) + (f":{zp}" if zp != 0 else "")


def format_quant_type(q: QuantType) -> str:
    """`!quant.uniform<i8:f32:0, {0.1, 0.2:3}>`; power-of-two scales as `2^-5`;
    `!quant.codebook<u4:f32:{1:64}, nf4, {0.5, 0.25}>` (a table: `[l0, l1, ...]`)."""
    storage = q.storage
    if not q.has_default_range():
        storage += f"<{q.storage_min}:{q.storage_max}>"
    head = f"{storage}:{q.expressed}"
    if q.axis is not None:
        head += f":{q.axis}" if q.block_size is None else f":{{{q.axis}:{q.block_size}}}"
    if q.is_codebook:
        table = q.codebook_name or "[" + ", ".join(format_float(x) for x in q.levels) + "]"
        scales = [format_float(s) for s in q.scales]
        body = scales[0] if q.axis is None else "{" + ", ".join(scales) + "}"
        return f"!quant.codebook<{head}, {table}, {body}>"
    if q.pow2:
        pairs = [f"2^{math.frexp(s)[1] - 1}" + (f":{z}" if z else "")
                 for s, z in zip(q.scales, q.zero_points)]
    else:
        pairs = [format_scale_zp(s, z) for s, z in zip(q.scales, q.zero_points)]
    body = pairs[0] if q.axis is None else "{" + ", ".join(pairs) + "}"
    return f"!quant.uniform<{head}, {body}>"


def format_type(ty: TensorType, aliases: dict[QuantType, str] | None = None) -> str:
    if isinstance(ty.elem, QuantType):
        elem = aliases[ty.elem] if aliases and ty.elem in aliases else format_quant_type(ty.elem)
    else:
        elem = ty.elem
    dims = "".join(f"{d}x" for d in ty.shape)
    return f"tensor<{dims}{elem}>"


def _format_scalar(x: Any, dtype: np.dtype | None = None) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if dtype is not None and dtype.kind == "f" and dtype.itemsize < 8:
        # shortest text that round-trips at the array's own precision
        s = str(x)
        if s in ("inf", "-inf", "nan"):
            return s
        return s if any(c in s for c in ".en") else s + ".0"
    if isinstance(x, (float, np.floating)):
        return format_float(float(x))
    raise TypeError(f"cannot print {x!r}")


def format_dense(arr: np.ndarray) -> str:
    from qir.types import elem_from_numpy

    dtype = arr.dtype

    def rec(a) -> str:
        if a.ndim == 0:
            v = a.item() if dtype.kind != "f" or dtype.itemsize == 8 else a[()]
            return _format_scalar(v, dtype)
        return "[" + ", ".join(rec(x) for x in a) + "]"

    shape = "".join(f"{d}x" for d in arr.shape)
    return f"dense<{rec(arr)}> : tensor<{shape}{elem_from_numpy(dtype)}>"


def format_attr(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, np.ndarray):
        return format_dense(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    return _format_scalar(value)


def format_loc(loc) -> str:
    if loc is None or loc.is_unknown():
        return ""
    parts = [format_attr(loc.module_path) if loc.module_path is not None else "unknown"]
    if loc.file is not None:
        parts.append(format_attr(loc.file) + (f":{loc.line}" if loc.line is not None else ""))
    return f"loc({', '.join(parts)})"


def _attrs_to_print(op) -> dict[str, Any]:
    from qir.registry import has_op

    if not has_op(op.name):
        return op.attrs
    specs = op.opdef.attrs
    out = {}
    # canonical order: as declared (unknown keys, which the verifier rejects, last)
    keys = [k for k in specs if k in op.attrs] + sorted(k for k in op.attrs if k not in specs)
    for k in keys:
        v = op.attrs[k]
        spec = specs.get(k)
        if spec is not None and not spec.required and _attr_equal(v, spec.default):
            continue
        out[k] = v
    return out


def _attr_equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_attr_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def format_op(op, aliases: dict[QuantType, str] | None = None) -> str:
    lhs = ", ".join(f"%{r.name}" for r in op.results)
    text = f"{lhs} = {op.name}"
    if op.operands:
        text += " " + ", ".join(f"%{v.name}" for v in op.operands)
    attrs = _attrs_to_print(op)
    if attrs:
        text += " {" + ", ".join(f"{k} = {format_attr(v)}" for k, v in attrs.items()) + "}"
    text += " : " + ", ".join(format_type(r.type, aliases) for r in op.results)
    loc = format_loc(op.loc)
    if loc:
        text += "  " + loc
    return text


def format_op_brief(op) -> str:
    """One line naming an op for diagnostics (types spelled out, no aliases)."""
    try:
        return format_op(op)
    except Exception:  # a diagnostic must never fail to print
        return f"{op.name} (unprintable)"


def _collect_aliases(module) -> dict[QuantType, str]:
    aliases: dict[QuantType, str] = {}

    def see(ty: TensorType) -> None:
        if isinstance(ty.elem, QuantType) and ty.elem not in aliases:
            aliases[ty.elem] = f"!q{len(aliases)}"

    for fn in module.functions.values():
        for a in fn.args:
            see(a.type)
        for v in fn.outputs:
            see(v.type)
        for op in fn.ops:
            for r in op.results:
                see(r.type)
    return aliases


def print_function(fn, aliases: dict[QuantType, str] | None = None) -> str:
    args = ", ".join(f"%{a.name}: {format_type(a.type, aliases)}" for a in fn.args)
    outs = ", ".join(format_type(v.type, aliases) for v in fn.outputs)
    lines = [f"func @{fn.name}({args}) -> ({outs}) {{"]
    for op in fn.ops:
        lines.append("  " + format_op(op, aliases))
    lines.append("  return " + ", ".join(f"%{v.name}" for v in fn.outputs))
    lines.append("}")
    return "\n".join(lines)


def print_module(module) -> str:
    aliases = _collect_aliases(module)
    chunks = []
    if aliases:
        chunks.append("\n".join(f"{name} = {format_quant_type(q)}" for q, name in
                                aliases.items()))
    chunks.extend(print_function(fn, aliases) for fn in module.functions.values())
    return "\n\n".join(chunks) + "\n"
