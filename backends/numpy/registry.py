"""The numpy backend's op table: one implementation per op name, registered with
`@numpy_impl("qir.conv2d")`.

An implementation is `fn(op, *operand_arrays) -> np.ndarray | list[np.ndarray]`. It reads
attributes with `op.attr(key)` (declared defaults included) and result types from
`op.results[i].type`, must not modify its operands in place (arrays are shared between
ops), and returns arrays with exactly the result types' shapes and numpy dtypes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from qir import QirError
from qir.ir import Op

NumpyImpl = Callable[..., "np.ndarray | list[np.ndarray]"]

_IMPLS: dict[str, NumpyImpl] = {}


class InterpreterError(QirError):
    """The numpy interpreter cannot run a module: bad inputs, missing parameter data,
    an op without an implementation, or an op whose semantics cannot be honoured."""


def numpy_impl(op_name: str) -> Callable[[NumpyImpl], NumpyImpl]:
    """Register the decorated function as the numpy implementation of `op_name`."""

    def register(fn: NumpyImpl) -> NumpyImpl:
        if op_name in _IMPLS:
            raise QirError(f"op {op_name} already has a numpy implementation "
                           f"({_IMPLS[op_name].__module__}.{_IMPLS[op_name].__name__})")
        _IMPLS[op_name] = fn
        return fn

    return register


def numpy_impls() -> dict[str, NumpyImpl]:
    """Every registered implementation, by op name (a copy)."""
    _ensure_builtin_impls()
    return dict(_IMPLS)


def get_impl(op_name: str) -> NumpyImpl | None:
    _ensure_builtin_impls()
    return _IMPLS.get(op_name)




def _ensure_builtin_impls() -> None:
    import backends.numpy  # noqa: F401  (its __init__ registers the built-in implementations)
