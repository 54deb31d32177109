"""Imports every built-in pass module (each registers itself) and names the default
pipelines."""

from passes import (calibrate, canonicalize, decompose_attention,  # noqa: F401
                    fold_batchnorm, fuse_activations, fuse_requantize, insert_observers,
                    lower_to_integer, propagate_scales, quantize)
from passes import (bias_correction, dynamic_quant, equalize, fp8,  # noqa: F401,E402
                    kv_cache, mixed_precision, quantize_bias, smoothquant,
                    weight_only)  # methods: docs/methods.md
from passes.registry import PIPELINES

PIPELINES.update({
    "optimize": "canonicalize,fold-batchnorm,fuse-activations,canonicalize",
    "int8": ("canonicalize,fold-batchnorm,fuse-activations,decompose-attention,"
             "insert-observers,calibrate,quantize,propagate-scales,lower-to-integer,"
             "fuse-requantize,canonicalize"),
})

# Methods beyond plain int8 (docs/methods.md).
_FRONT = "canonicalize,fold-batchnorm,fuse-activations"
_TAIL = "propagate-scales,lower-to-integer,fuse-requantize,canonicalize"
PIPELINES.update({
    "w4a16": f"{_FRONT},weight-only{{bits=4,group-size=128}},canonicalize",
    "w8a16": f"{_FRONT},weight-only{{bits=8,group-size=0}},canonicalize",
    "nf4": f"{_FRONT},weight-only{{bits=4,group-size=64,format=nf4}},canonicalize",
    "fp8-e4m3": f"{_FRONT},insert-observers,calibrate,fp8{{format=e4m3}},canonicalize",
    "int8-smooth": f"{_FRONT},decompose-attention,smoothquant,insert-observers,calibrate,quantize,{_TAIL}",
    "int8-dynamic": f"{_FRONT},dynamic-quant,canonicalize",
    "int8-dfq": ("canonicalize,fold-batchnorm,equalize,fuse-activations,decompose-attention,"
                 "insert-observers,"
                 f"calibrate,bias-correction,quantize,{_TAIL}"),
    "int8-qat": ("canonicalize,fuse-activations,propagate-scales,quantize-bias,"
                 "lower-to-integer,fuse-requantize,canonicalize"),
})
