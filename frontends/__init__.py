"""PyTorch frontends: torch.export programs and symbolic_trace graphs to qir Modules.

    m = from_torch(model.eval(), (x,))                 # via torch.export (default)
    m = from_torch(model.eval(), (x,), capture="fx")   # via torch.fx.symbolic_trace
    m = from_exported_program(torch.export.export(model, (x,)))
    m = load_model_file("model.pt2")

Every op carries `loc(module path, file:line)`; parameters keep their state_dict names.
Unsupported models raise one UnsupportedModelError that lists every problem.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from frontends.common import (
    ConversionError,
    Problem,
    SupportedOp,
    UnsupportedModelError,
    converter,
    supported_ops,
)
from frontends.context import Context
from frontends.export import export_model, from_exported_program
from frontends.files import (
    ModelFileError,
    load_model_file,
    load_model_file_with_examples,
)
from frontends.fx import QirTracer, from_fx, trace
from qir import Module

__all__ = [
    "Context", "ConversionError", "ModelFileError", "Problem", "QirTracer", "SupportedOp",
    "UnsupportedModelError", "converter", "export_model", "from_exported_program", "from_fx", "from_torch",
    "load_model_file", "load_model_file_with_examples", "supported_ops",
    "supported_ops_markdown", "trace",
]


def from_torch(model: torch.nn.Module, example_inputs: Any, *,
               capture: str = "export") -> Module:
    """Capture `model` with torch.export ("export") or symbolic_trace ("fx") and lower it.
    example_inputs: a tensor or a tuple of positional tensors of the real (static) shapes.
    The model should be in eval mode; training-mode layers are reported."""
    args = _as_args(example_inputs)
    if capture == "export":
        return from_exported_program(export_model(model, args))
    if capture == "fx":
        return from_fx(trace(model), args)
    raise ValueError(f"capture must be 'export' or 'fx', got {capture!r}")


def _as_args(example_inputs: Any) -> tuple:
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (list, tuple)):
        return tuple(example_inputs)
    raise TypeError("example_inputs must be a tensor or a tuple of tensors, got "
                    f"{type(example_inputs).__name__}")


def supported_ops_markdown() -> str:
    """The supported-op tables of docs/frontend.md (built-in converters only)."""
    rows = supported_ops(builtin_only=True)

    def table(title: str, header: str, select: Sequence[SupportedOp], show_kind: bool) -> str:
        lines = [f"### {title}", "", header,
                 "|---|---|---|" if show_kind else "|---|---|"]
        for r in select:
            ops = ", ".join(f"`{o}`" for o in r.qir_ops) or "(removed / folded)"
            kind = r.kind.removeprefix("call_")
            lines.append(f"| {kind} | `{r.target}` | {ops} |" if show_kind
                         else f"| `{r.target}` | {ops} |")
        return "\n".join(lines)

    export_rows = [r for r in rows if r.capture in ("export", "both")]
    fx_rows = [r for r in rows if r.capture in ("fx", "both")]
    return "\n\n".join([
        table("torch.export (ATen)", "| ATen op | qir ops |", export_rows, False),
        table("torch.fx.symbolic_trace", "| node kind | target | qir ops |", fx_rows, True),
    ]) + "\n"
