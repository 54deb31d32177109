"""Hand-scheduled integer compute kernels for the llvm target (x86 with AVX2).

TVM legalizes `R.matmul` / `R.nn.conv2d` with int32 accumulation to unscheduled TIR
(one scalar loop nest, ~100x slower than a BLAS). The lowerings of qir.qlinear,
qir.qmatmul and qir.qconv1d/2d call the kernels here instead, through `relax.call_tir`
on PrimFuncs built with TE and scheduled with `tvm.s_tir.Schedule`:

- dense.py: y[m, n] = sum_k (x[m, k] - zp) * w[n, k] + bias[n] with constant int8 weights
  packed at compile time, and the batched matmul of two activations (attention);
- conv.py: NCHW convolutions (any stride, dilation, padding, groups; a depthwise kernel
  for groups == channels) with constant int8 OIHW weights packed at compile time.

Every kernel centres its input in int16 (x - zp fits int16 for 8-bit inputs, and for
16-bit inputs whose range allows it) and multiplies pairs of int16 with AVX2's
`vpmaddwd` (i16 x i16 pair sums into i32, exact: no saturation for these operands), so
the int32 accumulator is exactly the numpy interpreter's. Each kernel builder returns
None for what it does not cover (non-constant weights, weights outside int8, another
target); the lowering then falls back to the plain Relax ops.
"""

from backends.tvm.kernels.common import kernel_target

__all__ = ["kernel_target"]
