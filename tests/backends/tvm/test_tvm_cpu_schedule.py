"""The llvm build schedules every kernel (backends/tvm/cpu.py): a kernel left unscheduled
runs scalar and single-threaded, tens of times slower, with no error anywhere, so the
zoo's int8 models are checked kernel by kernel. Bit-exactness of the scheduled builds is
test_tvm_zoo.py's business."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import te
from tvm import tirx as tir

import frontends
from backends.tvm import cpu
from backends.tvm.compiler import fuse, schedule_llvm
from backends.tvm.lower import to_relax
from backends.tvm.target import resolve_target
from passes import PassContext, PassManager
from tests.zoo import ZOO, calibration_batches


def _int8_module(name: str):
    entry = ZOO[name]
    module = frontends.from_torch(entry.build(), entry.example_inputs(0))
    names = [a.name for a in module.main.args]
    batches = [dict(zip(names, [t.numpy() for t in b])) for b in calibration_batches(name, 4)]
    PassManager("int8", ctx=PassContext(calibration_data=batches, progress=False)).run(module)
    return module


@pytest.mark.parametrize("name", ["resnet_style", "mobilenet_style", "bert_style",
                                  "gpt_style"])
def test_every_kernel_of_the_zoo_is_scheduled(name):
    tgt = resolve_target("llvm")
    with tgt:
        mod = to_relax(_int8_module(name))
    mod, _ = fuse(mod, tgt)
    mod, schedule = schedule_llvm(mod, tgt)
    assert schedule.unscheduled == {}
    prims = [f for _, f in mod.functions_items() if isinstance(f, tir.PrimFunc)]
    assert prims and all(int(f.attrs.get("tirx.is_scheduled", 0)) == 1 for f in prims)
    assert any("T.vectorized" in f.script() for f in prims)


def _schedule(compute, *shapes):
    args = [te.placeholder(s, "float32", name=f"a{i}") for i, s in enumerate(shapes)]
    with resolve_target("llvm"):
        return cpu.schedule_kernel(te.create_prim_func(args + [compute(*args)]))


def test_elementwise_chain_is_inlined_vectorised_and_parallel_when_big():
    def chain(a):
        b = te.compute(a.shape, lambda *i: a(*i) * 2.0, name="b")
        return te.compute(a.shape, lambda *i: b(*i) + 1.0, name="c")

    small = _schedule(chain, (4, 64)).script()
    assert "T.vectorized(16)" in small.replace("T.int64(16)", "16")
    assert "T.parallel" not in small and '"b"' not in small  # inlined, one thread
    big = _schedule(chain, (512, 1024)).script()
    assert "T.parallel" in big


def test_a_value_read_twice_is_not_inlined():
    """x -> x * x repeated: inlining every step would double the expression each time
    (2^24 loads); only small values are copied, so the kernel stays small."""
    def squarings(a):
        def square(x, k):
            return te.compute(a.shape, lambda i: x[i] * x[i], name=f"sq{k}")

        x = a
        for k in range(24):
            x = square(x, k)
        return x

    text = _schedule(squarings, (64,)).script()
    assert len(text) < 20000 and text.count("T.sblock(") >= 3


def test_softmax_rows_keep_their_sequential_sums():
    def softmax(a):
        m = te.compute((a.shape[0],), lambda i: te.max(a[i, k := te.reduce_axis(
            (0, a.shape[1]), "k")], axis=k), name="m")
        e = te.compute(a.shape, lambda i, j: tir.exp(a[i, j] - m[i]), name="e")
        r = te.reduce_axis((0, a.shape[1]), "r")
        s = te.compute((a.shape[0],), lambda i: te.sum(e[i, r], axis=r), name="s")
        return te.compute(a.shape, lambda i, j: e[i, j] / s[i], name="y")

    func = _schedule(softmax, (8, 128))
    text = func.script()
    assert "T.vectorized" in text
    a = np.random.default_rng(0).standard_normal((8, 128)).astype(np.float32)
    lib = tvm.compile(tvm.IRModule({"main": func}), target=resolve_target("llvm"))
    out = tvm.runtime.tensor(np.zeros_like(a))
    lib(tvm.runtime.tensor(a), out)
    e = np.exp(a - a.max(1, keepdims=True))
    np.testing.assert_allclose(out.numpy(), e / e.sum(1, keepdims=True), rtol=1e-5)


def test_a_value_read_through_shifted_windows_is_computed_once_per_element():
    """RoPE's rotate_half reads a value at j and j +- half: computed chunk by chunk under
    the output's loops, each chunk would recompute a window around it (33 values per 16,
    66x over in a Llama layer). Such a value is computed whole, each element once."""
    from tvm import s_tir

    from backends.tvm.cpu import _iterations, default_schedule

    x = te.placeholder((64, 128), "float32", name="x")

    def heavy(v):  # too large to copy into both reads (cpu.SMALL_EXPR)
        for c in (1.5, 0.25, 3.0, 0.75, 2.0, 1.25, 0.5, 4.0):
            v = v * tir.const(c, "float32") + tir.const(c / 3, "float32")
        return v

    t = te.compute((64, 128), lambda i, j: heavy(x[i, j]), name="t")
    y = te.compute((64, 128), lambda i, j: t[i, j] + tir.if_then_else(
        j < 64, -t[i, j + 64], t[i, j - 64]), name="y")
    with resolve_target("llvm"):
        scheduled = default_schedule(te.create_prim_func([x, y]))
    sch = s_tir.Schedule(scheduled)
    names = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    assert "t" in names  # kept, not inlined twice
    assert _iterations(sch, sch.get_sblock("t")) <= 64 * 128
