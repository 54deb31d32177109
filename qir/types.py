"""Tensor types of the IR, quantized element types in MLIR's `!quant.uniform` spelling.

A `TensorType` is a static shape plus an element type. The element type is either a
plain scalar name (`f32`, `i8`, ...) or a `QuantType`, which carries everything needed
to map stored integers back to reals: real = scale * (q - zero_point) for the uniform
(linear) types, real = levels[q] * scale for codebook (non-linear) types,
`!quant.codebook<...>`: the stored integer indexes a table of levels (NF4's 16 normal
quantiles, or a table a pass learned), scaled per tensor, channel or group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qir.diagnostics import QirTypeError

# Scalar element types and the numpy dtype that stores them. i4/u4 are stored one value
# per int8/uint8; fp8 types use ml_dtypes (imported lazily, only when such data appears).
FLOAT_TYPES = ("f64", "f32", "f16", "bf16", "f8e4m3", "f8e5m2")
INT_TYPES = ("i64", "i32", "i16", "i8", "u8", "i4", "u4")
SCALAR_TYPES = FLOAT_TYPES + INT_TYPES + ("bool",)

# Inclusive integer ranges of the integer storage types.
INT_RANGES = {
    "i64": (-(2**63), 2**63 - 1),
    "i32": (-(2**31), 2**31 - 1),
    "i16": (-(2**15), 2**15 - 1),
    "i8": (-128, 127),
    "u8": (0, 255),
    "i4": (-8, 7),
    "u4": (0, 15),
}
# Storage types allowed inside !quant.uniform, with their finite ranges for fp8.
QUANT_STORAGE = ("i32", "i16", "i8", "u8", "i4", "u4", "f8e4m3", "f8e5m2")
FP8_MAX = {"f8e4m3": 448.0, "f8e5m2": 57344.0}
QUANT_EXPRESSED = ("f32", "f16", "bf16")
# Codebooks: storage of the indices, and the built-in tables by name. NF4 (Dettmers et
# al. 2023, QLoRA): 16 levels at quantiles of N(0, 1) scaled to [-1, 1], with an exact 0.
CODEBOOK_STORAGE = ("u4", "u8")
NF4_LEVELS = (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
              -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
              0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
              0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
              0.7229568362236023, 1.0)
CODEBOOKS = {"nf4": tuple(float(np.float32(x)) for x in NF4_LEVELS)}


def numpy_dtype(elem: str | QuantType) -> np.dtype:
    """The numpy dtype that holds values of an element type (storage type for quant)."""
    name = elem.storage if isinstance(elem, QuantType) else elem
    simple = {
        "f64": np.float64,
        "f32": np.float32,
        "f16": np.float16,
        "i64": np.int64,
        "i32": np.int32,
        "i16": np.int16,
        "i8": np.int8,
        "u8": np.uint8,
        "i4": np.int8,
        "u4": np.uint8,
        "bool": np.bool_,
    }
    if name in simple:
        return np.dtype(simple[name])
    import ml_dtypes

    return np.dtype({"bf16": ml_dtypes.bfloat16, "f8e4m3": ml_dtypes.float8_e4m3fn,
                     "f8e5m2": ml_dtypes.float8_e5m2}[name])


def elem_from_numpy(dtype: np.dtype) -> str:
    """The scalar element type name for a numpy dtype (inverse of `numpy_dtype`)."""
    dtype = np.dtype(dtype)
    table = {"float64": "f64", "float32": "f32", "float16": "f16", "int64": "i64",
             "int32": "i32", "int16": "i16", "int8": "i8", "uint8": "u8", "bool": "bool",
             "bfloat16": "bf16", "float8_e4m3fn": "f8e4m3", "float8_e5m2": "f8e5m2"}
    if dtype.name not in table:
        raise QirTypeError(f"numpy dtype {dtype.name} has no qir element type")
    return table[dtype.name]


def format_float(x: float) -> str:
    """Shortest text that parses back to exactly the same float64 (repr), with inf/nan."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(float(x))


