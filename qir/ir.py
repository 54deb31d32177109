"""The IR data model: Module → Function → Op, values in SSA form with automatic use lists.

Like torch.fx's Node, assigning an op's operands updates the use lists of the values
involved, so `value.uses` is always exact. Functions are a single flat block of ops in
execution order; every value has a name unique within its function.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

from qir.diagnostics import QirError
from qir.types import TensorType

_NAME_RE = re.compile(r"[A-Za-z0-9_.$\-]+")


@dataclass(frozen=True)
class Location:
    """Where an op came from: the torch module path and the user's source line, when known."""

    module_path: str | None = None
    file: str | None = None
    line: int | None = None

    def is_unknown(self) -> bool:
        return self.module_path is None and self.file is None

    def __str__(self) -> str:
        parts = []
        if self.module_path is not None:
            parts.append(self.module_path or "<root>")
        if self.file is not None:
            parts.append(f"{self.file}:{self.line}" if self.line is not None else self.file)
        return " at ".join(parts) if parts else "unknown location"


UNKNOWN_LOC = Location()


class Use:
    """Operand slot `index` of `op` refers to some value."""

    __slots__ = ("op", "index")

    def __init__(self, op: Op, index: int):
        self.op = op
        self.index = index

    def __repr__(self) -> str:
        return f"Use({self.op.name}, {self.index})"


class Value:
    """An SSA value: a function argument or an op result."""

    def __init__(self, name: str, type: TensorType, owner: Op | None = None, index: int = 0):
        self.name = name
        self.type = type
        self.owner = owner  # producing op; None for function arguments
        self.index = index  # result index within owner
        self.uses: list[Use] = []

    @property
    def users(self) -> list[Op]:
        """Ops that use this value, each once, in use order."""
        seen: dict[int, Op] = {}
        for u in self.uses:
            seen.setdefault(id(u.op), u.op)
        return list(seen.values())

    def replace_all_uses_with(self, new: Value) -> None:
        for use in list(self.uses):
            use.op.set_operand(use.index, new)

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


class Op:
    """An operation: `name` (e.g. "qir.conv2d"), operands, attributes, typed results, loc."""

    def __init__(self, name: str, operands: Iterable[Value], attrs: dict[str, Any] | None,
                 result_types: Iterable[TensorType], result_names: Iterable[str] | None = None,
                 loc: Location = UNKNOWN_LOC):
        self.name = name
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.loc = loc
        self.function: Function | None = None
        self.source_pos: tuple[int, int] | None = None  # (line, col) when parsed from text
        self._operands: list[Value] = []
        result_types = list(result_types)
        names = list(result_names) if result_names is not None else [""] * len(result_types)
        self.results = [Value(n, t, self, i) for i, (n, t) in enumerate(zip(names, result_types))]
        for v in operands:
            self._append_operand(v)

    # --- operands with automatic use lists ------------------------------------------
    @property
    def operands(self) -> tuple[Value, ...]:
        return tuple(self._operands)

    @operands.setter
    def operands(self, values: Iterable[Value]) -> None:
        self.drop_operands()
        for v in values:
            self._append_operand(v)

    def _append_operand(self, v: Value) -> None:
        if not isinstance(v, Value):
            raise TypeError(f"operand of {self.name} must be a Value, got {type(v).__name__}")
        v.uses.append(Use(self, len(self._operands)))
        self._operands.append(v)

    def set_operand(self, index: int, v: Value) -> None:
        old = self._operands[index]
        old.uses = [u for u in old.uses if not (u.op is self and u.index == index)]
        self._operands[index] = v
        v.uses.append(Use(self, index))

    def drop_operands(self) -> None:
        for v in self._operands:
            v.uses = [u for u in v.uses if u.op is not self]
        self._operands = []

    # --- convenience --------------------------------------------------------------
    @property
    def result(self) -> Value:
        if len(self.results) != 1:
            raise QirError(f"{self.name} has {len(self.results)} results, not one")
        return self.results[0]

    @property
    def opdef(self):
        from qir.registry import get_op

        return get_op(self.name)

    def attr(self, key: str) -> Any:
        """An attribute's value, or its declared default."""
        if key in self.attrs:
            return self.attrs[key]
        spec = self.opdef.attrs.get(key)
        if spec is None:
            raise KeyError(f"{self.name} has no attribute '{key}'")
        return spec.default

    def has_uses(self) -> bool:
        return any(r.uses for r in self.results)

    def __repr__(self) -> str:
        from qir.printer import format_op_brief

        return format_op_brief(self)


