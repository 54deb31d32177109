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


# --- the readers of files a user hands qir: .npz arrays, an OUTDIR's manifest ---------------


def _valid_npz() -> bytes:
    import io

    import numpy as np

    from qir.io import write_npz

    buf = io.BytesIO()
    write_npz({"x": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
               "ids": np.array([[1, 2, 3]], np.int64)}, buf)
    return buf.getvalue()


VALID_NPZ = _valid_npz()


@st.composite
def damaged_bytes(draw, seed: bytes):
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "zero"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "truncate":
            del data[pos:]
        elif kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif data:
            data[pos:pos + 8] = bytes(min(8, len(data) - pos))
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_bytes(VALID_NPZ))
def test_damaged_npz_is_a_qir_error(tmp_path_factory, data):
    """qir.io.read_npz, the one reader of every .npz (inputs, calibration data, weights):
    a damaged archive reads or raises a QirError naming the file, nothing else."""
    from qir import QirError
    from qir.io import read_npz

    path = tmp_path_factory.mktemp("npz") / "data.npz"
    path.write_bytes(data)
    try:
        arrays = read_npz(path, "inputs")
    except QirError as e:
        assert str(path) in str(e)
        return
    assert all(hasattr(a, "dtype") for a in arrays.values())


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**40) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3), max_leaves=6)


@st.composite
def damaged_manifest(draw):
    import json

    man = {"format": "qir-compiled/2", "target": "llvm", "files": {
        "model.so": {"bytes": 5, "sha256": "0" * 64}}, "versions": {"qir": "0.1.0"},
        "cpu": {"mcpu": "x", "requires": ["avx2"]}}
    for _ in range(draw(st.integers(1, 3))):
        files = man.get("files")
        where = draw(st.sampled_from([man, files, man.get("versions"), man.get("cpu"),
                                      files.get("model.so") if isinstance(files, dict)
                                      else None]))
        if not isinstance(where, dict):
            continue
        key = draw(st.sampled_from(sorted(where) + ["format", "target", "model.so",
                                                    "bytes", "requires", "new"]))
        where[key] = draw(JSON_VALUES)
    text = json.dumps(man)
    if draw(st.booleans()):
        text = draw(damaged_bytes(text.encode())).decode("utf-8", "replace")
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_manifest())
def test_damaged_manifest_is_a_qir_error(tmp_path_factory, text):
    """qir.cli.artifact.read_manifest and verify on a manifest with wrong types, missing
    keys or damaged bytes: a QirError, or (when it still says what the files are) the
    files checked against it. Never a KeyError or TypeError."""
    from qir import QirError
    from qir.cli.artifact import read_manifest, verify

    outdir = tmp_path_factory.mktemp("outdir")
    (outdir / "manifest.json").write_text(text)
    (outdir / "model.so").write_bytes(b"12345")
    try:
        man = read_manifest(str(outdir))
        for backend in ("llvm", "numpy"):
            verify(str(outdir), man, backend, ("model.so",))
    except QirError as e:
        assert str(e)
