"""The numpy reference interpreter: runs a function op by op in execution order.

Each op's implementation comes from the numpy registry. Arrays are immutable by
convention (implementations may return views of their operands); an intermediate is
dropped as soon as its last user has run, so peak memory follows the live set rather
than the whole graph. Outputs never alias the caller's inputs or the module's
parameters: those are copied on the way out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from backends.numpy.registry import InterpreterError, get_impl
from qir.ir import describe_op
from qir import QirError
from qir.ir import Function, Module, Op, Value, output_keys
from qir.types import TensorType

Hook = Callable[[Op, list[np.ndarray]], None]

# Inputs converted silently: (given dtype, expected dtype).
_LOSSLESS_ENOUGH = {(np.dtype(np.float64), np.dtype(np.float32)),
                    (np.dtype(np.int32), np.dtype(np.int64))}


def run(module: Module, inputs: Mapping[str, Any] | Sequence[Any], *,
        function: str = "main", hook: Hook | None = None) -> dict[str, np.ndarray]:
    """Run `function` of `module` on `inputs` and return its outputs.

    inputs: a dict keyed by the function's argument names, or a list/tuple in argument
        order. Each must have the argument's shape and numpy dtype (quantized arguments:
        the storage dtype); float64 for an f32 argument and int32 for an i64 argument
        are converted.
    hook: called as hook(op, results) after every op, e.g. by calibration observers; it
        must not modify the arrays.

    Returns a dict in the function's return order keyed by the returned values' names
    (`list(out.values())` is the output list). A value returned more than once gets the
    key `name#i` (i its position among the outputs) after its first occurrence.

    Raises InterpreterError (a QirError) for bad inputs, missing parameter data, ops
    without a numpy implementation, and failures inside an op (naming the op and its
    location). The module is not verified first; run qir.verify() for diagnostics.
    """
    try:
        fn = module.function(function)
    except QirError as e:
        raise InterpreterError(str(e)) from None
    impls = _implementations(fn)
    env: dict[Value, np.ndarray] = {}
    borrowed: list[np.ndarray] = []  # arrays owned by the caller or the module
    for arg, arr in zip(fn.args, _bind_inputs(fn, inputs)):
        env[arg] = arr
        borrowed.append(arr)
    last_use = _last_uses(fn)
    outputs = set(fn.outputs)
    for index, op in enumerate(fn.ops):
        try:
            operands = [env[v] for v in op.operands]
        except KeyError as e:
            raise InterpreterError(f"{describe_op(op)}: operand %{e.args[0].name} has no "
                                   "value (used before its definition? run qir.verify)") from None
        results = _call(impls[op.name], op, operands)
        if op.name in ("qir.param", "qir.constant"):
            borrowed.extend(results)
        for value, arr in zip(op.results, results):
            if value.uses or value in outputs:
                env[value] = arr
        if hook is not None:
            hook(op, results)
        del operands, results
        for value in op.operands:
            if last_use.get(value) == index and value not in outputs:
                env.pop(value, None)
    return _collect_outputs(fn, env, borrowed)


def _implementations(fn: Function) -> dict[str, Callable]:
    """The implementation of every op in `fn`; one error listing all that lack one."""
    impls, missing = {}, []
    for op in fn.ops:
        impl = get_impl(op.name)
        if impl is None:
            missing.append(describe_op(op))
        impls[op.name] = impl
    if missing:
        shown = "\n  ".join(missing[:20]) + ("\n  ..." if len(missing) > 20 else "")
        raise InterpreterError(
            f"no numpy implementation for {len(missing)} op(s) in @{fn.name}:\n  {shown}\n"
            "register one with @numpy_impl(op_name) from backends.numpy")
    return impls


def _describe_arg(fn: Function) -> str:
    return ", ".join(f"{a.name}: {a.type}" for a in fn.args) or "none"


def _bind_inputs(fn: Function, inputs) -> list[np.ndarray]:
    """Inputs in argument order, validated and (only where harmless) converted."""
    names = [a.name for a in fn.args]
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        extra = [str(k) for k in inputs if k not in names]
        if missing or extra:
            parts = []
            if missing:
                parts.append("missing input(s) " + ", ".join(f"'{n}'" for n in missing))
            if extra:
                parts.append("unknown input(s) " + ", ".join(f"'{n}'" for n in extra))
            raise InterpreterError(f"@{fn.name}: {'; '.join(parts)} (arguments: "
                                   f"{_describe_arg(fn)})")
        values = [inputs[n] for n in names]
    elif isinstance(inputs, Sequence) and not isinstance(inputs, (str, bytes)):
        if len(inputs) != len(names):
            raise InterpreterError(f"@{fn.name} takes {len(names)} input(s), got "
                                   f"{len(inputs)} (arguments: {_describe_arg(fn)})")
        values = list(inputs)
    else:
        raise InterpreterError(f"inputs must be a dict keyed by argument name or a list in "
                               f"argument order, got {type(inputs).__name__}")
    return [_check_input(fn, a.name, a.type, v) for a, v in zip(fn.args, values)]


def _check_input(fn: Function, name: str, ty: TensorType, value) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as e:  # noqa: BLE001  (any object numpy cannot read)
        raise InterpreterError(f"input '{name}' of @{fn.name} is not array-like: {e}") from None
    want = ty.dtype
    if arr.dtype != want:
        if (arr.dtype, want) not in _LOSSLESS_ENOUGH:
            raise InterpreterError(f"input '{name}' of @{fn.name} has dtype {arr.dtype}, "
                                   f"expected {want.name} for {ty} (convert it with "
                                   f".astype('{want.name}'))")
        arr = arr.astype(want)
    if arr.shape != ty.shape:
        raise InterpreterError(f"input '{name}' of @{fn.name} has shape {list(arr.shape)}, "
                               f"expected {list(ty.shape)} ({ty})")
    return arr


def _last_uses(fn: Function) -> dict[Value, int]:
    """For each value used by an op: the index of its last user."""
    last: dict[Value, int] = {}
    for index, op in enumerate(fn.ops):
        for v in op.operands:
            last[v] = index
    return last


def _call(impl: Callable, op: Op, operands: list[np.ndarray]) -> list[np.ndarray]:
    """Run one implementation and check its results against the op's result types."""
    try:
        out = impl(op, *operands)
    except QirError as e:
        raise InterpreterError(f"{describe_op(op)}: {e}") from e
    except Exception as e:  # a numpy error on malformed IR, or a bug in an implementation
        raise InterpreterError(f"{describe_op(op)} failed: {type(e).__name__}: {e}") from e
    results = [np.asarray(a) for a in (out if isinstance(out, (list, tuple)) else [out])]
    if len(results) != len(op.results):
        raise InterpreterError(f"{describe_op(op)}: the implementation returned "
                               f"{len(results)} arrays for {len(op.results)} results")
    for value, arr in zip(op.results, results):
        ty = value.type
        if arr.shape != ty.shape or arr.dtype != ty.dtype:
            raise InterpreterError(
                f"{describe_op(op)}: the implementation returned a {arr.dtype} array of "
                f"shape {list(arr.shape)} for %{value.name}: {ty} (wants {ty.dtype})")
    return results


def _collect_outputs(fn: Function, env: dict[Value, np.ndarray],
                     borrowed: list[np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, value in zip(output_keys(v.name for v in fn.outputs), fn.outputs):
        arr = env[value]
        if (key != value.name or not arr.flags.writeable
                or any(np.may_share_memory(arr, b) for b in borrowed)):
            arr = arr.copy()
        out[key] = arr
    return out