@dataclass(frozen=True)
class QuantType:
    """`!quant.uniform<storage<min:max>:expressed[:axis[:block]], params>`.

    - per-tensor: axis is None, one scale and zero point;
    - per-axis:   axis is set, one scale/zero point per index along `axis`;
    - per-group:  axis and block_size set, one scale/zero point per block of
      `block_size` consecutive elements along `axis` (group-wise int4 weights).
      Scales are then laid out flat in row-major order of the tensor shape with
      `axis` divided by block_size (see `group_shape`).
    """

    storage: str
    expressed: str
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    storage_min: int | None = None
    storage_max: int | None = None
    axis: int | None = None
    block_size: int | None = None
    levels: tuple[float, ...] | None = None  # a codebook type's table (float32 values)
    pow2: bool = False  # uniform scales are powers of two, written 2^k

    def __post_init__(self):
        # Normalise the storage range: None means the full range of the storage type.
        if self.storage in INT_RANGES:
            lo, hi = INT_RANGES[self.storage]
            if self.storage_min is None:
                object.__setattr__(self, "storage_min", lo)
            if self.storage_max is None:
                object.__setattr__(self, "storage_max", hi)
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        object.__setattr__(self, "zero_points", tuple(int(z) for z in self.zero_points))
        if self.levels is not None:
            object.__setattr__(self, "levels",
                               tuple(float(np.float32(x)) for x in self.levels))

    # --- convenience -------------------------------------------------------------
    @property
    def is_per_tensor(self) -> bool:
        return self.axis is None

    @property
    def is_per_axis(self) -> bool:
        return self.axis is not None and self.block_size is None

    @property
    def is_per_group(self) -> bool:
        return self.block_size is not None

    @property
    def is_fp8(self) -> bool:
        return self.storage in FP8_MAX

    @property
    def is_codebook(self) -> bool:
        return self.levels is not None

    @property
    def codebook_name(self) -> str | None:
        """The built-in table this codebook's levels are (`nf4`), or None."""
        return next((k for k, v in CODEBOOKS.items() if v == self.levels), None)

    @property
    def scale(self) -> float:
        """The per-tensor scale (error for per-axis types)."""
        if not self.is_per_tensor:
            raise QirTypeError(f"{self} is not per-tensor: it has no single scale")
        return self.scales[0]

    @property
    def zero_point(self) -> int:
        if not self.is_per_tensor:
            raise QirTypeError(f"{self} is not per-tensor: it has no single zero point")
        return self.zero_points[0]

    @property
    def qmin(self) -> int | float:
        return self.storage_min if not self.is_fp8 else -FP8_MAX[self.storage]

    @property
    def qmax(self) -> int | float:
        return self.storage_max if not self.is_fp8 else FP8_MAX[self.storage]

    def has_default_range(self) -> bool:
        if self.storage not in INT_RANGES:
            return True
        return (self.storage_min, self.storage_max) == INT_RANGES[self.storage]

    def with_params(self, scales, zero_points) -> QuantType:
        return QuantType(self.storage, self.expressed, tuple(scales), tuple(zero_points),
                         self.storage_min, self.storage_max, self.axis, self.block_size,
                         self.levels, self.pow2)

    def validate(self, shape: tuple[int, ...] | None = None) -> None:
        """Raise QirTypeError when parameters are inconsistent (and with `shape`, if the
        axis or the number of scales does not fit that tensor shape)."""
        if self.storage not in QUANT_STORAGE:
            raise QirTypeError(f"quant storage type must be one of {', '.join(QUANT_STORAGE)}, "
                               f"got '{self.storage}'")
        if self.expressed not in QUANT_EXPRESSED:
            raise QirTypeError(f"quant expressed type must be one of "
                               f"{', '.join(QUANT_EXPRESSED)}, got '{self.expressed}'")
        if self.storage in INT_RANGES:
            lo, hi = INT_RANGES[self.storage]
            if not (lo <= self.storage_min <= self.storage_max <= hi):
                raise QirTypeError(f"storage range <{self.storage_min}:{self.storage_max}> "
                                   f"is not inside {self.storage}'s range <{lo}:{hi}>")
        elif self.storage_min is not None or self.storage_max is not None:
            raise QirTypeError(f"{self.storage} storage takes no <min:max> range")
        if self.levels is not None:
            self._validate_codebook()
        if self.pow2:
            if self.is_codebook or self.is_fp8:
                raise QirTypeError("power-of-two scales are an option of uniform integer "
                                   "types")
            for s in self.scales:
                if not (s > 0 and math.isfinite(s) and math.frexp(s)[0] == 0.5):
                    raise QirTypeError(f"scale {format_float(s)} of a power-of-two type is "
                                       "not a power of two")
        if not self.scales:
            raise QirTypeError("quant type has no scales")
        if len(self.scales) != len(self.zero_points):
            raise QirTypeError(f"{len(self.scales)} scales but {len(self.zero_points)} "
                               "zero points")
        for s in self.scales:
            if not (math.isfinite(s) and s > 0):
                raise QirTypeError(f"scale must be positive and finite, got {format_float(s)}")
        for z in self.zero_points:
            if self.is_fp8:
                if z != 0:
                    raise QirTypeError(f"fp8 quant types have zero point 0, got {z}")
            elif not (self.storage_min <= z <= self.storage_max):
                raise QirTypeError(f"zero point {z} is outside the storage range "
                                   f"[{self.storage_min}, {self.storage_max}]")
        if self.axis is None:
            if len(self.scales) != 1:
                raise QirTypeError(f"per-tensor quant type has {len(self.scales)} scales; "
                                   "give an axis for per-channel quantization")
            if self.block_size is not None:
                raise QirTypeError("a block size needs an axis")
            return
        if self.axis < 0:
            raise QirTypeError(f"quant axis must be non-negative, got {self.axis}")
        if self.block_size is not None and self.block_size <= 0:
            raise QirTypeError(f"block size must be positive, got {self.block_size}")
        if shape is None:
            return
        if self.axis >= len(shape):
            raise QirTypeError(f"quant axis {self.axis} is out of range for a rank-"
                               f"{len(shape)} tensor")
        if self.block_size is None:
            if len(self.scales) != shape[self.axis]:
                raise QirTypeError(f"per-axis quant type has {len(self.scales)} scales but "
                                   f"dimension {self.axis} has size {shape[self.axis]}")
        else:
            want = int(np.prod(self.group_shape(shape)))
            if len(self.scales) != want:
                raise QirTypeError(f"per-group quant type needs {want} scales for shape "
                                   f"{list(shape)}, got {len(self.scales)}")

    def _validate_codebook(self) -> None:
        if self.storage not in CODEBOOK_STORAGE:
            raise QirTypeError(f"codebook indices are stored as {' or '.join(CODEBOOK_STORAGE)}"
                               f", got '{self.storage}'")
        n = len(self.levels)
        if not 2 <= n <= self.storage_max + 1:
            raise QirTypeError(f"a codebook stored as {self.storage} has 2 to "
                               f"{self.storage_max + 1} levels, got {n}")
        if not self.has_default_range():
            raise QirTypeError("a codebook type takes no <min:max> range (its table "
                               "sets the indices)")
        if any(not math.isfinite(x) for x in self.levels):
            raise QirTypeError("codebook levels must be finite")
        if any(b <= a for a, b in zip(self.levels, self.levels[1:])):
            raise QirTypeError("codebook levels must be strictly increasing")
        if any(z != 0 for z in self.zero_points):
            raise QirTypeError("a codebook type has no zero points (value = level × scale)")

    def group_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the scale grid of a per-group type for a tensor of `shape`. A block
        size that does not divide the axis leaves a shorter last group (as ONNX
        Runtime's MatMulNBits pads it), with a scale of its own."""
        out = list(shape)
        out[self.axis] = -(-shape[self.axis] // self.block_size)
        return tuple(out)

    def __str__(self) -> str:
        from qir.printer import format_quant_type

        return format_quant_type(self)


@dataclass(frozen=True)
class TensorType:
    """`tensor<DIMSxELEM>`: a static shape (possibly rank 0) and an element type."""

    shape: tuple[int, ...]
    elem: str | QuantType

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def is_quantized(self) -> bool:
        return isinstance(self.elem, QuantType)

    @property
    def quant(self) -> QuantType:
        if not isinstance(self.elem, QuantType):
            raise QirTypeError(f"{self} is not a quantized type")
        return self.elem

    @property
    def storage(self) -> str:
        """The element type actually stored (storage type of a quantized element)."""
        return self.elem.storage if isinstance(self.elem, QuantType) else self.elem

    @property
    def is_float(self) -> bool:
        return isinstance(self.elem, str) and self.elem in FLOAT_TYPES

    @property
    def is_int(self) -> bool:
        return isinstance(self.elem, str) and self.elem in INT_TYPES

    @property
    def dtype(self) -> np.dtype:
        return numpy_dtype(self.elem)

    def with_shape(self, shape) -> TensorType:
        return TensorType(tuple(shape), self.elem)

    def with_elem(self, elem) -> TensorType:
        return TensorType(self.shape, elem)

    def validate(self) -> None:
        for d in self.shape:
            if d < 0:
                raise QirTypeError(f"negative dimension {d} in {self}")
        if isinstance(self.elem, QuantType):
            self.elem.validate(self.shape)
        elif self.elem not in SCALAR_TYPES:
            raise QirTypeError(f"unknown element type '{self.elem}'")

    def __str__(self) -> str:
        from qir.printer import format_type

        return format_type(self)
