"""Building one-op (or small) modules and running them with the numpy interpreter."""

from __future__ import annotations

import textwrap

import numpy as np

import qir
from backends.numpy import run
from qir.types import TensorType, elem_from_numpy

Arg = np.ndarray | tuple[np.ndarray, TensorType]


def module_from_text(text: str, params: dict[str, np.ndarray] | None = None) -> qir.Module:
    """Parse, attach parameters and verify."""
    module = qir.parse(textwrap.dedent(text))
    module.params.update(params or {})
    qir.verify(module)
    return module


def one_op_module(name: str, *args: Arg, attrs: dict | None = None,
                  result_types: list[TensorType] | None = None) -> tuple[qir.Module, list]:
    """@main taking one argument per array (typed from the array, or given explicitly as
    (array, type)) and returning the results of a single `name` op."""
    arrays, types = [], []
    for a in args:
        if isinstance(a, tuple):
            arrays.append(a[0])
            types.append(a[1])
        else:
            a = np.asarray(a)
            arrays.append(a)
            types.append(TensorType(a.shape, elem_from_numpy(a.dtype)))
    fn = qir.Function("main", [(f"a{i}", t) for i, t in enumerate(types)])
    module = qir.Module()
    module.add_function(fn)
    op = qir.Builder(fn).create(name, fn.args, attrs, result_types)
    fn.set_outputs(op.results)
    qir.verify(module)
    return module, arrays


def run_op(name: str, *args: Arg, attrs: dict | None = None,
           result_types: list[TensorType] | None = None):
    """Run a single op; one array for a one-result op, else a list."""
    module, arrays = one_op_module(name, *args, attrs=attrs, result_types=result_types)
    outs = list(run(module, arrays).values())
    return outs[0] if len(outs) == 1 else outs


def rand(*shape: int, seed: int = 0, dtype=np.float32, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)
