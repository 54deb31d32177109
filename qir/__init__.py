"""qir: a typed quantization IR for PyTorch models.

The core package: types, ops, the text format, the verifier. It imports none of
frontends/, passes/ or backends/.
"""

from qir.builder import Builder, make_op
from qir.diagnostics import QirError, QirSyntaxError, QirTypeError, VerifyError
from qir.io import load, save
from qir.ir import Function, Location, Module, Op, Value
from qir.parser import parse, parse_file
from qir.printer import print_module
from qir.registry import Attr, OpDef, all_ops, define_op, get_op
from qir.types import QuantType, TensorType
from qir.verifier import verify

__version__ = "0.1.0"

__all__ = [
    "Attr", "Builder", "Function", "Location", "Module", "Op", "OpDef", "QirError",
    "QirSyntaxError", "QirTypeError", "QuantType", "TensorType", "Value", "VerifyError",
    "all_ops", "define_op", "get_op", "load", "make_op", "parse", "parse_file",
    "print_module", "save", "verify", "__version__",
]
