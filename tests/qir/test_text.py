"""The text format: print(parse(print(m))) is identical for every .qir file in tests/,
floats round-trip exactly, and errors carry file:line:col with a caret."""

import math
from pathlib import Path

import numpy as np
import pytest

import qir
from qir import Builder, Function, Module, QirSyntaxError, TensorType

TESTS = Path(__file__).resolve().parents[1]


def _cases(path: Path):
    """Split a file like the filecheck collector does; skip cases that must fail."""
    text = path.read_text()
    if "RUN: not " in text:
        return []
    return [c for c in text.split("// -----") if "func @" in c]


QIR_FILES = sorted(TESTS.rglob("*.qir"))


def test_there_are_qir_files():
    assert len(QIR_FILES) >= 3


@pytest.mark.parametrize("path", QIR_FILES, ids=lambda p: str(p.relative_to(TESTS)))
def test_round_trip_every_file(path):
    for case in _cases(path):
        once = qir.print_module(qir.parse(case, str(path)))
        assert qir.print_module(qir.parse(once)) == once


def _module_with_constant(values, elem):
    fn = Function("main", [])
    b = Builder(fn)
    arr = np.array(values, dtype=TensorType((len(values),), elem).dtype)
    c = b.value("qir.constant", [], {"value": arr},
                result_types=[TensorType((len(values),), elem)])
    fn.set_outputs([c])
    m = Module()
    m.add_function(fn)
    return m, arr


@pytest.mark.parametrize("elem", ["f32", "f64", "f16"])
def test_floats_round_trip_exactly(elem):
    rng = np.random.default_rng(0)
    vals = list(rng.standard_normal(20) * 10.0 ** rng.integers(-30, 30, 20))
    vals += [0.1, 1 / 3, -0.0, 1e-45, 3.4028235e38, math.inf, -math.inf]
    if elem == "f16":
        vals = [v for v in vals if abs(v) < 6e4 or math.isinf(v)]
    m, arr = _module_with_constant(vals, elem)
    back = qir.parse(qir.print_module(m)).main.ops[0].attr("value")
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back.view(np.uint8), arr.view(np.uint8))


def test_nan_constant_round_trips():
    m, _ = _module_with_constant([math.nan, 1.0], "f32")
    back = qir.parse(qir.print_module(m)).main.ops[0].attr("value")
    assert math.isnan(back[0]) and back[1] == 1.0


def test_quant_scales_round_trip_exactly():
    rng = np.random.default_rng(1)
    scales = tuple(float(s) for s in rng.uniform(1e-6, 1.0, 8))
    ty = TensorType((8, 2), qir.QuantType("i8", "f32", scales, (0,) * 8, -127, 127, axis=0))
    fn = Function("main", [("w", ty)])
    fn.set_outputs(fn.args)
    m = Module()
    m.add_function(fn)
    back = qir.parse(qir.print_module(m)).main.args[0].type
    assert back == ty


def test_syntax_error_has_location_and_caret():
    text = "func @main(%x: tensor<2xf32>) -> (tensor<2xf32>) {\n  %r = qir.relu %x : tensor<2xf32\n  return %r\n}\n"
    with pytest.raises(QirSyntaxError) as info:
        qir.parse(text, "m.qir")
    err = info.value
    assert (err.filename, err.line, err.col) == ("m.qir", 3, 3)
    assert str(err).splitlines() == ["m.qir:3:3: error: unexpected 'return' (expected '>')",
                                     "    return %r", "    ^"]


def test_unexpected_character_and_eof():
    with pytest.raises(QirSyntaxError, match=r"<string>:1:6: error: unexpected character '\?'"):
        qir.parse("func ?")
    with pytest.raises(QirSyntaxError, match="unexpected end of input"):
        qir.parse("func @main(%x: tensor<2xf32>) -> (tensor<2xf32>) {")


def test_return_type_mismatch():
    with pytest.raises(QirSyntaxError, match="result #0 of @main is declared"):
        qir.parse("func @main(%x: tensor<2xf32>) -> (tensor<3xf32>) {\n  return %x\n}")
