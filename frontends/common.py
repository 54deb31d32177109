"""Shared machinery of the torch frontends: the converter registry, the values that flow
between converters, locations, dtype mapping, and the one error users see.

A converter lowers one torch target (an ATen overload from torch.export, or a python
callable / tensor method / nn.Module class from symbolic_trace) to qir ops. It is a plain
function `fn(ctx, *args, **kwargs)` whose signature mirrors the torch call, registered with
`@converter(target, ..., emits=("qir.x",))`; the registry is what `supported_ops()` lists.
"""

from __future__ import annotations

import builtins
import operator
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from qir import Location, QirError, TensorType

# --- errors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One reason a model cannot be imported: what (kind + torch target) and where."""

    kind: str  # "unsupported op", "unsupported dtype", "control flow", "unsupported arguments"...
    target: str
    message: str = ""
    loc: Location = field(default_factory=Location)

    def __str__(self) -> str:
        where = f"{self.loc.file}:{self.loc.line}: " if self.loc.file else ""
        module = self.loc.module_path
        inside = f" in module '{module or '<root>'}'" if module is not None else ""
        detail = f": {self.message}" if self.message else ""
        return f"{where}{self.kind} {self.target}{inside}{detail}"


_ADVICE = ("Rewrite these parts with supported ops (docs/frontend.md lists them), or register "
           "a converter with @frontends.converter (see 'How to add a converter' there).")


class UnsupportedModelError(QirError):
    """The model cannot be imported. Lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem], headline: str | None = None,
                 advice: str | None = _ADVICE):
        self.problems = list(problems)
        n = len(self.problems)
        head = headline or (f"cannot import the model: {n} problem{'s' if n != 1 else ''} "
                            "found")
        lines = [head] + [f"  {p}" for p in self.problems]
        if advice:
            lines.append(advice)
        super().__init__("\n".join(lines))


class ConversionError(QirError):
    """Raised by a converter when it cannot lower this particular call (e.g. an argument
    value qir has no equivalent for); the walker turns it into a Problem at the node."""


# --- values flowing between converters ------------------------------------------------------


@dataclass
class Const:
    """A tensor known at import time (folded arange/zeros/ones/full, lifted constants,
    `_tensor_constant*` attributes). Becomes a qir.constant (or a param when large) only when
    an op uses it, so chains like `ones(...).tril()` fold completely."""

    tensor: torch.Tensor
    name: str = ""  # the node that computed it: names the param if it is stored as one


@dataclass
class LazyParam:
    """A model parameter or buffer; its qir.param op is created at first use."""

    name: str
    tensor: torch.Tensor


@dataclass
class Unavailable:
    """A result qir does not compute (e.g. the indices of max_pool2d_with_indices)."""

    what: str


@dataclass
class Poison:
    """The result of a node that could not be converted; its users are skipped silently."""


# --- dtypes ------------------------------------------------------------------------------------

_DTYPES = {
    torch.float32: "f32", torch.float64: "f64", torch.float16: "f16", torch.bfloat16: "bf16",
    torch.int64: "i64", torch.int32: "i32", torch.int16: "i16", torch.int8: "i8",
    torch.uint8: "u8", torch.bool: "bool",
    torch.float8_e4m3fn: "f8e4m3", torch.float8_e5m2: "f8e5m2",
}
_TORCH_DTYPES = {v: k for k, v in _DTYPES.items()}


def qir_elem(dtype: torch.dtype) -> str:
    """The qir element type of a torch dtype; ConversionError for dtypes qir lacks."""
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ConversionError(f"dtype {dtype} has no qir equivalent") from None


def is_supported_dtype(dtype: torch.dtype) -> bool:
    return dtype in _DTYPES


def torch_dtype(elem: str) -> torch.dtype:
    return _TORCH_DTYPES[elem]


def tensor_type(shape: Iterable[Any], dtype: torch.dtype) -> TensorType:
    dims = []
    for d in shape:
        if not isinstance(d, int):
            raise ConversionError(f"dynamic dimension {d}: qir needs static shapes; export "
                                  "with example inputs of the real shape and no dynamic_shapes")
        dims.append(d)
    return TensorType(tuple(dims), qir_elem(dtype))


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A numpy copy of a tensor, in the dtype qir stores that element type in."""
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16 or t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        import ml_dtypes

        target = {torch.bfloat16: (torch.int16, ml_dtypes.bfloat16),
                  torch.float8_e4m3fn: (torch.uint8, ml_dtypes.float8_e4m3fn),
                  torch.float8_e5m2: (torch.uint8, ml_dtypes.float8_e5m2)}[t.dtype]
        return t.view(target[0]).numpy().view(target[1]).copy()
    return t.numpy().copy()


# --- locations ----------------------------------------------------------------------------

_FRAME_RE = re.compile(r'File "([^"]+)", line (\d+)')
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_FRONTEND_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_frame(stack_trace: str | None) -> tuple[str, int] | None:
    """(file, line) of the innermost frame of a torch stack trace that is user code, i.e.
    not inside torch itself (torch/nn/modules/linear.py is not where the user wrote it)."""
    if not stack_trace:
        return None
    frames = [(f, int(n)) for f, n in _FRAME_RE.findall(stack_trace)
              if not f.startswith((_TORCH_DIR, _FRONTEND_DIR))]
    return frames[-1] if frames else None


