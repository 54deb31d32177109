"""torch.export → qir: lower an ExportedProgram's ATen graph.

Placeholders are classified by the graph signature: parameters and buffers become named
qir.param ops (state_dict names), lifted constants become constants, user inputs become
@main's arguments (named like forward()'s). ATen ops with no converter but a torch
decomposition into supported ops are decomposed and the import retried.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind

from frontends.common import Const, LazyParam, Problem, UnsupportedModelError, user_frame
from frontends.context import GraphLowering
from qir import Location, Module


def from_exported_program(ep: ExportedProgram, *, decompose: bool = True) -> Module:
    """Lower a torch.export program to a verified qir Module (raises UnsupportedModelError
    listing every unsupported op, dtype or construct)."""
    first = _lower(ep)
    if not first.problems:
        return first.finish()
    unsupported = first.unsupported_targets
    table = {op: fn for op, fn in torch.export.default_decompositions().items()
             if op in unsupported} if decompose else {}
    # In-place ops (relu_, add_: nn.ReLU(inplace=True), `out += x`) become their
    # functional forms when the program is functionalized, which run_decompositions
    # does even with an empty table.
    if not table and not any(_in_place(t) for t in unsupported):
        return first.finish()  # raises with every problem
    try:
        retry = _lower(ep.run_decompositions(table))
    except Exception:  # decomposition itself failed: report the original problems
        return first.finish()
    if retry.problems:  # what is left, as the decomposed program has it, once each
        left: list[Problem] = []
        for p in retry.problems:
            if p not in left:
                left.append(p)
        retry.problems = left
    return retry.finish()


def _in_place(target: Any) -> bool:
    """Whether an ATen op mutates its first argument (relu_, add_.Tensor, ...)."""
    schema = getattr(target, "_schema", None)
    return bool(schema is not None and schema.name.endswith("_") and schema.arguments
                and schema.arguments[0].alias_info is not None
                and schema.arguments[0].alias_info.is_write)


def _lower(ep: ExportedProgram) -> GraphLowering:
    gm = ep.graph_module
    sig = ep.graph_signature
    lowering = GraphLowering("export", gm)
    specs = {spec.arg.name: spec for spec in sig.input_specs if hasattr(spec.arg, "name")}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            _placeholder(ep, lowering, node, specs.get(node.name))
        elif node.op == "get_attr":  # submodules of control-flow operators
            lowering.bind(node, getattr(gm, str(node.target)))
        elif node.op == "output":
            _outputs(lowering, node, sig)
        else:
            lowering.lower_node(node)
    return lowering


def _placeholder(ep: ExportedProgram, lowering: GraphLowering, node: torch.fx.Node,
                 spec: Any) -> None:
    if spec is None or spec.kind == InputKind.USER_INPUT:
        lowering.add_input(node, node.name)
    elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
        tensor = ep.state_dict.get(spec.target)
        if tensor is None:  # non-persistent buffers live in ep.constants
            tensor = ep.constants[spec.target]
        lowering.bind(node, LazyParam(spec.target, tensor))
    elif spec.kind == InputKind.CONSTANT_TENSOR:
        lowering.bind(node, Const(ep.constants[spec.target]))
    else:
        lowering.problems.append(Problem("unsupported input", node.name,
                                         f"{spec.kind.name} inputs are not supported"))
        lowering.bind(node, None)


def _outputs(lowering: GraphLowering, node: torch.fx.Node, sig: Any) -> None:
    results, names = [], []
    for arg, spec in zip(node.args[0], sig.output_specs):
        if spec.kind == OutputKind.USER_OUTPUT:
            results.append(lowering.env[arg] if isinstance(arg, torch.fx.Node) else arg)
            names.append(getattr(spec.arg, "name", "output"))
        elif spec.kind == OutputKind.BUFFER_MUTATION:
            lowering.problems.append(Problem(
                "buffer mutation", spec.target, "forward() updates this buffer (BatchNorm "
                "in training mode updates its running statistics): call model.eval() before "
                "exporting", Location(spec.target.rpartition(".")[0])))
        else:
            lowering.problems.append(Problem("unsupported output", spec.target or "?",
                                             f"{spec.kind.name} outputs are not supported"))
    lowering.set_outputs(results, names)


def export_model(model: torch.nn.Module, example_inputs: Sequence[Any]) -> ExportedProgram:
    """torch.export.export, with its failures turned into readable errors (data-dependent
    control flow gets the user's file:line)."""
    try:
        return torch.export.export(model, tuple(example_inputs))
    except Exception as e:  # torch raises many types here; all are user-facing
        raise export_failure(e) from None


_RAISED_AT = re.compile(r'The following call raised this error:\s*File "([^"]+)", line (\d+)'
                        r'[^\n]*\n\s*(.*)')


def export_failure(e: Exception) -> UnsupportedModelError:
    text = str(e)
    data_dependent = ("data-dependent" in text or "GuardOnDataDependent" in type(e).__name__
                      or "DataDependent" in type(e).__name__)
    m = _RAISED_AT.search(text)
    where = (m.group(1), int(m.group(2)), m.group(3).strip()) if m else _frame_of(e)
    if data_dependent:
        return control_flow_error(where, "torch.export")
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    at = f" at {where[0]}:{where[1]}" if where else ""
    return UnsupportedModelError([], headline=f"torch.export.export failed{at}: "
                                 f"{type(e).__name__}: {first}", advice=(
                                     "Fix the model so that torch.export can capture it, or try "
                                     "capture='fx' (symbolic_trace)."))


def control_flow_error(where: tuple[str, int, str] | None, tool: str) -> UnsupportedModelError:
    """The error for `if x.sum() > 0:`-style branches on tensor values."""
    at = f" at {where[0]}:{where[1]}: {where[2]}" if where else ""
    loc = Location(None, where[0], where[1]) if where else Location()
    headline = (f"model has data-dependent control flow{at}; torch.export / symbolic_trace "
                f"cannot capture it ({tool} failed there); rewrite the branch with torch.where "
                "(compute both sides and select), or make the condition depend only on shapes "
                "or constants")
    return UnsupportedModelError([Problem("control flow", "branch on a tensor value", "", loc)],
                                 headline=headline, advice=None)


def _frame_of(e: BaseException) -> tuple[str, int, str] | None:
    """The innermost traceback frame in user code (not torch, not this package)."""
    import traceback

    frames = traceback.extract_tb(e.__traceback__)
    text = "".join(f'File "{f.filename}", line {f.lineno}\n' for f in frames)
    found = user_frame(text)
    if found is None:
        return None
    line = next((f.line or "" for f in reversed(frames)
                 if f.filename == found[0] and f.lineno == found[1]), "")
    return found[0], found[1], line.strip()
