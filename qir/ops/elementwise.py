"""Elementwise ops: activations, unary math, binary arithmetic with broadcasting,
comparisons, select. Unary data-preserving ops (relu, clamp) also accept quantized
tensors when the result keeps the input's quantization (scale-preserving)."""

from __future__ import annotations

from qir.diagnostics import QirError
from qir.ops.common import broadcast_shapes, require_float, same_as_input, t
from qir.registry import Attr, define_op
from qir.types import TensorType


def _float_unary(name: str, doc: str, attrs=None, quant_ok: bool = False) -> None:
    def verify(op) -> None:
        if t(op).is_quantized and quant_ok:
            if op.result.type.elem != t(op).elem:
                raise QirError("on a quantized tensor the result keeps the input's "
                               "quantization")
            return
        require_float(op)

    define_op(name, ["input"], attrs, infer=same_as_input, verify=verify, doc=doc,
              category="any" if quant_ok else "float")


_float_unary("qir.relu", "max(x, 0).", quant_ok=True)
_float_unary("qir.clamp", "min(max(x, min), max); relu6 and hardtanh are clamps.",
             {"min": Attr("float?", None), "max": Attr("float?", None)}, quant_ok=True)
_float_unary("qir.leaky_relu", "x if x >= 0 else negative_slope * x.",
             {"negative_slope": Attr("float", 0.01)})
_float_unary("qir.gelu", "x * Phi(x); approximate='tanh' uses the tanh formula.",
             {"approximate": Attr("str", "none", choices=("none", "tanh"))})
_float_unary("qir.silu", "x * sigmoid(x).")
_float_unary("qir.sigmoid", "1 / (1 + exp(-x)).")
_float_unary("qir.tanh", "tanh(x).")
_float_unary("qir.hardswish", "x * relu6(x + 3) / 6.")
_float_unary("qir.hardsigmoid", "relu6(x + 3) / 6.")
_float_unary("qir.elu", "x if x > 0 else alpha * (exp(x) - 1).", {"alpha": Attr("float", 1.0)})
_float_unary("qir.softmax", "exp(x - max) / sum(exp(x - max)) along axis.",
             {"axis": Attr("int", -1)})
_float_unary("qir.log_softmax", "log(softmax(x)) along axis.", {"axis": Attr("int", -1)})
_float_unary("qir.exp", "e^x.")
_float_unary("qir.log", "natural logarithm.")
_float_unary("qir.sqrt", "square root.")
_float_unary("qir.rsqrt", "1 / sqrt(x).")
_float_unary("qir.erf", "the error function.")
_float_unary("qir.reciprocal", "1 / x.")
_float_unary("qir.sin", "sine.")
_float_unary("qir.cos", "cosine.")
# Core ATen's remaining unary math: exact functions (floor, ceil, trunc, round ties to even,
# sign) and library ones (reproducible across backends only to float rounding).
for _name, _doc in [("floor", "largest integer <= x."), ("ceil", "smallest integer >= x."),
                    ("trunc", "x rounded toward zero."),
                    ("round", "x rounded to the nearest integer, ties to even."),
                    ("sign", "-1, 0 or 1 (0 for +-0, NaN for NaN)."),
                    ("tan", "tangent."), ("asin", "arcsine."), ("acos", "arccosine."),
                    ("atan", "arctangent."), ("sinh", "hyperbolic sine."),
                    ("cosh", "hyperbolic cosine."), ("asinh", "inverse hyperbolic sine."),
                    ("acosh", "inverse hyperbolic cosine."),
                    ("atanh", "inverse hyperbolic tangent."), ("expm1", "e^x - 1."),
                    ("log1p", "log(1 + x)."), ("log2", "base-2 logarithm."),
                    ("log10", "base-10 logarithm.")]:
    _float_unary(f"qir.{_name}", _doc)


def _any_unary(name: str, doc: str) -> None:
    def verify(op) -> None:
        if t(op).is_quantized:
            raise QirError(f"{name} takes a non-quantized tensor")

    define_op(name, ["input"], infer=same_as_input, verify=verify, doc=doc, category="any")


