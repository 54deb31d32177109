"""Mutated valid IR fed to the parser and verifier: only QirSyntaxError and VerifyError
may escape — never a lark exception, an IndexError, a KeyError..."""

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qir
from qir import QirSyntaxError, VerifyError

TESTS = Path(__file__).resolve().parents[1]

SEED_TEXTS = [
    """!a8 = !quant.uniform<i8:f32, 0.0235:-3>
!w8 = !quant.uniform<i8<-127:127>:f32:0, {0.011, 0.009, 0.013}>
func @main(%x: tensor<1x3x8x8xf32>, %b: tensor<3xi32>) -> (tensor<1x3x6x6x!a8>, tensor<1x3xf32>) {
  %xq = qir.quantize %x : tensor<1x3x8x8x!a8>  loc("input")
  %w = qir.param {name = "conv1.weight"} : tensor<3x3x3x3x!w8>
  %c = qir.qconv2d %xq, %w, %b {stride = [1, 1], padding = [0, 0, 0, 0]} : tensor<1x3x6x6xi32>  loc("conv1", "model.py":12)
  %r = qir.requantize %c {multiplier = [1073741824], shift = [-3], input_zp = 0, output_zp = -3, clamp_min = -3, clamp_max = 127} : tensor<1x3x6x6x!a8>
  %f = qir.dequantize %r : tensor<1x3x6x6xf32>
  %m = qir.reduce_mean %f {axes = [2, 3]} : tensor<1x3xf32>
  return %r, %m
}
""",
    """func @main(%q: tensor<2x4x8xf32>, %k: tensor<2x4x8xf32>, %mask: tensor<4x4xbool>) -> (tensor<2x4x8xf32>) {
  %a = qir.scaled_dot_product_attention %q, %k, %k, %mask : tensor<2x4x8xf32>
  %c = qir.constant {value = dense<[1.5, -2.0]> : tensor<2xf32>} : tensor<2xf32>
  %s0, %s1 = qir.split %a {axis = -1, sizes = [4, 4]} : tensor<2x4x4xf32>, tensor<2x4x4xf32>
  %j = qir.concat %s1, %s0 {axis = 2} : tensor<2x4x8xf32>
  %g = qir.gelu %j {approximate = "tanh"} : tensor<2x4x8xf32>
  %l = qir.layer_norm %g {eps = 1e-05} : tensor<2x4x8xf32>
  %p = qir.permute %l {perm = [0, 2, 1]} : tensor<2x8x4xf32>
  %t = qir.permute %p {perm = [0, 2, 1]} : tensor<2x4x8xf32>
  return %t
}
""",
]
for path in sorted(TESTS.rglob("*.qir")):
    text = path.read_text()
    if "RUN: not" not in text:
        SEED_TEXTS.extend(c for c in text.split("// -----") if "func @" in c)

OP_NAMES = sorted(qir.all_ops())
TOKENS = ["%x", "%r", "%w", "{", "}", "(", ")", "<", ">", ",", ":", "=", "x", "0", "-1",
          "128", "1e400", "nan", "-inf", "0.0", "f32", "i8", "u4", "bool", "qir.relu",
          "qir.conv2d", "qir.split", "qir.requantize", "!q0", "!a8", "dense<[1]>",
          "tensor<", "loc(", '"', "axis", "[", "]", "\n", "return", "func", "@main"]


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(SEED_TEXTS))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "dup_line", "swap",
                                     "dim", "op"]))
        if kind == "delete":
            n = draw(st.integers(1, 12))
            text = text[:pos] + text[pos + n:]
        elif kind == "insert":
            text = text[:pos] + draw(st.sampled_from(TOKENS)) + text[pos:]
        elif kind == "replace":
            n = draw(st.integers(1, 6))
            text = text[:pos] + draw(st.sampled_from(TOKENS)) + text[pos + n:]
        elif kind == "dup_line":
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            text = "\n".join(lines)
        elif kind == "dim":  # change one dimension inside a tensor type
            dims = list(re.finditer(r"(?<=[<x])\d+(?=x)", text))
            if dims:
                m = dims[draw(st.integers(0, len(dims) - 1))]
                text = text[:m.start()] + str(draw(st.integers(0, 9))) + text[m.end():]
        elif kind == "op":  # swap an op name for another declared op
            names = list(re.finditer(r"qir\.[a-z_0-9]+", text))
            if names:
                m = names[draw(st.integers(0, len(names) - 1))]
                text = text[:m.start()] + draw(st.sampled_from(OP_NAMES)) + text[m.end():]
        else:
            nums = list(re.finditer(r"-?\d+", text))
            if nums:
                m = nums[draw(st.integers(0, len(nums) - 1))]
                text = text[:m.start()] + str(draw(st.integers(-300, 300))) + text[m.end():]
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_only_qir_errors_escape(text):
    try:
        module = qir.parse(text, "fuzz.qir")
        qir.verify(module)
    except (QirSyntaxError, VerifyError) as e:
        assert str(e)  # and it prints
        return
    # Valid: it must also round-trip.
    once = qir.print_module(module)
    assert qir.print_module(qir.parse(once)) == once
