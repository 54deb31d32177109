"""Every op is declared once with documentation; the declarations hold together."""

import pytest

import qir
from qir.registry import REQUIRED


def test_ops_declared_with_docs():
    ops = qir.all_ops()
    assert len(ops) > 60
    for name, opdef in ops.items():
        assert "." in name, f"{name} is not dialect-qualified"
        assert opdef.doc, f"{name} has no doc"
        assert opdef.category in ("float", "quant", "core", "any"), name
        for key, spec in opdef.attrs.items():
            if spec.default is not REQUIRED and spec.default is not None:
                spec.coerce(spec.default)  # defaults are valid values of their kind


def test_double_declaration_rejected():
    with pytest.raises(qir.QirError, match="declared twice"):
        qir.define_op("qir.relu", ["input"], doc="again")


def test_cnn_and_transformer_op_set_present():
    names = set(qir.all_ops())
    for n in ["conv2d", "conv1d", "linear", "matmul", "batch_norm", "layer_norm", "gelu",
              "softmax", "max_pool2d", "avg_pool2d", "add", "reshape", "concat", "split",
              "embedding", "constant", "param", "quantize", "dequantize", "requantize",
              "qconv2d", "qlinear", "qmatmul", "qadd", "qmul",
              "scaled_dot_product_attention"]:
        assert f"qir.{n}" in names
