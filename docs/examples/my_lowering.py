"""A new op with its numpy implementation and its TVM lowering, as docs/backends.md walks
through it (tests/backends/tvm/test_tvm_docs.py builds and runs it)."""

import numpy as np
from tvm import relax

from backends.numpy import numpy_impl
from backends.tvm import relax_lowering
from qir import define_op
from qir.ops.common import require_float, same_as_input

define_op("mylib.softsign", ["input"], infer=same_as_input, verify=lambda op: require_float(op),
          doc="x / (1 + |x|).")


@numpy_impl("mylib.softsign")
def softsign(op, x: np.ndarray) -> np.ndarray:
    return (x / (1 + np.abs(x))).astype(x.dtype)


@relax_lowering("mylib.softsign")
def lower_softsign(op, bb: relax.BlockBuilder, args, params):
    x = args[0]  # float32 here even for f16/bf16 tensors (upcast=True, the default)
    one = relax.const(1.0, "float32")
    return relax.op.divide(x, bb.emit(relax.op.add(one, relax.op.abs(x))))
