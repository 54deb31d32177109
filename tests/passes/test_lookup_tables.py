"""fuse-requantize's lookup tables: quantize(f(dequantize(x))) of an 8-bit x becomes
qir.lut with the 256 results, which gives exactly the integers of the float island it
replaces (every stored input value, each function, i8 and u8 inputs, i8 / u8 / i16
results), and llvm computes what the numpy interpreter does."""

from __future__ import annotations

import numpy as np
import pytest

import qir
from backends.numpy import run
from passes import PassManager

ISLANDS = {
    "gelu": ["%f = qir.gelu %d : tensor<{s}xf32>"],
    "gelu_tanh": ['%f = qir.gelu %d {{approximate = "tanh"}} : tensor<{s}xf32>'],
    "silu": ["%f = qir.silu %d : tensor<{s}xf32>"],
    "sigmoid": ["%f = qir.sigmoid %d : tensor<{s}xf32>"],
    "tanh": ["%f = qir.tanh %d : tensor<{s}xf32>"],
    "hardswish": ["%f = qir.hardswish %d : tensor<{s}xf32>"],
    "exp": ["%f = qir.exp %d : tensor<{s}xf32>"],
    "x_sigmoid_x_half": ["%g = qir.sigmoid %d : tensor<{s}xf32>",
                         "%h = qir.mul %d, %g : tensor<{s}xf32>",
                         "%c = qir.constant {{value = dense<0.5> : tensor<f32>}} : tensor<f32>",
                         "%f = qir.mul %h, %c : tensor<{s}xf32>"],
}
TYPES = [("i8:f32, 0.05:-3", "i16:f32, 0.0004"), ("u8:f32, 0.03:128", "i8:f32, 0.02:-5"),
         ("i8:f32, 0.1", "u8:f32, 0.05:10")]


def island(name: str, x_type: str, y_type: str, shape=(4, 64)) -> qir.Module:
    s = "x".join(map(str, shape))
    body = "\n  ".join(line.format(s=s) for line in ISLANDS[name])
    return qir.parse(f"""
func @main(%x: tensor<{s}x!quant.uniform<{x_type}>>) -> (tensor<{s}x!quant.uniform<{y_type}>>) {{
  %d = qir.dequantize %x : tensor<{s}xf32>
  {body}
  %y = qir.quantize %f : tensor<{s}x!quant.uniform<{y_type}>>
  return %y
}}""")


@pytest.mark.parametrize("types", TYPES, ids=["i8-i16", "u8-i8", "i8-u8"])
@pytest.mark.parametrize("name", sorted(ISLANDS))
def test_table_gives_the_islands_integers(name, types):
    from backends.tvm import build

    unfused, fused = island(name, *types), island(name, *types)
    PassManager("fuse-requantize").run(fused)
    assert [op.name for op in fused.main.ops] == ["qir.param", "qir.lut"]
    dtype = fused.main.args[0].type.dtype
    lo = np.iinfo(dtype).min
    x = np.arange(lo, lo + 256).astype(dtype).reshape(4, 64)  # every stored value
    want = run(unfused, [x])["y"]
    np.testing.assert_array_equal(run(fused, [x])["y"], want)
    np.testing.assert_array_equal(build(fused, "llvm").run([x])["y"], want)


def test_lookup_tables_option_keeps_the_islands():
    module = island("gelu", *TYPES[0])
    PassManager("fuse-requantize{lookup-tables=false}").run(module)
    assert "qir.gelu" in [op.name for op in module.main.ops]


@pytest.mark.parametrize("text, message", [
    ("%y = qir.lut %x, %t : tensor<4x!quant.uniform<i8:f32, 0.1>>",
     "the table must have 256 entries"),
])
def test_lut_verifier(text, message):
    src = f"""
func @main(%x: tensor<4x!quant.uniform<i8:f32, 0.1>>, %t: tensor<100x!quant.uniform<i8:f32, 0.1>>) -> (tensor<4x!quant.uniform<i8:f32, 0.1>>) {{
  {text}
  return %y
}}"""
    with pytest.raises(qir.QirError, match=message):
        qir.verify(qir.parse(src))


def test_i16_input_is_not_a_table():
    module = qir.parse("""
func @main(%x: tensor<8x!quant.uniform<i16:f32, 0.001>>) -> (tensor<8x!quant.uniform<i8:f32, 0.01>>) {
  %d = qir.dequantize %x : tensor<8xf32>
  %f = qir.tanh %d : tensor<8xf32>
  %y = qir.quantize %f : tensor<8x!quant.uniform<i8:f32, 0.01>>
  return %y
}""")
    PassManager("fuse-requantize").run(module)
    assert "qir.lut" not in [op.name for op in module.main.ops]
