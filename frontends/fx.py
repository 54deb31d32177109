"""torch.fx.symbolic_trace → qir: lower call_module / call_function / call_method graphs.

Shapes come from running the graph once on example inputs (ShapeProp). The tracer used
by `trace()` records stack traces (file:line of every op) and keeps as leaves only the
torch.nn modules that have a converter, so other torch.nn modules are traced through into
functional calls that do.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import torch
import torch.fx
from torch.fx.passes.shape_prop import ShapeProp
from torch.utils._pytree import tree_flatten

from frontends.common import Const, LazyParam, UnsupportedModelError
from frontends.context import GraphLowering
from frontends.export import _frame_of, control_flow_error
from qir import Module


class QirTracer(torch.fx.Tracer):
    """symbolic_trace that records stack traces and the module path of every node
    (`nn_module_stack`, kept by torch's Tracer.call_module), with converter-backed leaves."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True

    def is_leaf_module(self, m: torch.nn.Module, module_qualified_name: str) -> bool:
        from frontends.converters.modules import module_has_converter

        return super().is_leaf_module(m, module_qualified_name) and module_has_converter(m)


def trace(model: torch.nn.Module) -> torch.fx.GraphModule:
    """symbolic_trace with QirTracer; trace failures become readable errors."""
    tracer = QirTracer()
    try:
        graph = tracer.trace(model)
    except torch.fx.proxy.TraceError as e:
        where = _frame_of(e)
        if "cannot be used as inputs to control flow" in str(e):
            raise control_flow_error(where, "symbolic_trace") from None
        raise _trace_failure(e, where) from None
    except Exception as e:  # e.g. len() or iteration over a Proxy
        raise _trace_failure(e, _frame_of(e)) from None
    return torch.fx.GraphModule(tracer.root, graph, type(model).__name__)


def _trace_failure(e: Exception, where: tuple[str, int, str] | None) -> UnsupportedModelError:
    at = f" at {where[0]}:{where[1]}: {where[2]}" if where else ""
    return UnsupportedModelError([], headline=f"symbolic_trace cannot trace the model{at} "
                                 f"({type(e).__name__}: {e})", advice=(
                                     "Try capture='export' (torch.export handles more "
                                     "Python), or rewrite that line."))


def from_fx(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Module:
    """Lower a symbolic_trace GraphModule; example inputs give every node its shape."""
    args = tuple(example_inputs)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(args) != len(placeholders):
        raise UnsupportedModelError([], headline=f"the graph takes {len(placeholders)} inputs "
                                    f"({', '.join(str(n.target) for n in placeholders)}) but "
                                    f"{len(args)} example inputs were given", advice=None)
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*args)
    except Exception as e:
        where = _frame_of(e)
        at = f" at {where[0]}:{where[1]}" if where else ""
        raise UnsupportedModelError([], headline=f"running the traced graph on the example "
                                    f"inputs failed{at}: {type(e).__name__}: {e}",
                                    advice=None) from None
    lowering = GraphLowering("fx", gm)
    params = dict(gm.named_parameters(remove_duplicate=False))
    params.update(dict(gm.named_buffers(remove_duplicate=False)))
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            lowering.add_input(node, str(node.target).lstrip("*"))
        elif node.op == "get_attr":
            lowering.bind(node, _attribute(gm, str(node.target), params))
        elif node.op == "output":
            flat, _ = tree_flatten(node.args[0])
            # a node may hold several tensors (x.max(dim) returns values and indices)
            results = tree_flatten([lowering.env[x] if isinstance(x, torch.fx.Node) else x
                                    for x in flat])[0]
            lowering.set_outputs(results, [f"output {i}" for i in range(len(results))])
        else:
            lowering.lower_node(node)
    return lowering.finish()


def _attribute(gm: torch.fx.GraphModule, target: str, params: dict[str, torch.Tensor]) -> Any:
    """A get_attr: parameters and buffers stay named params, other tensors are constants
    (`_tensor_constant<N>` is a value symbolic_trace computed eagerly, e.g. a buffer slice;
    GraphModule registers it as a buffer, but it is no model state)."""
    if target in params and not re.fullmatch(r"_tensor_constant\d+", target):
        return LazyParam(target, params[target])
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return Const(obj) if isinstance(obj, torch.Tensor) else obj
