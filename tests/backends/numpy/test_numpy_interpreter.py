"""The interpreter's contract: input binding and validation, outputs, parameters,
hooks, errors that name the op, and freeing of intermediates."""

from __future__ import annotations

import textwrap
import weakref

import numpy as np
import pytest
from numpy_helpers import module_from_text

import qir
from backends.numpy import InterpreterError, run
from qir import QirError
from qir.ir import Location, Op

MLP = """
func @main(%x: tensor<2x4xf32>, %ids: tensor<2xi64>) -> (tensor<2x3xf32>, tensor<2x4xf32>) {
  %w = qir.param {name = "fc.weight"} : tensor<3x4xf32>
  %b = qir.param {name = "fc.bias"} : tensor<3xf32>
  %h = qir.linear %x, %w, %b : tensor<2x3xf32>  loc("fc")
  %r = qir.relu %h : tensor<2x3xf32>  loc("act")
  %g = qir.gather %x, %ids {axis = 0} : tensor<2x4xf32>
  return %r, %g
}
"""


def _mlp(with_params: bool = True) -> qir.Module:
    rng = np.random.default_rng(0)
    params = {"fc.weight": rng.standard_normal((3, 4)).astype(np.float32),
              "fc.bias": rng.standard_normal(3).astype(np.float32)}
    return module_from_text(MLP, params if with_params else None)


def _inputs():
    return {"x": np.arange(8, dtype=np.float32).reshape(2, 4) - 3,
            "ids": np.array([1, -2], dtype=np.int64)}


def test_dict_and_list_inputs_give_the_same_outputs():
    m = _mlp()
    a = run(m, _inputs())
    b = run(m, [_inputs()["x"], _inputs()["ids"]])
    assert list(a) == ["r", "g"]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    w, bias = m.params["fc.weight"], m.params["fc.bias"]
    np.testing.assert_allclose(a["r"], np.maximum(_inputs()["x"] @ w.T + bias, 0), rtol=1e-6)
    np.testing.assert_array_equal(a["g"], _inputs()["x"][[1, 0]])


def test_missing_and_unknown_inputs_are_named():
    m = _mlp()
    with pytest.raises(InterpreterError, match=r"missing input\(s\) 'ids'.*unknown input\(s\) "
                                               r"'y'"):
        run(m, {"x": _inputs()["x"], "y": 1})
    with pytest.raises(InterpreterError, match=r"takes 2 input\(s\), got 1"):
        run(m, [_inputs()["x"]])


def test_wrong_shape_names_the_input():
    with pytest.raises(InterpreterError, match=r"input 'x' of @main has shape \[4, 2\], "
                                               r"expected \[2, 4\]"):
        run(_mlp(), {"x": np.zeros((4, 2), np.float32), "ids": _inputs()["ids"]})


def test_wrong_dtype_names_the_input():
    with pytest.raises(InterpreterError, match="input 'x' of @main has dtype int64, "
                                               "expected float32"):
        run(_mlp(), {"x": np.zeros((2, 4), np.int64), "ids": _inputs()["ids"]})
    with pytest.raises(InterpreterError, match="input 'ids' of @main has dtype float32"):
        run(_mlp(), {"x": _inputs()["x"], "ids": np.zeros(2, np.float32)})


def test_float64_and_int32_inputs_are_converted():
    m = _mlp()
    ref = run(m, _inputs())
    got = run(m, {"x": _inputs()["x"].astype(np.float64),
                  "ids": _inputs()["ids"].astype(np.int32)})
    for k in ref:
        assert got[k].dtype == np.float32
        np.testing.assert_array_equal(got[k], ref[k])


def test_parameter_without_data_is_named():
    with pytest.raises(InterpreterError, match=r"parameter 'fc.weight' has no data: load the "
                                               r"module with qir.load\(\)"):
        run(_mlp(with_params=False), _inputs())


def test_parameter_of_the_wrong_dtype_is_named():
    m = _mlp()
    m.params["fc.bias"] = m.params["fc.bias"].astype(np.float64)
    with pytest.raises(InterpreterError, match="parameter 'fc.bias' holds a float64 array"):
        run(m, _inputs())


def test_saved_module_runs_after_load(tmp_path):
    m = _mlp()
    qir.save(m, tmp_path / "mlp.qir")
    loaded = qir.load(tmp_path / "mlp.qir")
    np.testing.assert_array_equal(run(loaded, _inputs())["r"], run(m, _inputs())["r"])


def test_hook_is_called_once_per_op_with_its_results():
    m = _mlp()
    seen = []
    run(m, _inputs(), hook=lambda op, results: seen.append((op, [r.shape for r in results])))
    assert [op for op, _ in seen] == m.main.ops
    assert [shapes for _, shapes in seen] == [[(3, 4)], [(3,)], [(2, 3)], [(2, 3)], [(2, 4)]]


