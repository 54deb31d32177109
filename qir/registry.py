"""The op registry: every op is declared once, with operands, typed attributes (with
defaults), type inference and verification.

Backends register implementations by op name in their own registries; `qir/` knows
nothing about them. A declaration looks like:

    define_op("qir.relu", operands=["input"], infer=same_as_input,
              doc="max(x, 0) elementwise")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from qir.diagnostics import QirError
from qir.types import TensorType


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()

# Attribute kinds and the Python values they hold.
ATTR_KINDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "ints": "a list of integers",
    "floats": "a list of numbers",
    "tensor": "a dense<...> tensor literal",
    "int?": "an integer or none",
    "float?": "a number or none",
    "ints?": "a list of integers or none",
    "any": "any attribute value",
}


@dataclass(frozen=True)
class Attr:
    """A typed attribute declaration. `choices` restricts str attributes."""

    kind: str
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple[str, ...] | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def coerce(self, value: Any) -> Any:
        """Convert a parsed value to this kind, or raise QirError saying what was expected."""
        kind = self.kind
        if kind.endswith("?"):
            if value is None:
                return None
            kind = kind[:-1]
        expected = ATTR_KINDS[self.kind]

        def bad():
            return QirError(f"expected {expected}, got {_describe(value)}")

        if kind == "any":
            return value
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise bad()
            return int(value)
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise bad()
            return float(value)
        if kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise bad()
            return bool(value)
        if kind == "str":
            if not isinstance(value, str):
                raise bad()
            if self.choices and value not in self.choices:
                raise QirError(f"expected one of {', '.join(map(repr, self.choices))}, "
                               f"got {value!r}")
            return value
        if kind in ("ints", "floats"):
            if not isinstance(value, (list, tuple)):
                raise bad()
            elem = Attr(kind[:-1])
            return [elem.coerce(v) for v in value]
        if kind == "tensor":
            if not isinstance(value, np.ndarray):
                raise bad()
            return value
        raise QirError(f"unknown attribute kind {kind}")


def _describe(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, np.integer)):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, np.ndarray):
        return "a tensor"
    return type(value).__name__


# infer(op) returns one entry per result: a TensorType, or a TensorType whose elem is None
# when operands fix only the shape (the element type, e.g. quant params, is the op's own).
InferFn = Callable[[Any], list[TensorType]]
VerifyFn = Callable[[Any], None]


@dataclass
class OpDef:
    name: str
    operands: list[str]
    attrs: dict[str, Attr] = field(default_factory=dict)
    infer: InferFn | None = None
    verify: VerifyFn | None = None
    num_results: int | None = 1  # None: variable (decided by attributes)
    doc: str = ""
    category: str = "float"  # float | quant | core | any

    @property
    def min_operands(self) -> int:
        return sum(1 for o in self.operands if not o.endswith(("?", "*")))

    @property
    def max_operands(self) -> int | None:
        if any(o.endswith("*") for o in self.operands):
            return None
        return len(self.operands)

    def operand_index(self, name: str) -> int | None:
        for i, o in enumerate(self.operands):
            if o.rstrip("?*") == name:
                return i
        return None

    def normalize_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Coerce attribute values to their declared kinds; QirError names the attribute."""
        out = {}
        for key, value in attrs.items():
            spec = self.attrs.get(key)
            if spec is None:
                known = ", ".join(self.attrs) or "none"
                raise QirError(f"{self.name} has no attribute '{key}' (known: {known})")
            try:
                out[key] = spec.coerce(value)
            except QirError as e:
                raise QirError(f"attribute '{key}' of {self.name}: {e}") from None
        return out


_OPS: dict[str, OpDef] = {}


def define_op(name: str, operands: list[str], attrs: dict[str, Attr] | None = None,
              infer: InferFn | None = None, verify: VerifyFn | None = None,
              num_results: int | None = 1, doc: str = "", category: str = "float") -> OpDef:
    """Declare an op. Names are dialect-qualified (`qir.conv2d`); user passes may declare
    their own ops (e.g. `mylib.fancy`) the same way."""
    if name in _OPS:
        raise QirError(f"op {name} is declared twice")
    opdef = OpDef(name, list(operands), dict(attrs or {}), infer, verify, num_results, doc,
                  category)
    _OPS[name] = opdef
    return opdef


def get_op(name: str) -> OpDef:
    _ensure_builtin_ops()
    try:
        return _OPS[name]
    except KeyError:
        raise QirError(f"unknown op '{name}'") from None


def has_op(name: str) -> bool:
    _ensure_builtin_ops()
    return name in _OPS


def all_ops() -> dict[str, OpDef]:
    _ensure_builtin_ops()
    return dict(sorted(_OPS.items()))


def _ensure_builtin_ops() -> None:
    import qir.ops  # noqa: F401  (declares the built-in ops on import)
