"""The Core ATen opset against the converters: what torch.export consumers target (the ops
tagged `torch.Tag.core`), each one supported, folded at import, or a documented gap.

`coverage()` classifies every core inference op (backward ops, random ops, `sym_*` shape
queries, `out=` overloads and `_local_scalar_dense` are not inference ops of a static
graph); `markdown()` is the generated table of docs/frontend.md. The test
(tests/frontends/test_core_aten.py) fails when a core inference op is neither supported
nor listed in GAPS with a reason, and when a GAPS entry has gained a converter: the list
only shrinks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Core ops with no converter, and why (what it would take).
GAPS: dict[str, str] = {
    "aten._fft_c2r.default": "complex tensors: qir has no complex element type",
    "aten._fft_r2c.default": "complex tensors: qir has no complex element type",
    "aten.nonzero.default": "data-dependent output shape: qir's shapes are static",
}

# Core ops without a converter that never reach one: the importer folds them (their
# inputs are always known at import, or they read only shapes and dtypes).
FOLDED: dict[str, str] = {
    "aten.empty_strided.default": "a tensor factory: folded to a constant",
    "aten.fill.Scalar": "reads only its input's shape and dtype: folded to a constant",
}


@dataclass(frozen=True)
class CoreOp:
    target: str  # "aten.add.Tensor"
    status: str  # "supported", "folded" or "gap"
    detail: str  # the qir ops it emits, or why


def core_ops() -> list[str]:
    """Every Core ATen inference overload, as `aten.<name>.<overload>`."""
    names = []
    for packet_name in dir(torch.ops.aten):
        try:
            packet = getattr(torch.ops.aten, packet_name)
        except (AttributeError, RuntimeError):
            continue
        for overload in getattr(packet, "overloads", lambda: [])():
            op = getattr(packet, overload)
            if torch.Tag.core not in op.tags or not _inference(packet_name, overload, op):
                continue
            names.append(f"aten.{packet_name}.{overload}")
    return sorted(set(names))


def _inference(name: str, overload: str, op) -> bool:
    return not (name.endswith("_backward") or name.startswith("sym_")
                or name == "_local_scalar_dense" or overload == "out"
                or torch.Tag.nondeterministic_seeded in op.tags)


def coverage() -> list[CoreOp]:
    from frontends import supported_ops

    emitted = {r.target: r.qir_ops for r in supported_ops(builtin_only=True)
               if r.capture in ("export", "both")}
    rows = []
    for name in core_ops():
        if name in emitted:
            rows.append(CoreOp(name, "supported", ", ".join(f"`{o}`" for o in emitted[name])
                               or "(removed)"))
        elif name in FOLDED:
            rows.append(CoreOp(name, "folded", FOLDED[name]))
        else:
            rows.append(CoreOp(name, "gap", GAPS.get(name, "not supported")))
    return rows


def markdown() -> str:
    rows = coverage()
    counts = {s: sum(r.status == s for r in rows) for s in ("supported", "folded", "gap")}
    lines = [f"{len(rows)} Core ATen inference overloads (torch {torch.__version__.split('+')[0]}"
             f"): {counts['supported']} supported, {counts['folded']} folded at import, "
             f"{counts['gap']} not supported.", "",
             "| Core ATen op | status | qir ops, or why not |", "|---|---|---|"]
    lines += [f"| `{r.target}` | {r.status} | {r.detail} |" for r in rows]
    return "\n".join(lines) + "\n"
