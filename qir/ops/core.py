"""Core ops: parameters (named module tensors), inline constants, casts, observers."""

from __future__ import annotations

import numpy as np

from qir.diagnostics import QirError
from qir.ops.common import t
from qir.registry import Attr, define_op
from qir.types import SCALAR_TYPES, TensorType

INLINE_CONSTANT_LIMIT = 64  # elements; larger constants live in the module's param table


def _verify_param(op) -> None:
    name = op.attr("name")
    mod = getattr(op.function, "module", None)
    if mod is not None and name in mod.params:
        arr = mod.params[name]
        ty = op.result.type
        if tuple(arr.shape) != ty.shape:
            raise QirError(f"parameter '{name}' has shape {list(arr.shape)} but the op says "
                           f"{list(ty.shape)}")
        if arr.dtype != ty.dtype:
            raise QirError(f"parameter '{name}' is stored as {arr.dtype} but the op's type "
                           f"{ty} needs {ty.dtype}")


define_op("qir.param", [], {"name": Attr("str", doc="key in the module's parameter table"),
                            "prov": Attr("str", "", doc="where a quantized parameter's "
                                         "scales came from (`qir explain` prints it)")},
          verify=_verify_param, category="core",
          doc="A named module parameter (weights, buffers); data lives beside the text.")


def _verify_constant(op) -> None:
    value = op.attr("value")
    ty = op.result.type
    if tuple(value.shape) != ty.shape:
        raise QirError(f"constant value has shape {list(value.shape)}, type says "
                       f"{list(ty.shape)}")


define_op("qir.constant", [], {"value": Attr("tensor", doc="the literal")},
          verify=_verify_constant, category="core",
          doc="A small inline constant tensor (at most "
              f"{INLINE_CONSTANT_LIMIT} elements when printed; larger ones become params).")


def _infer_cast(op):
    return [TensorType(t(op).shape, op.attr("to"))]


def _verify_cast(op) -> None:
    if t(op).is_quantized:
        raise QirError("cast takes a non-quantized tensor; use qir.dequantize")


define_op("qir.cast", ["input"], {"to": Attr("str", choices=SCALAR_TYPES)},
          infer=_infer_cast, verify=_verify_cast, category="any",
          doc="Element type conversion (float->int truncates toward zero, like torch).")

define_op("qir.observe", ["input"],
          {"id": Attr("str", doc="observer id, key of the calibration statistics"),
           "method": Attr("str", "minmax", doc="calibration method that sets min/max"),
           "min": Attr("float?", None, doc="calibrated range, set by the calibrate pass"),
           "max": Attr("float?", None),
           "outlier_ratio": Attr("float?", None, doc="largest per-channel |x| over the "
                                 "median one (last axis), set by calibrate"),
           "dtype": Attr("str", "i8", choices=("i8", "u8", "i16", "f8e4m3", "f8e5m2"),
                         doc="storage chosen for this tensor by insert-observers")},
          infer=lambda op: [t(op)], category="float",
          doc="Identity that marks a tensor to quantize; calibration records its range.")


def constant_array(value) -> np.ndarray | None:
    """The array behind a value defined by qir.constant or qir.param (None otherwise)."""
    op = value.owner
    if op is None:
        return None
    if op.name == "qir.constant":
        return op.attr("value")
    if op.name == "qir.param":
        mod = getattr(op.function, "module", None)
        if mod is not None:
            return mod.params.get(op.attr("name"))
    return None
