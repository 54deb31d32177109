"""Walking an fx graph into a qir function: the part shared by torch.export and
symbolic_trace imports.

`GraphLowering` visits nodes in order, folds what is known at import time, dispatches the
rest to registered converters through a `Context`, checks every result against the shape
and dtype torch computed, and collects every problem instead of stopping at the first.
"""

from __future__ import annotations

import inspect
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx
from torch.fx.passes.shape_prop import TensorMetadata
from torch.fx.node import map_aggregate
from torch.utils._pytree import tree_map

from frontends.common import (
    Const,
    ConversionError,
    LazyParam,
    Poison,
    Problem,
    UnsupportedModelError,
    Unavailable,
    is_supported_dtype,
    lookup,
    node_location,
    target_name,
    tensor_type,
    to_numpy,
    torch_dtype,
)
from qir import Builder, Function, Location, Module, QirError, TensorType, Value, verify
from qir.ops.core import INLINE_CONSTANT_LIMIT
from qir.types import elem_from_numpy, numpy_dtype

# --- what torch says a node produces -----------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """Shape and dtype of a tensor torch computed for a node (from meta or ShapeProp)."""

    shape: tuple
    dtype: torch.dtype


def node_spec(node: torch.fx.Node) -> Any:
    """What the node produces, as TensorSpec / nested lists of them / python scalars, from
    `meta["val"]` (export) or `meta["tensor_meta"]` (ShapeProp); None when unknown."""

    def conv(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return TensorSpec(tuple(v.shape), v.dtype)
        if isinstance(v, TensorMetadata):  # from ShapeProp
            return TensorSpec(tuple(v.shape), v.dtype)
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return v

    if "val" in node.meta:
        return conv(node.meta["val"])
    if "tensor_meta" in node.meta:
        return conv(node.meta["tensor_meta"])
    return None


def _flat_specs(spec: Any) -> list[TensorSpec]:
    if isinstance(spec, TensorSpec):
        return [spec]
    if isinstance(spec, list):
        return [s for x in spec for s in _flat_specs(x)]
    return []


def _leaves(x: Any) -> list[Any]:
    """The values inside nested args (lists, tuples, dicts and slices)."""
    if isinstance(x, (list, tuple)):
        return [v for item in x for v in _leaves(item)]
    if isinstance(x, dict):
        return [v for item in x.values() for v in _leaves(item)]
    if isinstance(x, slice):
        return _leaves([x.start, x.stop, x.step])
    return [x]


_RANDOM_NAMES = {"rand", "randn", "randint", "randperm", "normal", "bernoulli", "multinomial",
                 "rand_like", "randn_like", "randint_like", "poisson", "uniform_", "normal_"}


def _is_random(node: torch.fx.Node) -> bool:
    t = node.target
    if isinstance(t, torch._ops.OpOverload):
        return torch.Tag.nondeterministic_seeded in t.tags and "dropout" not in str(t)
    name = t if isinstance(t, str) else getattr(t, "__name__", "")
    return name in _RANDOM_NAMES


# Tensor factories whose result depends on their tensor arguments' shape and dtype only, not
# on the values: folded at import even when an argument is computed at run time, so that a
# mask built from `x.new_zeros(...)` and filled in place (Swin's attention mask) is a
# constant.
_SHAPE_ONLY_NAMES = {"zeros_like", "ones_like", "empty_like", "full_like", "new_zeros",
                     "new_ones", "new_empty", "new_full"}


def _shape_only(node: torch.fx.Node) -> bool:
    t = node.target
    if t is torch.ops.aten.fill.Scalar:  # fill(x, 3.0): x's shape and dtype, the number
        return True
    if isinstance(t, torch._ops.OpOverload):
        return t.overloadpacket.__name__ in _SHAPE_ONLY_NAMES
    name = t if isinstance(t, str) else getattr(t, "__name__", "")
    return node.op in ("call_function", "call_method") and name in _SHAPE_ONLY_NAMES


def _stand_in(x: Any) -> Any:
    """What a shape-only factory sees for a run-time tensor: zeros of its type."""
    if isinstance(x, Value):
        return Const(torch.zeros(x.type.shape, dtype=torch_dtype(str(x.type.elem))))
    if isinstance(x, LazyParam):
        return Const(x.tensor)
    return x


# --- the context converters see --------------------------------------------------------------


class Context:
    """What a converter works with: emit ops at the node's location, turn arguments into
    qir values, and read what torch says the node produces (`out_type`)."""

    def __init__(self, lowering: GraphLowering, node: torch.fx.Node, loc: Location):
        self.lowering = lowering
        self.node = node
        self.loc = loc
        self.spec = node_spec(node)
        self._builder = Builder(lowering.fn, loc=loc)

    # --- expected results ---
    @property
    def out_type(self) -> TensorType:
        """The type torch computed for the node's (single tensor) result."""
        if not isinstance(self.spec, TensorSpec):
            raise ConversionError("torch did not record the result shape of this node")
        return tensor_type(self.spec.shape, self.spec.dtype)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.out_type.shape

    # --- building ---
    def emit(self, name: str, operands: list[Value] | tuple = (), attrs: dict | None = None,
             result_types: list[TensorType] | None = None) -> Value:
        """Append a single-result op at the node's location. Its result is named after the
        node (`conv1.pad`); the walker renames the node's final result to the node name."""
        return self.emit_multi(name, operands, attrs, result_types, 1)[0]

    def emit_multi(self, name: str, operands: list[Value] | tuple = (),
                   attrs: dict | None = None, result_types: list[TensorType] | None = None,
                   num_results: int = 1) -> list[Value]:
        base = f"{self.node.name}.{name.split('.')[-1]}"
        n = len(result_types) if result_types is not None else num_results
        op = self._builder.create(name, list(operands), attrs, result_types, [base] * n)
        return list(op.results)

    def value(self, x: Any, elem: str | None = None) -> Value:
        """A qir value for a tensor-like argument: a Value, a parameter, a folded constant or
        a python scalar (which becomes a 0-d constant of element type `elem`)."""
        if isinstance(x, Value):
            return x if elem is None else self.cast(x, elem)
        if isinstance(x, LazyParam):
            v = self.lowering.param_value(x.name, x.tensor, self)
            return v if elem is None else self.cast(v, elem)
        if isinstance(x, Const):
            t = x.tensor
            if elem is not None:
                t = t.to(torch_dtype(elem))
            return self.constant(to_numpy(t), x.name)
        if isinstance(x, (bool, int, float)):
            if elem is None:
                elem = "bool" if isinstance(x, bool) else "i64" if isinstance(x, int) else "f32"
            return self.constant(np.array(x, dtype=numpy_dtype(elem)))
        if isinstance(x, Unavailable):
            raise ConversionError(f"uses {x.what}, which qir does not compute")
        raise ConversionError(f"expected a tensor, got {type(x).__name__} {x!r}")

    def cast(self, v: Value, elem: str) -> Value:
        if v.type.elem == elem:
            return v
        return self.emit("qir.cast", [v], {"to": elem})

    def constant(self, array: np.ndarray, name: str = "") -> Value:
        """An inline qir.constant; larger arrays go to the param table under `name` (a
        uniform array becomes a scalar constant broadcast to its shape)."""
        array = np.asarray(array)
        elem = elem_from_numpy(array.dtype)
        if array.size <= INLINE_CONSTANT_LIMIT:
            return self.emit("qir.constant", [], {"value": array},
                             [TensorType(array.shape, elem)])
        flat = array.reshape(-1)
        if np.all(flat == flat[0]):
            scalar = self.constant(flat[:1].reshape(()))
            return self.emit("qir.broadcast_to", [scalar], {"shape": list(array.shape)})
        name = self.lowering.module.add_param(name or self.node.name, array)
        return self.emit("qir.param", [], {"name": name}, [TensorType(array.shape, elem)])

    def param(self, name: str, tensor: torch.Tensor) -> Value:
        """The qir.param value of a model parameter/buffer, named by its state_dict name."""
        return self.lowering.param_value(name, tensor, self)

    @staticmethod
    def fail(message: str) -> None:
        raise ConversionError(message)


# --- the walker -------------------------------------------------------------------------------


class GraphLowering:
    """Converts the nodes of one fx graph into the ops of a fresh qir module's @main."""

    def __init__(self, capture: str, root: torch.nn.Module):
        self.capture = capture
        self.root = root  # owner of call_module targets (the GraphModule)
        self.module = Module()
        self.fn = self.module.add_function(Function("main"))
        self.env: dict[torch.fx.Node, Any] = {}
        self.problems: list[Problem] = []
        self._params: dict[str, Value] = {}
        self._param_ids: dict[int, str] = {}
        self._provisional: set[int] = set()
        self.unsupported_targets: set[Any] = set()  # for export's decomposition retry
        self._param_values: set[int] = set()  # named params keep their names

    # --- inputs ---
    def add_input(self, node: torch.fx.Node, name: str) -> None:
        """A function argument for a user-input placeholder, typed from its meta."""
        spec = node_spec(node)
        loc = node_location(node)
        if not isinstance(spec, TensorSpec):
            self.problems.append(Problem("unsupported input", name, "inputs must be tensors "
                                         f"(got {spec!r})", loc))
            self.env[node] = Poison()
            return
        try:
            ty = tensor_type(spec.shape, spec.dtype)
        except ConversionError as e:
            self.problems.append(Problem("unsupported input", name, str(e), loc))
            self.env[node] = Poison()
            return
        self.env[node] = self.fn.add_arg(name, ty)

    def bind(self, node: torch.fx.Node, value: Any) -> None:
        """Give a node a known value (a LazyParam, a Const, a python object)."""
        self.env[node] = value

    def param_value(self, name: str, tensor: torch.Tensor, ctx: Context) -> Value:
        """The qir.param value of a weight, created at its first use (at that user's
        location); a tensor shared by two modules (tied weights) is one param."""
        name = self._param_ids.setdefault(id(tensor), name)
        if name not in self._params:
            ty = tensor_type(tensor.shape, tensor.dtype)
            stored = self.module.add_param(name, to_numpy(tensor))
            op = Builder(self.fn, loc=ctx.loc).create("qir.param", [], {"name": stored}, [ty],
                                                      [stored])
            self._params[name] = op.result
            self._param_values.add(id(op.result))
        return self._params[name]

    # --- nodes ---
    def lower_node(self, node: torch.fx.Node) -> None:
        """Convert one call node: report it if unsupported, skip it if it depends on a
        failed node, fold it if all inputs are known, else run its converter."""
        loc = node_location(node)
        name = self._target_name(node)
        args = map_aggregate(node.args, self._lookup)  # also inside slices: x[:, :n]
        kwargs = map_aggregate(node.kwargs, self._lookup)
        if _shape_only(node) and not any(isinstance(x, Poison) for x in _leaves((args, kwargs))):
            args, kwargs = map_aggregate((args, kwargs), _stand_in)
        leaves = _leaves((args, kwargs))
        poisoned = any(isinstance(x, Poison) for x in leaves)
        runtime = self._has_state(node) or any(isinstance(x, (Value, LazyParam, Poison))
                                               for x in leaves)
        info = lookup(node.op, self._key(node))

        if info is None and (runtime or _is_random(node)):
            self.unsupported_targets.add(node.target)
            self._fail(node, Problem("unsupported op", name, "", loc))
            return
        if poisoned:
            self.env[node] = Poison()
            return
        picks = node.target is operator.getitem  # may pick an available element
        for x in ([] if picks else leaves):
            if isinstance(x, Unavailable):
                self._fail(node, Problem("unsupported use", name, f"uses {x.what}, which qir "
                                         "does not compute", loc))
                return
        if not runtime and not _is_random(node):
            self._fold(node, name, args, kwargs, loc)
            return
        bad = [s.dtype for s in _flat_specs(node_spec(node)) if not is_supported_dtype(s.dtype)]
        if bad:
            self._fail(node, Problem("unsupported dtype", name, f"produces a {bad[0]} tensor; "
                                     "qir has no such element type", loc))
            return
        self._convert(node, info, name, args, kwargs, loc)

    def _convert(self, node, info, name, args, kwargs, loc) -> None:
        ctx = Context(self, node, loc)
        first_new = len(self.fn.ops)
        call_args = (ctx,) + args
        if node.op == "call_module":
            call_args = (ctx, self.root.get_submodule(node.target)) + args
        try:
            inspect.signature(info.fn).bind(*call_args, **kwargs)
        except TypeError as e:
            self._fail(node, Problem("unsupported arguments", name, f"{e}", loc))
            self._rollback(first_new)
            return
        try:
            result = info.fn(*call_args, **kwargs)
            self._check(node, result)
        except QirError as e:  # ConversionError, or a type error from an op declaration
            self._fail(node, Problem("cannot convert", name, str(e), loc))
            self._rollback(first_new)
            return
        except Exception as e:  # a converter bug: still report it readably, with where
            self._fail(node, Problem("cannot convert", name, f"internal error in the "
                                     f"converter: {type(e).__name__}: {e}", loc))
            self._rollback(first_new)
            return
        new_ids = {id(r) for op in self.fn.ops[first_new:] for r in op.results}
        if isinstance(result, Value) and id(result) not in self._param_values and (
                id(result) in new_ids or id(result) in self._provisional):
            self._rename(result, node.name)
        elif isinstance(result, (list, tuple)):
            self._provisional.update(id(v) for v in result if isinstance(v, Value)
                                     and id(v) in new_ids)
        self.env[node] = result

    def _fold(self, node, name, args, kwargs, loc) -> None:
        unwrap = map_aggregate((args, kwargs),
                               lambda x: x.tensor if isinstance(x, Const) else x)
        try:
            with torch.no_grad():
                value = self._evaluate(node, *unwrap)
        except Exception as e:
            self._fail(node, Problem("cannot evaluate", name, f"{type(e).__name__}: {e}", loc))
            return
        self.env[node] = tree_map(
            lambda x: Const(x, node.name) if isinstance(x, torch.Tensor) else x, value)

    def _has_state(self, node: torch.fx.Node) -> bool:
        """A call_module with parameters is never folded: its weights stay named params."""
        if node.op != "call_module":
            return False
        m = self.root.get_submodule(node.target)
        return any(True for _ in m.parameters()) or any(True for _ in m.buffers())

    def _evaluate(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        """Run a node eagerly on known values (constant folding), on the CPU."""
        if "device" in kwargs:
            kwargs = {**kwargs, "device": "cpu"}
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        if node.op == "call_module":
            return self.root.get_submodule(node.target)(*args, **kwargs)
        return node.target(*args, **kwargs)

    def _check(self, node: torch.fx.Node, result: Any) -> None:
        """Every tensor a converter returns must have the shape and dtype torch computed."""
        spec = node_spec(node)
        pairs = [(result, spec)]
        if isinstance(result, (list, tuple)) and isinstance(spec, list):
            pairs = list(zip(result, spec))
        for r, s in pairs:
            if isinstance(r, Value) and isinstance(s, TensorSpec):
                want = tensor_type(s.shape, s.dtype)
                # a quantized value stands for the integers torch holds (quantize ops)
                got = r.type.with_elem(r.type.storage) if r.type.is_quantized else r.type
                if got != want:
                    raise ConversionError(f"internal error: lowered to {r.type} but torch "
                                          f"computes {want}")

    def _rename(self, v: Value, name: str) -> None:
        self._provisional.discard(id(v))
        self.fn.release_name(v.name)
        v.name = self.fn.unique_name(name)

    def _rollback(self, first_new: int) -> None:
        """Remove the ops a failed converter emitted (params it created included)."""
        for op in reversed(self.fn.ops[first_new:]):
            if op.name == "qir.param":
                self._params = {k: v for k, v in self._params.items() if v is not op.result}
                self.module.params.pop(op.attr("name"), None)
            op.drop_operands()
            self.fn.ops.remove(op)
            for r in op.results:
                self.fn.release_name(r.name)
            op.function = None

    def _fail(self, node: torch.fx.Node, problem: Problem) -> None:
        self.problems.append(problem)
        self.env[node] = Poison()

    def _lookup(self, x: Any) -> Any:
        return self.env[x] if isinstance(x, torch.fx.Node) else x

    def _key(self, node: torch.fx.Node) -> Any:
        if node.op == "call_module":
            return type(self.root.get_submodule(node.target))
        return node.target

    def _target_name(self, node: torch.fx.Node) -> str:
        if node.op == "call_module":
            return target_name("call_module", type(self.root.get_submodule(node.target)))
        return target_name(node.op, node.target)

    # --- outputs and the result ---
    def set_outputs(self, results: list[Any], names: list[str]) -> None:
        """The function results, in order (constants and params are materialized)."""
        values = []
        for r, name in zip(results, names):
            if isinstance(r, Poison):
                continue
            if isinstance(r, Unavailable):
                self.problems.append(Problem("unsupported output", name, f"returns {r.what}"))
                continue
            if isinstance(r, (Const, LazyParam, Value)):
                node = _FakeNode(name)
                ctx = Context(self, node, Location())  # type: ignore[arg-type]
                values.append(ctx.value(r))
                continue
            self.problems.append(Problem("unsupported output", name, f"outputs must be tensors,"
                                         f" got {type(r).__name__} {r!r}"))
        self.fn.set_outputs(values)

    def finish(self) -> Module:
        """The module, or UnsupportedModelError listing every problem (nothing half-built
        escapes). Unused ops and parameters are dropped."""
        if self.problems:
            raise UnsupportedModelError(self.problems)
        outputs = {id(v) for v in self.fn.outputs}
        for op in reversed(self.fn.walk()):
            if not op.has_uses() and not any(id(r) in outputs for r in op.results):
                self.fn.erase(op)
        used = {op.attr("name") for op in self.fn.walk("qir.param")}
        for name in [n for n in self.module.params if n not in used]:
            del self.module.params[name]
        verify(self.module)
        return self.module


class _FakeNode:
    """Stands in for an fx node when materializing outputs (only `.name` and `.meta`)."""

    def __init__(self, name: str):
        self.name = name
        self.meta: dict = {}
