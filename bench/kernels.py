"""Micro-benchmark of the TVM integer kernels (backends/tvm/kernels) against their peers.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.kernels
    .venv/bin/python -m bench.kernels --only dense --repeat 50

For each op shape it prints the median milliseconds, and the ratio to torch fp32, of:
torch fp32 (F.linear / F.conv2d), torch int8 (the quantized x86 engine: quint8 in and
out, per-channel qint8 weights), the qir op (qlinear / qconv2d, int8 in, int32 out) built
for llvm with the plain Relax lowering, and the same op through the kernel. Everything
runs with 2 threads (--threads; TVM's pool takes TVM_NUM_THREADS, set from it unless
already set).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from bench.run import median_ms

THREADS = 2


@dataclass(frozen=True)
class Dense:
    m: int
    n: int
    k: int
    label: str = ""

    def __str__(self) -> str:
        return f"dense {self.m}x{self.n}x{self.k}" + (f" ({self.label})" if self.label else "")


@dataclass(frozen=True)
class Conv:
    c: int
    hw: int
    o: int
    kernel: int
    stride: int = 1
    groups: int = 1
    label: str = ""

    def __str__(self) -> str:
        return (f"conv 1x{self.c}x{self.hw}x{self.hw}->{self.o} {self.kernel}x{self.kernel}"
                f" s{self.stride}" + (f" g{self.groups}" if self.groups > 1 else "")
                + (f" ({self.label})" if self.label else ""))

    @property
    def padding(self) -> int:
        return self.kernel // 2


CASES = [
    Dense(256, 768, 768),
    Dense(32, 64, 64, "zoo: transformer qkv/out"),
    Dense(32, 192, 64, "zoo: gpt c_attn"),
    Dense(32, 256, 64, "zoo: ffn in, lm_head"),
    Dense(32, 64, 256, "zoo: ffn out"),
    Dense(1, 64, 2048, "zoo: small_cnn fc1"),
    Conv(64, 56, 64, 3),
    Conv(64, 56, 256, 1, label="1x1"),
    Conv(128, 28, 128, 3, groups=128, label="depthwise"),
    Conv(64, 56, 128, 3, stride=2, label="strided"),
]


# --- the qir op, built two ways -------------------------------------------------------------


def qir_module(case, x: np.ndarray, w: np.ndarray, bias: np.ndarray):
    """@main(x) computing the case's integer op (weights and bias are params)."""
    import qir
    from qir.types import QuantType, TensorType

    x_ty = TensorType(x.shape, QuantType("i8", "f32", (0.05,), (3,)))
    w_ty = TensorType(w.shape, QuantType("i8", "f32", (0.01,) * w.shape[0], (0,) * w.shape[0],
                                         -127, 127, 0))
    fn = qir.Function("main", [("x", x_ty)])
    module = qir.Module()
    module.add_function(fn)
    module.params.update(w=w, b=bias)
    b = qir.Builder(fn)
    wv = b.create("qir.param", [], {"name": "w"}, [w_ty]).result
    bv = b.create("qir.param", [], {"name": "b"}, [TensorType(bias.shape, "i32")]).result
    if isinstance(case, Dense):
        op = b.create("qir.qlinear", [fn.args[0], wv, bv], {})
    else:
        op = b.create("qir.qconv2d", [fn.args[0], wv, bv], {
            "stride": [case.stride] * 2, "padding": [case.padding] * 4,
            "groups": case.groups})
    fn.set_outputs(op.results)
    qir.verify(module)
    return module


def tvm_runner(module, x: np.ndarray, kernels: bool):
    """A no-argument callable running the module built for llvm, with or without the
    kernels (without: the plain Relax lowering, as before backends/tvm/kernels)."""
    import tvm
    from tvm import relax

    from backends.tvm import llvm_target, to_relax

    target = llvm_target()
    with target if kernels else contextlib.nullcontext():  # kernels see the target
        mod = to_relax(module)
    with target:
        mod = relax.get_pipeline("zero")(mod)
    vm = relax.VirtualMachine(tvm.compile(mod, target), tvm.cpu())
    xt = tvm.runtime.tensor(x)
    return lambda: vm["main"](xt)