def node_module_path(node: torch.fx.Node) -> str:
    """The torch module path an fx node belongs to ('' for the root module)."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    if stack:
        path = list(stack.values())[-1][0]
        return re.sub(r"@\d+$", "", str(path))
    return node.meta.get("qir_module_path", "")


def node_location(node: torch.fx.Node) -> Location:
    frame = user_frame(node.meta.get("stack_trace"))
    file, line = frame if frame else (None, None)
    return Location(node_module_path(node), file, line)


# --- converter registry --------------------------------------------------------------------


@dataclass(frozen=True)
class ConverterInfo:
    """A registered converter: which torch target it handles and what qir ops it emits."""

    capture: str  # "export" (ATen) or "fx" (symbolic_trace); "both" for operator.getitem
    kind: str  # call_function | call_method | call_module
    target: Any
    fn: Callable
    emits: tuple[str, ...]
    builtin: bool

    @property
    def target_name(self) -> str:
        return target_name(self.kind, self.target)


@dataclass(frozen=True)
class SupportedOp:
    """One row of the supported-op table."""

    capture: str
    kind: str
    target: str
    qir_ops: tuple[str, ...]


_CONVERTERS: dict[tuple[str, Any], ConverterInfo] = {}


def _classify(target: Any) -> tuple[str, str, Any]:
    """(capture, kind, key target) of a decorator argument."""
    if isinstance(target, torch._ops.OpOverload):
        return "export", "call_function", target
    if isinstance(target, torch._ops.OpOverloadPacket):
        raise QirError(f"register converters per overload (e.g. {target}.default), not for "
                       f"the packet {target}")
    if isinstance(target, tuple) and len(target) == 2 and target[0] == "call_method":
        return "fx", "call_method", target[1]
    if isinstance(target, type) and issubclass(target, torch.nn.Module):
        return "fx", "call_module", target
    if callable(target):
        capture = "both" if target is operator.getitem else "fx"
        return capture, "call_function", target
    raise QirError(f"cannot register a converter for {target!r}: give an ATen overload, a "
                   "callable, an nn.Module class or ('call_method', name)")


def converter(*targets: Any, emits: Iterable[str] = (), replace: bool = False):
    """Register `fn(ctx, *args, **kwargs)` as the converter of every target.

    targets: `torch.ops.aten.X.overload` (torch.export), python callables such as `F.relu` or
    `operator.add` (symbolic_trace call_function), `("call_method", "view")`, or an nn.Module
    class (symbolic_trace call_module; the converter then gets the module instance first).
    emits: the qir ops it produces, for the documentation table.
    """
    emits = tuple(emits)

    def register(fn: Callable) -> Callable:
        builtin = fn.__module__.startswith("frontends.")
        seen: set = set()
        for target in targets:
            capture, kind, key = _classify(target)
            if (kind, key) in seen:  # two spellings of one object, e.g. F.conv2d is torch.conv2d
                continue
            seen.add((kind, key))
            if (kind, key) in _CONVERTERS and not replace:
                raise QirError(f"a converter for {target_name(kind, key)} is already "
                               "registered; pass replace=True to override it")
            _CONVERTERS[(kind, key)] = ConverterInfo(capture, kind, key, fn, emits, builtin)
        return fn

    return register


def lookup(kind: str, target: Any) -> ConverterInfo | None:
    _load_builtin_converters()
    try:
        return _CONVERTERS.get((kind, target))
    except TypeError:  # unhashable target
        return None


def supported_ops(*, builtin_only: bool = False) -> list[SupportedOp]:
    """The table of supported torch targets: capture style, target name, qir ops emitted."""
    _load_builtin_converters()
    rows = {SupportedOp(c.capture, c.kind, c.target_name, c.emits)
            for c in _CONVERTERS.values() if c.builtin or not builtin_only}
    order = {"export": 0, "both": 1, "fx": 2}
    kinds = {"call_function": 0, "call_method": 1, "call_module": 2}
    return sorted(rows, key=lambda r: (order[r.capture], kinds[r.kind], r.target.lower()))


def _load_builtin_converters() -> None:
    from frontends.converters import load_all

    load_all()


# --- target names ----------------------------------------------------------------------------

_NAMESPACES: list[tuple[str, Any]] = [("F", F), ("torch", torch), ("torch.special", torch.special),
                                      ("torch.linalg", torch.linalg), ("torch.fft", torch.fft),
                                      ("operator", operator), ("builtins", builtins)]
_NAME_CACHE: dict[int, str] = {}


def target_name(kind: str, target: Any) -> str:
    """A readable name of a torch target: `aten.conv2d.default`, `F.relu`, `torch.cat`,
    `operator.add`, `Tensor.view`, `nn.Conv2d`."""
    if kind == "call_method":
        return f"Tensor.{target}"
    if kind == "call_module":
        cls = target if isinstance(target, type) else type(target)
        mod = cls.__module__
        return f"nn.{cls.__qualname__}" if mod.startswith("torch.nn.") else (
            f"{mod}.{cls.__qualname__}")
    if isinstance(target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return str(target)
    if isinstance(target, str):
        return target
    key = id(target)
    if key not in _NAME_CACHE:
        _NAME_CACHE[key] = _find_name(target)
    return _NAME_CACHE[key]


def _find_name(target: Any) -> str:
    for prefix, ns in _NAMESPACES:
        for name, obj in vars(ns).items():
            if obj is target and not name.startswith("_"):
                return f"{prefix}.{name}" if prefix != "builtins" else name
    mod = getattr(target, "__module__", None) or ""
    qual = getattr(target, "__qualname__", None) or getattr(target, "__name__", repr(target))
    return f"{mod}.{qual}" if mod else qual
