"""The numpy backend: a reference interpreter for qir modules.

    from backends.numpy import run
    outputs = run(module, {"x": x})          # dict: output name -> np.ndarray

Float ops follow PyTorch eager; integer (quantized) ops follow the semantics written in
backends/numpy/quant.py, which every other backend reproduces bit for bit. Op
implementations register with `@numpy_impl("dialect.op")`.
"""

from backends.numpy import conv, core, elementwise, nn, pool, quant, reduce, shape  # noqa: F401
from backends.numpy import methods  # noqa: F401,E402  (ops of docs/methods.md)
from backends.numpy.interpreter import Hook, run
from backends.numpy.quant import dequantize_values, rescale
from backends.numpy.registry import InterpreterError, numpy_impl, numpy_impls
from qir.quant import quantize_values

__all__ = ["Hook", "InterpreterError", "dequantize_values", "numpy_impl", "numpy_impls",
           "quantize_values", "rescale", "run"]
