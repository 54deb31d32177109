"""Imports every built-in pass module (each registers itself) and names the default
pipelines."""

from passes import (calibrate, canonicalize, fold_batchnorm, fuse_activations,  # noqa: F401
                    fuse_requantize, insert_observers, lower_to_integer, propagate_scales,
                    quantize)
from passes.registry import PIPELINES

PIPELINES.update({
    "optimize": "canonicalize,fold-batchnorm,fuse-activations,canonicalize",
    "int8": ("canonicalize,fold-batchnorm,fuse-activations,insert-observers,calibrate,"
             "quantize,propagate-scales,lower-to-integer,fuse-requantize,canonicalize"),
})
