"""Short human-readable forms of types and quantization parameters, for tools that show
IR to people (`qir diff`, `qir explain`, `qir show`): per-channel lists are summarised
instead of spelled out, numbers get four significant digits."""

from __future__ import annotations

from typing import Any

import numpy as np

from qir.printer import format_attr
from qir.types import QuantType, TensorType


def num(x: float) -> str:
    """A number for people: 4 significant digits."""
    return f"{x:.4g}"


def quant_short(q: QuantType) -> str:
    """`i8 s=0.02273 zp=-128`, or for per-axis `i8<-127:127> axis 0: 8 scales in
    [0.003115, 0.006357]`."""
    storage = q.storage if q.has_default_range() else \
        f"{q.storage}<{q.storage_min}:{q.storage_max}>"
    if q.is_codebook:
        storage += f" {q.codebook_name or f'codebook[{len(q.levels)}]'}"
    if q.is_per_tensor:
        zp = f" zp={q.zero_point}" if q.zero_point else ""
        return f"{storage} s={num(q.scale)}{zp}"
    what = "axis" if q.block_size is None else f"blocks of {q.block_size} along axis"
    lo, hi = min(q.scales), max(q.scales)
    zps = set(q.zero_points)
    zp = "" if zps == {0} else (f" zp={zps.pop()}" if len(zps) == 1 else " zp per channel")
    return f"{storage} {what} {q.axis}: {len(q.scales)} scales in [{num(lo)}, {num(hi)}]{zp}"


def type_short(ty: TensorType) -> str:
    """`1x8x32x32 i8 s=0.02273 zp=-128` / `1x8x32x32 f32`."""
    shape = "x".join(str(d) for d in ty.shape) or "scalar"
    elem = quant_short(ty.elem) if isinstance(ty.elem, QuantType) else ty.elem
    return f"{shape} {elem}"


def real_range(q: QuantType) -> tuple[float, float] | None:
    """[scale·(qmin − zp), scale·(qmax − zp)] of a per-tensor type (None otherwise)."""
    if not q.is_per_tensor:
        return None
    return q.scale * (q.qmin - q.zero_point), q.scale * (q.qmax - q.zero_point)


def describe_quant(q: QuantType) -> str:
    """One sentence: storage, granularity, scale(s), zero point(s), real range (for a
    codebook: its table; power-of-two scales say so)."""
    storage = q.storage if q.has_default_range() else \
        f"{q.storage} in [{q.storage_min}, {q.storage_max}]"
    if q.is_codebook:
        table = (f"codebook {q.codebook_name} ({len(q.levels)} levels)" if q.codebook_name
                 else f"codebook of {len(q.levels)} levels")
        grain = ("per-tensor" if q.is_per_tensor else "per-axis" if q.block_size is None
                 else f"per-group (blocks of {q.block_size})")
        where = "" if q.is_per_tensor else f" along axis {q.axis}"
        return (f"{storage} indices into a {table} in [{num(q.levels[0])}, "
                f"{num(q.levels[-1])}], value = level × scale, {grain}{where}, "
                f"{len(q.scales)} scale(s) in [{min(q.scales):.6g}, {max(q.scales):.6g}]")
    if q.pow2:
        storage += " (power-of-two scales: requantize is a shift)"
    if q.is_per_tensor:
        lo, hi = real_range(q)
        return (f"{storage} per-tensor, scale {q.scale:.6g}, zero point {q.zero_point}, "
                f"real range [{num(lo)}, {num(hi)}]")
    kind = "per-axis" if q.block_size is None else f"per-group (blocks of {q.block_size})"
    zps = set(q.zero_points)
    zp = f"zero point {zps.pop()}" if len(zps) == 1 else "zero points per channel"
    return (f"{storage} {kind} along axis {q.axis}, {len(q.scales)} scales in "
            f"[{min(q.scales):.6g}, {max(q.scales):.6g}], {zp}")


def relative_change(old: float, new: float) -> str:
    """`+6.5%` (or `±0%`, or `from 0`)."""
    if old == 0:
        return "from 0" if new != 0 else "±0%"
    pct = 100.0 * (new - old) / abs(old)
    if pct == 0:
        return "±0%"
    return f"{pct:+.2g}%" if abs(pct) < 0.1 else f"{pct:+.1f}%"


def short_attr(value: Any, limit: int = 6) -> str:
    """An attribute value as printed, long lists cut to their first elements."""
    if isinstance(value, (list, tuple)) and len(value) > limit:
        head = ", ".join(format_attr(v) for v in value[:limit])
        return f"[{head}, … {len(value)} in all]"
    if isinstance(value, np.ndarray) and value.size > limit:
        return f"dense<…> : {value.dtype} {list(value.shape)}"
    return format_attr(value)


def values_equal(x: Any, y: Any) -> bool:
    """Attribute values equal (arrays by content, bools not equal to ints, nan == nan)."""
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
                and x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y))
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(values_equal(a, b) for a, b in zip(x, y))
    if isinstance(x, bool) or isinstance(y, bool):
        return type(x) is type(y) and x == y
    if isinstance(x, float) and isinstance(y, float) and np.isnan(x) and np.isnan(y):
        return True
    return x == y


def is_default_attr(op, key: str, value: Any) -> bool:
    """Whether `value` is the declared default of op's attribute `key`."""
    try:
        spec = op.opdef.attrs.get(key)
    except Exception:  # noqa: BLE001
        return False
    return spec is not None and not spec.required and values_equal(value, spec.default)
