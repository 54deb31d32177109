"""`build(..., tune=Tuning(N))` (backends/tvm/tune.py): meta-schedule per kernel, a
tuned schedule kept only when exact and faster, outcomes cached by kernel shape."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tvm
from tvm import s_tir, te

import frontends
from backends.numpy import run as interpret
from backends.tvm import Tuning, build, tune
from passes import PassContext, PassManager
from qir import QirError
from tests.zoo import ZOO, calibration_batches

TRIALS = 2  # enough to exercise the search; the figures are bench/'s business


def _int8(name: str):
    entry = ZOO[name]
    module = frontends.from_torch(entry.build(), entry.example_inputs(0))
    names = [a.name for a in module.main.args]
    batches = [dict(zip(names, [t.numpy() for t in b])) for b in calibration_batches(name, 4)]
    PassManager("int8", ctx=PassContext(calibration_data=batches, progress=False)).run(module)
    feed = dict(zip(names, [t.numpy() for t in entry.example_inputs(1)]))
    return module, feed


def _scale(n: int, factor: float, dtype: str = "float32", name: str = "y"):
    x = te.placeholder((n,), dtype, name="x")
    y = te.compute((n,), lambda i: x[i] * tvm.tirx.const(factor, dtype), name=name)
    return te.create_prim_func([x, y])


@pytest.fixture(scope="module")
def tuned_cnn(tmp_path_factory):
    cache = tmp_path_factory.mktemp("tune-cache")
    module, feed = _int8("small_cnn")
    tuning = Tuning(trials=TRIALS, cache_dir=cache, search="replay")
    return module, feed, cache, tuning, build(module, "llvm", tune=tuning)


def test_tuned_build_is_bit_exact_and_cached(tuned_cnn):
    module, feed, cache, tuning, compiled = tuned_cnn
    expected = interpret(module, feed)
    got = compiled.run(feed)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
    assert tuning.outcomes and not any(o.cached for o in tuning.outcomes)
    for o in tuning.outcomes:
        assert o.default_us > 0
        if o.applied:
            assert o.tuned_us < o.default_us
    (path,) = cache.iterdir()
    data = json.loads(path.read_text())
    assert data["tvm"] == tvm.__version__ and data["records"]
    assert all(r["trials"] == TRIALS for r in data["records"].values())
    assert "kernels" in tuning.summary()


def test_second_build_tunes_nothing(tuned_cnn, monkeypatch):
    module, feed, cache, first, _ = tuned_cnn
    searched = []
    monkeypatch.setattr(tune, "_search", lambda *a, **k: searched.append(a[-2]))
    again = Tuning(trials=TRIALS, cache_dir=cache, search="replay")
    compiled = build(module, "llvm", tune=again)
    assert searched == [] and all(o.cached for o in again.outcomes)
    assert [o.applied for o in again.outcomes] == [o.applied for o in first.outcomes]
    expected = interpret(module, feed)
    got = compiled.run(feed)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
    # More trials than the cache holds: searched again; a search that finds nothing
    # keeps the schedules found before.
    more = Tuning(trials=TRIALS + 1, cache_dir=cache, search="replay")
    build(module, "llvm", tune=more)
    assert searched and not any(o.cached for o in more.outcomes)
    assert [o.applied for o in more.outcomes] == [o.applied for o in first.outcomes]


def test_key_is_the_shape_not_the_constants():
    key = lambda f: tune.shape_key(tune.tunable(f)[0])  # noqa: E731
    assert key(_scale(64, 3.0)) == key(_scale(64, 5.5))
    assert key(_scale(64, 3.0)) != key(_scale(128, 3.0))
    assert key(_scale(64, 3.0)) != key(_scale(64, 3.0, "float16"))


def test_float_reductions_are_not_tuned():
    x = te.placeholder((8, 64), "float32", name="x")
    k = te.reduce_axis((0, 64), name="k")
    y = te.compute((8,), lambda i: te.sum(x[i, k], axis=k), name="y")
    workload, why = tune.tunable(te.create_prim_func([x, y]))
    assert workload is None and "float" in why
    xi = te.placeholder((8, 64), "int32", name="x")
    yi = te.compute((8,), lambda i: te.sum(xi[i, k], axis=k), name="y")
    workload, why = tune.tunable(te.create_prim_func([xi, yi]))
    assert workload is not None, why


def test_a_schedule_that_changes_results_is_rejected(tmp_path, monkeypatch):
    func = _scale(256, 3.0)
    wrong = s_tir.Schedule(tune.tunable(_scale(256, 4.0))[0])  # computes x * 4
    monkeypatch.setattr(tune, "_search", lambda *a, **k: wrong)
    mod = tvm.IRModule({"scale": func.with_attr("global_symbol", "scale")})
    tuning = Tuning(trials=1, cache_dir=tmp_path, search="replay")
    tune.tune_and_apply(mod, tvm.target.Target({"kind": "llvm"}), tuning)
    (outcome,) = tuning.outcomes
    assert not outcome.applied and "changed the results" in outcome.note


def test_stale_or_broken_cache(tmp_path, monkeypatch):
    target = tvm.target.Target({"kind": "llvm"})
    func = _scale(256, 3.0)
    workload = tune.tunable(func)[0]
    cache = tune.TuneCache(tmp_path, target)
    other = s_tir.Schedule(tune.tunable(_scale(256, 3.0, name="z"))[0])
    loop, = other.get_loops(other.get_sblock("z"))
    other.split(loop, [None, 8])
    cache.store(tune.shape_key(workload), {  # a trace for another kernel: does not apply
        "kernel": "scale", "trials": 5, "default_us": 2.0, "tuned_us": 1.0,
        "trace": tvm.ir.save_json(other.trace.as_json())})
    mod = tvm.IRModule({"scale": func.with_attr("global_symbol", "scale")})
    tuning = Tuning(trials=1, cache_dir=tmp_path, search="replay")
    tune.tune_and_apply(mod, target, tuning)
    (outcome,) = tuning.outcomes
    assert outcome.cached and not outcome.applied and "no longer applies" in outcome.note

    cache.path.write_text("{ not json")
    monkeypatch.setattr(tune, "_search", lambda *a, **k: None)
    tuning = Tuning(trials=1, cache_dir=tmp_path, search="replay")
    tune.tune_and_apply(mod, target, tuning)
    (outcome,) = tuning.outcomes
    assert not outcome.cached and "no valid schedule" in outcome.note
    assert json.loads(cache.path.read_text())["records"]  # rewritten whole


def test_bad_arguments():
    with pytest.raises(QirError, match="at least 1 trial"):
        Tuning(trials=0)
    with pytest.raises(QirError, match="unknown tuning search"):
        Tuning(trials=1, search="grid")
    module, _ = _int8("small_cnn")
    with pytest.raises(QirError, match="llvm builds only"):
        build(module, "cuda", tune=Tuning(trials=1))