# --- torch -------------------------------------------------------------------------------------


def torch_runners(case, x: np.ndarray, w: np.ndarray, bias: np.ndarray):
    """(fp32 runner, int8 runner) for the case in torch."""
    import torch
    import torch.nn.functional as F

    xf = torch.from_numpy(x.astype(np.float32))
    wf = torch.from_numpy(w.astype(np.float32))
    bf = torch.from_numpy(bias.astype(np.float32))
    dense = isinstance(case, Dense)
    if dense:
        fp32 = lambda: F.linear(xf, wf, bf)
    else:
        fp32 = lambda: F.conv2d(xf, wf, bf, case.stride, case.padding, 1,
                                case.groups)
    torch.backends.quantized.engine = "x86"
    xq = torch.quantize_per_tensor(xf, 1.0, 128, torch.quint8)
    wq = torch.quantize_per_channel(wf, torch.ones(w.shape[0], dtype=torch.float64),
                                    torch.zeros(w.shape[0], dtype=torch.int64), 0, torch.qint8)
    if dense:
        packed = torch.ops.quantized.linear_prepack(wq, bf)
        int8 = lambda: torch.ops.quantized.linear(xq, packed, 64.0, 128)
    else:
        packed = torch.ops.quantized.conv2d_prepack(wq, bf, [case.stride] * 2,
                                                    [case.padding] * 2, [1, 1], case.groups)
        int8 = lambda: torch.ops.quantized.conv2d(xq, packed, 64.0, 128)
    return fp32, int8


# --- driver ------------------------------------------------------------------------------------


def operands(case) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    if isinstance(case, Dense):
        x_shape, w_shape, n = (case.m, case.k), (case.n, case.k), case.n
    else:
        x_shape = (1, case.c, case.hw, case.hw)
        w_shape = (case.o, case.c // case.groups, case.kernel, case.kernel)
        n = case.o
    x = rng.integers(-128, 128, x_shape).astype(np.int8)
    w = rng.integers(-127, 128, w_shape).astype(np.int8)
    return x, w, rng.integers(-1000, 1000, n).astype(np.int32)


def measure(case, repeat: int) -> dict[str, float | None]:
    import torch

    x, w, bias = operands(case)
    fp32, int8 = torch_runners(case, x, w, bias)
    with torch.no_grad():
        out = {"torch fp32": median_ms(fp32, repeat, 3),
               "torch int8": median_ms(int8, repeat, 3)}
    module = qir_module(case, x, w, bias)
    kernel = tvm_runner(module, x, kernels=True)
    out["qir kernel"] = median_ms(kernel, repeat, 3)
    plain = tvm_runner(module, x, kernels=False)
    out["qir plain Relax"] = median_ms(plain, max(3, repeat // 10), warmup=1)
    assert np.array_equal(kernel()[0].numpy(), plain()[0].numpy()), f"{case}: kernel != plain"
    return out


COLUMNS = ["torch fp32", "torch int8", "qir plain Relax", "qir kernel"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--only", choices=["dense", "conv"], help="one family of cases")
    p.add_argument("--threads", type=int, default=THREADS)
    args = p.parse_args(argv)
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    warnings.filterwarnings("ignore")  # torch's deprecation of quantized tensors
    import torch

    torch.set_num_threads(args.threads)
    cases = [c for c in CASES if args.only is None
             or isinstance(c, Dense if args.only == "dense" else Conv)]
    print(f"{'case':<44}" + "".join(f"{c:>17}" for c in COLUMNS) + "   (ms, x torch fp32)")
    for case in cases:
        ms = measure(case, args.repeat)
        ref = ms["torch fp32"]
        cells = "".join(f"{ms[c]:>9.3f} ({ms[c] / ref:>4.2f})" for c in COLUMNS)
        print(f"{case!s:<44}{cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
