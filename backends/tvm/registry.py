"""The TVM backend's op table: one Relax lowering per op name, registered with
`@relax_lowering("qir.conv2d")`.

A lowering is `fn(op, bb, args, params) -> relax.Expr | list[relax.Expr]`:

- `op` is the qir op (attributes through `op.attr(key)`, types through
  `op.operands[i].type` / `op.results[i].type`);
- `bb` is the `relax.BlockBuilder` of the function being built: emit every intermediate
  with `bb.emit(...)` / `bb.emit_te(...)` (inside a dataflow block);
- `args` are the Relax values of the operands, in operand order (quantized operands hold
  their storage dtype);
- `params` is the module's parameter table (name -> numpy array).

It returns one Relax expression per result, with exactly the result types' shapes and
storage dtypes. With `upcast=True` (the default) operands of half-precision floats (f16,
bf16) arrive as float32, as the numpy interpreter computes them, and float32 results are
rounded to the result dtype once, afterwards; data-movement and integer lowerings
register with `upcast=False` so that they see the stored dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from qir import QirError
from qir.ir import Op

RelaxLowering = Callable[..., object]


class LoweringError(QirError):
    """A qir construct the TVM backend cannot lower (the message names the op and its
    location)."""


class TvmBuildError(QirError):
    """TVM failed to compile, export or load a lowered module."""


@dataclass(frozen=True)
class Lowering:
    fn: RelaxLowering
    upcast: bool


_LOWERINGS: dict[str, Lowering] = {}


def relax_lowering(op_name: str, *, upcast: bool = True) -> Callable[[RelaxLowering],
                                                                     RelaxLowering]:
    """Register the decorated function as the Relax lowering of `op_name`."""

    def register(fn: RelaxLowering) -> RelaxLowering:
        if op_name in _LOWERINGS:
            old = _LOWERINGS[op_name].fn
            raise QirError(f"op {op_name} already has a Relax lowering "
                           f"({old.__module__}.{old.__name__})")
        _LOWERINGS[op_name] = Lowering(fn, upcast)
        return fn

    return register


def relax_lowerings() -> dict[str, RelaxLowering]:
    """Every registered lowering, by op name (a copy)."""
    _ensure_builtin_lowerings()
    return {name: entry.fn for name, entry in _LOWERINGS.items()}


def get_lowering(op_name: str) -> Lowering | None:
    _ensure_builtin_lowerings()
    return _LOWERINGS.get(op_name)


def unsupported(op: Op, why: str) -> LoweringError:
    """The error a lowering raises for a construct it cannot express (names the op)."""
    from qir.ir import describe_op

    return LoweringError(f"{describe_op(op)}: {why}")


Params = Mapping[str, np.ndarray]


def error_summary(e: BaseException) -> str:
    """The last non-empty line of an exception's text (TVM errors carry long C++
    backtraces before the message)."""
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(e).__name__


def _ensure_builtin_lowerings() -> None:
    import backends.tvm.lowerings  # noqa: F401  (registers the built-in lowerings)
