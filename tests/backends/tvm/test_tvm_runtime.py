"""Compiled modules: run, export_library / load round trips, input checking, targets."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm_helpers import zoo_feeds, zoo_modules

import qir
from backends.numpy import run
from backends.tvm import (Compiled, TvmBuildError, build, cuda_target, host_cpu, llvm_target,
                          load, resolve_target)
from qir.types import TensorType


def two_output_module() -> qir.Module:
    fn = qir.Function("main", [("x", TensorType((2, 3), "f32")),
                               ("ids", TensorType((2,), "i64"))])
    module = qir.Module()
    module.add_function(fn)
    b = qir.Builder(fn)
    y = b.create("qir.relu", [fn.args[0]])
    g = b.create("qir.gather", [y.result, fn.args[1]], {"axis": 1})
    fn.set_outputs([g.result, y.result, g.result])  # a value returned twice
    qir.verify(module)
    return module


def test_outputs_are_keyed_like_the_interpreter():
    module = two_output_module()
    feed = {"x": np.arange(-3, 3, dtype=np.float32).reshape(2, 3),
            "ids": np.array([2, 0], np.int64)}
    c = build(module, "llvm")
    got, want = c.run(feed), run(module, feed)
    assert list(got) == list(want) == ["gather", "relu", "gather#2"]
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    # positional inputs, and the interpreter's harmless conversions (f64 -> f32, i32 -> i64)
    got = c.run([feed["x"].astype(np.float64), feed["ids"].astype(np.int32)])
    np.testing.assert_array_equal(got["gather"], want["gather"])


def test_inputs_are_shared_and_outputs_are_owned():
    """Inputs go in through DLPack without a copy (read-only or non-contiguous arrays
    are copied instead); outputs are copies the next call does not overwrite."""
    module = two_output_module()
    c = build(module, "llvm")
    x = np.arange(-3, 3, dtype=np.float32).reshape(2, 3)
    ids = np.array([2, 0], np.int64)
    first = c.run({"x": x, "ids": ids})
    kept = {k: v.copy() for k, v in first.items()}
    frozen = (-x).copy()
    frozen.flags.writeable = False
    second = c.run({"x": frozen, "ids": ids[::-1].copy()})
    for k in kept:
        np.testing.assert_array_equal(first[k], kept[k])  # not overwritten
    want = run(module, {"x": -x, "ids": ids[::-1].copy()})
    for k in want:
        np.testing.assert_array_equal(second[k], want[k])
    np.testing.assert_array_equal(x, np.arange(-3, 3, dtype=np.float32).reshape(2, 3))


def test_bad_inputs_are_reported():
    c = build(two_output_module(), "llvm")
    x, ids = np.zeros((2, 3), np.float32), np.zeros(2, np.int64)
    with pytest.raises(qir.QirError, match="missing inputs \\['ids'\\]"):
        c.run({"x": x})
    with pytest.raises(qir.QirError, match="input 'x' has shape \\[3, 2\\]"):
        c.run({"x": x.T.copy(), "ids": ids})
    with pytest.raises(qir.QirError, match="input 'ids' has dtype float32"):
        c.run({"x": x, "ids": ids.astype(np.float32)})
    with pytest.raises(qir.QirError, match="takes 2 inputs"):
        c.run([x])


def test_export_and_load_round_trip(tmp_path):
    _, module = zoo_modules("mlp")
    c = build(module, "llvm")
    path = c.export_library(tmp_path / "mlp_int8.so")
    loaded = load(path)
    assert isinstance(loaded, Compiled) and loaded.signature == c.signature
    assert loaded.target == "llvm"
    for feed in zoo_feeds("mlp", module):
        want = run(module, feed)
        got = loaded.run(feed)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    # the library is a plain TVM module too: "main" takes the arguments in order and
    # returns a tuple
    feed = zoo_feeds("mlp", module)[0]
    vm = tvm.relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(a) for a in feed.values()])
    np.testing.assert_array_equal(out[0].numpy(), list(run(module, feed).values())[0])


def test_a_library_replaced_at_the_same_path_loads_anew(tmp_path):
    """dlopen matches libraries by path: a file replaced since this process loaded it
    (a recompile into the same OUTDIR) must not come back as the first library."""
    path = tmp_path / "m.so"
    results = []
    for scale in (2.0, 3.0):
        module = qir.parse("func @main(%x: tensor<4xf32>) -> (tensor<4xf32>) {\n"
                           f"  %c = qir.constant {{value = dense<{scale}> : tensor<4xf32>}}"
                           " : tensor<4xf32>\n"
                           "  %y = qir.mul %x, %c : tensor<4xf32>\n  return %y\n}\n")
        build(module, "llvm").export_library(path)
        results.append(next(iter(load(path).run({"x": np.ones(4, np.float32)}).values())))
    np.testing.assert_array_equal(results[0], np.full(4, 2.0, np.float32))
    np.testing.assert_array_equal(results[1], np.full(4, 3.0, np.float32))
    again = next(iter(load(path).run({"x": np.ones(4, np.float32)}).values()))
    np.testing.assert_array_equal(again, results[1])


def test_loading_something_else_fails_readably(tmp_path):
    bogus = tmp_path / "bogus.so"
    bogus.write_bytes(b"not a library")
    with pytest.raises(TvmBuildError, match="cannot load"):
        load(bogus)


def test_targets():
    t = llvm_target()
    assert t.kind.name == "llvm" and int(t.attrs["num-cores"]) >= 1
    assert int(t.attrs["opt-level"]) == 2
    if host_cpu():
        assert str(t.attrs["mcpu"]) == host_cpu()
    assert str(cuda_target("sm_80").attrs["arch"]) == "sm_80"
    assert str(resolve_target("cuda:sm_86").attrs["arch"]) == "sm_86"
    assert resolve_target("cpu").kind.name == "llvm"
    assert resolve_target({"kind": "llvm"}).kind.name == "llvm"
    with pytest.raises(qir.QirError, match="sm_90"):
        cuda_target("90")