class Function:
    """A function: typed arguments, a flat list of ops, and the returned values."""

    def __init__(self, name: str, args: Iterable[tuple[str, TensorType]] = ()):
        self.name = name
        self.module: Module | None = None
        self.ops: list[Op] = []
        self.args: list[Value] = []
        self.outputs: list[Value] = []
        self._names: set[str] = set()
        self._counters: dict[str, int] = {}
        for n, t in args:
            self.add_arg(n, t)

    # --- names ------------------------------------------------------------------------
    def unique_name(self, base: str) -> str:
        """A fresh value name derived from `base`: `add`, then `add_1`, `add_2`, ..."""
        base = sanitize_name(base)
        if base not in self._names:
            self._names.add(base)
            return base
        i = self._counters.get(base, 0)
        while True:
            i += 1
            cand = f"{base}_{i}"
            if cand not in self._names:
                self._counters[base] = i
                self._names.add(cand)
                return cand

    def _claim(self, v: Value, base: str) -> None:
        v.name = self.unique_name(base or "v")

    def release_name(self, name: str) -> None:
        self._names.discard(name)

    def rename(self, value: Value, name: str) -> bool:
        """Give `value` the name `name` if it is free (returns whether it did)."""
        name = sanitize_name(name)
        if name == value.name:
            return True
        if name in self._names:
            return False
        self._names.discard(value.name)
        self._names.add(name)
        value.name = name
        return True

    # --- building ---------------------------------------------------------------------
    def add_arg(self, name: str, type: TensorType) -> Value:
        v = Value("", type)
        self._claim(v, name)
        self.args.append(v)
        return v

    def _adopt(self, op: Op) -> None:
        if op.function is not None:
            raise QirError(f"{op.name} already belongs to function @{op.function.name}")
        op.function = self
        for r in op.results:
            self._claim(r, r.name or op.name.split(".")[-1])

    def append(self, op: Op) -> Op:
        self._adopt(op)
        self.ops.append(op)
        return op

    def insert_before(self, anchor: Op, op: Op) -> Op:
        self._adopt(op)
        self.ops.insert(self.ops.index(anchor), op)
        return op

    def insert_after(self, anchor: Op, op: Op) -> Op:
        self._adopt(op)
        self.ops.insert(self.ops.index(anchor) + 1, op)
        return op

    def erase(self, op: Op) -> None:
        """Remove an op whose results are unused (raises otherwise)."""
        for r in op.results:
            if r.uses or r in self.outputs:
                raise QirError(f"cannot erase {op.name} producing %{r.name}: it still has uses")
        op.drop_operands()
        self.ops.remove(op)
        for r in op.results:
            self.release_name(r.name)
        op.function = None

    def set_outputs(self, values: Iterable[Value]) -> None:
        self.outputs = list(values)

    def replace_output(self, old: Value, new: Value) -> None:
        self.outputs = [new if v is old else v for v in self.outputs]

    def replace_all_uses(self, old: Value, new: Value) -> None:
        """Redirect every use of `old`, including function outputs, to `new`."""
        old.replace_all_uses_with(new)
        self.replace_output(old, new)

    # --- walking ----------------------------------------------------------------------
    def values(self) -> Iterator[Value]:
        yield from self.args
        for op in self.ops:
            yield from op.results

    def walk(self, name: str | None = None) -> list[Op]:
        """A snapshot of the ops (optionally only those named `name`), safe to mutate over."""
        return [op for op in self.ops if name is None or op.name == name]

    def value_by_name(self, name: str) -> Value:
        for v in self.values():
            if v.name == name:
                return v
        raise KeyError(name)

    @property
    def input_types(self) -> list[TensorType]:
        return [a.type for a in self.args]

    @property
    def output_types(self) -> list[TensorType]:
        return [v.type for v in self.outputs]


class Module:
    """Functions plus a table of named parameter tensors (names = torch state_dict names)."""

    def __init__(self):
        self.functions: dict[str, Function] = {}
        self.params: dict[str, np.ndarray] = {}
        self.source_file: str | None = None  # set when parsed from a file

    def add_function(self, fn: Function) -> Function:
        if fn.name in self.functions:
            raise QirError(f"function @{fn.name} is defined twice")
        fn.module = self
        self.functions[fn.name] = fn
        return fn

    def function(self, name: str = "main") -> Function:
        """The function called `name` (`main` also names the only function)."""
        if name in self.functions:
            return self.functions[name]
        if name == "main" and len(self.functions) == 1:
            return next(iter(self.functions.values()))
        known = ", ".join(f"@{n}" for n in self.functions) or "none"
        raise QirError(f"module has no function @{name} (functions: {known})")

    @property
    def main(self) -> Function:
        """The entry function: `@main`, or the only function."""
        if "main" in self.functions:
            return self.functions["main"]
        if len(self.functions) == 1:
            return next(iter(self.functions.values()))
        raise QirError("module has no @main function")

    def unique_param_name(self, base: str) -> str:
        if base not in self.params:
            return base
        i = 1
        while f"{base}_{i}" in self.params:
            i += 1
        return f"{base}_{i}"

    def add_param(self, name: str, array: np.ndarray) -> str:
        """Store a parameter under a fresh name derived from `name`; returns the name."""
        name = self.unique_param_name(name)
        self.params[name] = np.ascontiguousarray(array)
        return name

    def __str__(self) -> str:
        from qir.printer import print_module

        return print_module(self)


def sanitize_name(name: str) -> str:
    """Map an arbitrary string (fx node name, torch target) to a legal value name."""
    name = re.sub(r"[^A-Za-z0-9_.$\-]", "_", name)
    return name or "v"


def output_keys(names) -> list[str]:
    """The keys a function's outputs are returned under, by every backend: each value's
    name, `name#i` for a value returned again at position i."""
    keys, seen = [], set()
    for i, name in enumerate(names):
        keys.append(f"{name}#{i}" if name in seen else name)
        seen.add(name)
    return keys


def describe_op(op: Op) -> str:
    """`qir.conv2d %c (model.qir:5:3, loc conv1)`: an op as error messages name it."""
    results = ", ".join(f"%{r.name}" for r in op.results)
    where = []
    module = op.function.module if op.function is not None else None
    if op.source_pos is not None and module is not None and module.source_file:
        where.append(f"{module.source_file}:{op.source_pos[0]}:{op.source_pos[1]}")
    if not op.loc.is_unknown():
        where.append(f"loc {op.loc}")
    text = op.name + (f" {results}" if results else "")
    return text + (f" ({', '.join(where)})" if where else "")