_any_unary("qir.neg", "-x.")
_any_unary("qir.abs", "|x|.")


def _infer_binary(op):
    shape = broadcast_shapes(t(op, 0).shape, t(op, 1).shape)
    return [TensorType(shape, t(op, 0).elem)]


def _verify_binary(op) -> None:
    a, b = t(op, 0), t(op, 1)
    if a.is_quantized or b.is_quantized:
        raise QirError(f"{op.name} takes non-quantized tensors; use qir.qadd / qir.qmul")
    if a.elem != b.elem:
        raise QirError(f"operands have different element types: {a} and {b}")


define_op("qir.add", ["lhs", "rhs"], {"clamp_min": Attr("float?", None, doc="fused activation"),
                                       "clamp_max": Attr("float?", None)},
          infer=_infer_binary, verify=_verify_binary, category="any",
          doc="a + b, with numpy broadcasting; then the fused clamp, if any.")
for _name, _doc in [("sub", "a - b"), ("mul", "a * b"),
                    ("div", "a / b (true division for floats)"), ("pow", "a ** b"),
                    ("maximum", "max(a, b)"), ("minimum", "min(a, b)")]:
    define_op(f"qir.{_name}", ["lhs", "rhs"], infer=_infer_binary, verify=_verify_binary,
              doc=_doc + ", with numpy broadcasting.", category="any")


def _verify_float_binary(op) -> None:
    _verify_binary(op)
    require_float(op, 0)


define_op("qir.atan2", ["lhs", "rhs"], infer=_infer_binary, verify=_verify_float_binary,
          doc="atan(a / b) in the quadrant of (b, a), floats, with numpy broadcasting.",
          category="float")
for _name, _doc in [("fmod", "a - b * trunc(a / b) (C's fmod: the sign of a)"),
                    ("remainder", "a - b * floor(a / b) (Python's %: the sign of b)")]:
    define_op(f"qir.{_name}", ["lhs", "rhs"], infer=_infer_binary, verify=_verify_binary,
              doc=_doc + ", with numpy broadcasting; integers give 0 where b is 0.",
              category="float")


def _infer_compare(op):
    return [TensorType(broadcast_shapes(t(op, 0).shape, t(op, 1).shape), "bool")]


for _name, _doc in [("eq", "=="), ("ne", "!="), ("lt", "<"), ("le", "<="), ("gt", ">"),
                    ("ge", ">=")]:
    define_op(f"qir.{_name}", ["lhs", "rhs"], infer=_infer_compare, verify=_verify_binary,
              doc=f"a {_doc} b elementwise, bool result, with broadcasting.", category="any")


def _verify_logical(op) -> None:
    for i in range(len(op.operands)):
        if t(op, i).elem != "bool":
            raise QirError(f"operand #{i} must be bool, got {t(op, i)}")


define_op("qir.logical_and", ["lhs", "rhs"], infer=_infer_compare, verify=_verify_logical,
          doc="a and b (bool), with broadcasting.", category="any")
define_op("qir.logical_or", ["lhs", "rhs"], infer=_infer_compare, verify=_verify_logical,
          doc="a or b (bool), with broadcasting.", category="any")
define_op("qir.logical_not", ["input"], infer=same_as_input, verify=_verify_logical,
          doc="not x (bool).", category="any")


def _infer_where(op):
    shape = broadcast_shapes(t(op, 0).shape, t(op, 1).shape, t(op, 2).shape)
    return [TensorType(shape, t(op, 1).elem)]


def _verify_where(op) -> None:
    if t(op, 0).elem != "bool":
        raise QirError(f"condition must be bool, got {t(op, 0)}")
    if t(op, 1).elem != t(op, 2).elem:
        raise QirError(f"branches have different element types: {t(op, 1)} and {t(op, 2)}")
    if t(op, 1).is_quantized:
        raise QirError("qir.where takes non-quantized tensors")


define_op("qir.where", ["condition", "lhs", "rhs"], infer=_infer_where, verify=_verify_where,
          doc="condition ? a : b elementwise, with broadcasting (masked_fill is a where).",
          category="any")
