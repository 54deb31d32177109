"""Every declared op has a Relax lowering; unsupported constructs fail readably."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import qir
from backends.tvm import LoweringError, build, relax_lowering, relax_lowerings, to_relax
from qir import QirError
from qir.ir import Location

_COVERAGE = """
import json, qir, backends.tvm
print(json.dumps(sorted(set(qir.all_ops()) - set(backends.tvm.relax_lowerings()))))
"""


def test_every_op_has_a_relax_lowering():
    # In a fresh interpreter: other tests may declare throwaway ops in this process.
    proc = subprocess.run([sys.executable, "-c", _COVERAGE], capture_output=True, text=True,
                          check=True)
    missing = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not missing, f"ops without a Relax lowering: {', '.join(missing)}"


def test_no_lowering_for_undeclared_ops():
    unknown = sorted(set(relax_lowerings()) - set(qir.all_ops()))
    assert not unknown, f"Relax lowerings of undeclared ops: {', '.join(unknown)}"


def test_registering_twice_is_an_error():
    with pytest.raises(QirError, match="qir.relu already has a Relax lowering"):
        relax_lowering("qir.relu")(lambda op, bb, args, params: args[0])


def _module_with(op_name: str, x: np.ndarray, attrs=None, loc=None) -> qir.Module:
    fn = qir.Function("main", [("x", qir.TensorType(x.shape, "f32"))])
    module = qir.Module()
    module.add_function(fn)
    op = qir.Builder(fn).create(op_name, fn.args, attrs)
    if loc is not None:
        op.loc = loc
    fn.set_outputs(op.results)
    return module


def test_an_op_without_lowering_is_named_with_its_location():
    if not qir.registry.has_op("tvmtest.mystery"):
        qir.define_op("tvmtest.mystery", ["input"], infer=lambda op: [op.operands[0].type],
                      doc="an op no backend knows")
    module = _module_with("tvmtest.mystery", np.zeros((2,), np.float32),
                          loc=Location("encoder.block3", "model.py", 41))
    with pytest.raises(LoweringError) as err:
        to_relax(module)
    msg = str(err.value)
    assert "no Relax lowering for 1 op(s)" in msg
    assert "tvmtest.mystery %mystery" in msg and "encoder.block3 at model.py:41" in msg
    assert "@relax_lowering" in msg


def test_unsupported_construct_names_the_op():
    module = _module_with("qir.slice", np.zeros((4,), np.float32),
                          attrs={"axis": 0, "start": 3, "end": 1}, loc=Location("head"))
    with pytest.raises(LoweringError, match=r"qir.slice %slice \(loc head\): an empty slice"):
        build(module, "llvm")


def test_unknown_function_and_target():
    module = _module_with("qir.relu", np.zeros((2,), np.float32))
    with pytest.raises(LoweringError, match="no function @other"):
        to_relax(module, function="other")
    with pytest.raises(QirError, match="unknown target 'tpu'"):
        build(module, "tpu")


def test_to_relax_signature_is_the_functions():
    fn = qir.Function("main", [("x", qir.TensorType((2, 3), "f32")),
                               ("ids", qir.TensorType((4,), "i64"))])
    module = qir.Module()
    module.add_function(fn)
    relu = qir.Builder(fn).create("qir.relu", [fn.args[0]])
    fn.set_outputs([relu.result])
    main = to_relax(module)["main"]
    assert [p.name for p in main.params] == ["x", "ids"]
    assert [str(p.ty.dtype) for p in main.params] == ["float32", "int64"]
    assert [[int(d) for d in p.ty.shape] for p in main.params] == [[2, 3], [4]]
    assert str(main.ret_ty).startswith("T.Tuple(")  # always a tuple, even for one output