def test_error_inside_an_op_names_the_op_and_its_location():
    text = """
    func @main(%x: tensor<3xf32>, %i: tensor<2xi64>) -> (tensor<2xf32>) {
      %g = qir.gather %x, %i {axis = 0} : tensor<2xf32>  loc("encoder.pick")
      return %g
    }
    """
    m = qir.parse(textwrap.dedent(text).strip(), "pick.qir")
    with pytest.raises(InterpreterError, match=r"qir.gather %g \(pick.qir:2:3, loc "
                                               r"encoder.pick\): gather index 3 is out of range"):
        run(m, [np.zeros(3, np.float32), np.array([0, 3])])


def test_op_without_implementation_is_reported_before_running():
    m = module_from_text("""
    func @main(%x: tensor<2xf32>) -> (tensor<2xf32>) {
      %y = qir.neg %x : tensor<2xf32>
      return %y
    }
    """)
    fn = m.main
    # An op of a dialect nobody implements (built directly: it needs no declaration).
    odd = Op("mylib.fancy", [fn.ops[0].result], {}, [fn.ops[0].result.type], ["z"],
             Location("blocks.0"))
    fn.append(odd)
    fn.set_outputs([odd.result])
    calls = []
    with pytest.raises(InterpreterError, match=r"no numpy implementation for 1 op\(s\) in "
                                               r"@main:\n  mylib.fancy %z \(loc blocks.0\)"):
        run(m, [np.zeros(2, np.float32)], hook=lambda op, r: calls.append(op))
    assert not calls


def test_errors_are_qir_errors():
    assert issubclass(InterpreterError, QirError)


def test_unknown_function_is_named():
    with pytest.raises(InterpreterError, match="no function @encoder"):
        run(_mlp(), _inputs(), function="encoder")


def test_duplicate_outputs_are_all_returned():
    text = """
    func @main(%x: tensor<2xf32>) -> (tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) {
      %n = qir.neg %x : tensor<2xf32>
      return %n, %x, %n
    }
    """
    x = np.array([1.0, -2.0], np.float32)
    out = run(module_from_text(text), [x])
    assert list(out) == ["n", "x", "n#2"]
    np.testing.assert_array_equal(out["n#2"], -x)
    assert out["n"] is not out["n#2"]
    assert not np.shares_memory(out["x"], x)  # outputs never alias the caller's arrays


def test_outputs_do_not_alias_parameters():
    text = """
    func @main() -> (tensor<2xf32>) {
      %w = qir.param {name = "w"} : tensor<2xf32>
      %r = qir.reshape %w {shape = [2]} : tensor<2xf32>
      return %r
    }
    """
    m = module_from_text(text, {"w": np.ones(2, np.float32)})
    out = run(m, {})
    out["r"][0] = 5
    assert m.params["w"][0] == 1


def test_intermediates_are_freed_after_their_last_use():
    text = """
    func @main(%x: tensor<1000xf32>) -> (tensor<1000xf32>) {
      %a = qir.exp %x : tensor<1000xf32>
      %b = qir.neg %a : tensor<1000xf32>
      %c = qir.neg %b : tensor<1000xf32>
      %d = qir.neg %c : tensor<1000xf32>
      return %d
    }
    """
    refs = {}
    alive_at = {}

    def hook(op, results):
        refs[op.result.name] = weakref.ref(results[0])
        alive_at[op.result.name] = {k: r() is not None for k, r in refs.items()}

    run(module_from_text(text), [np.zeros(1000, np.float32)], hook=hook)
    # When %c is computed, %a (last used by %b) is already gone; %b is still an operand.
    assert alive_at["c"] == {"a": False, "b": True, "c": True}
    assert alive_at["d"]["b"] is False


def test_constant_and_observe():
    text = """
    func @main(%x: tensor<3xf32>) -> (tensor<3xf32>) {
      %c = qir.constant {value = dense<[1.5, -2.0, 0.25]> : tensor<3xf32>} : tensor<3xf32>
      %o = qir.observe %x {id = "act0"} : tensor<3xf32>
      %y = qir.mul %o, %c : tensor<3xf32>
      return %y
    }
    """
    x = np.array([2.0, 3.0, 4.0], np.float32)
    observed = {}

    def hook(op, results):
        if op.name == "qir.observe":
            observed[op.attr("id")] = results[0].copy()

    out = run(module_from_text(text), [x], hook=hook)
    np.testing.assert_array_equal(out["y"], [3.0, -6.0, 1.0])
    np.testing.assert_array_equal(observed["act0"], x)


def test_quantized_argument_takes_its_storage_dtype():
    text = """
    func @main(%q: tensor<2x!quant.uniform<i8:f32, 0.5:1>>) -> (tensor<2xf32>) {
      %x = qir.dequantize %q : tensor<2xf32>
      return %x
    }
    """
    m = module_from_text(text)
    np.testing.assert_array_equal(run(m, [np.array([3, -1], np.int8)])["x"], [1.0, -1.0])
    with pytest.raises(InterpreterError, match="input 'q' of @main has dtype float32, "
                                               "expected int8"):
        run(m, [np.array([3.0, -1.0], np.float32)])
