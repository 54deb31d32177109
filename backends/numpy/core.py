"""Core ops: parameters, inline constants, casts and calibration observers."""

from __future__ import annotations

import numpy as np

from backends.numpy.common import upcast
from backends.numpy.registry import InterpreterError, numpy_impl


@numpy_impl("qir.param")
def param(op) -> np.ndarray:
    """`module.params[name]`, checked against the op's type."""
    name = op.attr("name")
    module = op.function.module if op.function is not None else None
    params = module.params if module is not None else {}
    if name not in params:
        raise InterpreterError(
            f"parameter '{name}' has no data: load the module with qir.load() so its .npz "
            f"sidecar is read (or set module.params['{name}'])")
    arr = np.asarray(params[name])
    ty = op.result.type
    if arr.shape != ty.shape or arr.dtype != ty.dtype:
        raise InterpreterError(
            f"parameter '{name}' holds a {arr.dtype} array of shape {list(arr.shape)}, but "
            f"the op declares {ty} ({ty.dtype} of shape {list(ty.shape)})")
    return arr


@numpy_impl("qir.constant")
def constant(op) -> np.ndarray:
    return np.asarray(op.attr("value")).astype(op.result.type.dtype, copy=False)


@numpy_impl("qir.cast")
def cast(op, x: np.ndarray) -> np.ndarray:
    """numpy's astype, which matches torch's .to(): float -> int truncates toward zero,
    int -> narrower int wraps, anything -> bool is `!= 0`, f32 -> bf16/fp8 rounds to
    nearest even. Half floats go through f32 first (exact)."""
    to = op.result.type.dtype
    if to == np.bool_:
        return upcast(x) != 0
    if to.kind in "iu" and x.dtype.kind not in "iub":
        x = upcast(x)
    with np.errstate(invalid="ignore", over="ignore"):
        return x.astype(to)


@numpy_impl("qir.observe")
def observe(op, x: np.ndarray) -> np.ndarray:
    """Identity: calibration reads the value through the interpreter's hook."""
    return x
