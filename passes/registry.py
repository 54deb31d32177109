"""Registering passes and parsing pipeline strings.

A pass is a function `(module, *, options...) -> bool` (True when it changed anything),
registered by name. Options are keyword-only parameters with type hints (int, float,
bool, str, or Literal[...]) and defaults; `Annotated[T, "doc"]` documents one:

    @register_pass("fold-batchnorm")
    def fold_batchnorm(module: Module, *, eps_check: Annotated[bool, "..."] = True) -> bool:
        '''Fold inference BatchNorm into the preceding conv/linear.'''

A pass that needs run-time context (calibration data, statistics) declares a `ctx`
parameter and receives the PassManager's PassContext.

Pipelines use the MLIR/xDSL syntax: `a,b{key=value,other=1},c`. Named pipelines
(`int8`, `optimize`) expand in place.
"""

from __future__ import annotations

import inspect
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, get_args, get_origin

from qir.diagnostics import QirError


class PipelineError(QirError):
    """A malformed pipeline string, an unknown pass or a bad option value."""


@dataclass(frozen=True)
class PassOption:
    name: str
    type: Any
    default: Any
    doc: str = ""

    @property
    def choices(self) -> tuple | None:
        return get_args(self.type) if get_origin(self.type) is Literal else None

    def type_name(self) -> str:
        if self.choices:
            return "|".join(map(str, self.choices))
        return getattr(self.type, "__name__", str(self.type))

    def parse(self, text: str, pass_name: str) -> Any:
        """Convert the text of `key=value` into this option's type."""
        def bad(want: str):
            return PipelineError(f"option '{self.name}' of pass '{pass_name}' expects {want}, "
                                 f"got '{text}'")

        if self.choices:
            for c in self.choices:
                if str(c) == text:
                    return c
            raise bad("one of " + ", ".join(map(str, self.choices)))
        if self.type is bool:
            if text.lower() in ("true", "1", "yes", "on"):
                return True
            if text.lower() in ("false", "0", "no", "off"):
                return False
            raise bad("true or false")
        if self.type is int:
            try:
                return int(text)
            except ValueError:
                raise bad("an integer") from None
        if self.type is float:
            try:
                return float(text.rstrip("%")) / (100.0 if text.endswith("%") else 1.0)
            except ValueError:
                raise bad("a number") from None
        return text


@dataclass
class PassInfo:
    name: str
    fn: Callable[..., bool]
    doc: str
    options: dict[str, PassOption] = field(default_factory=dict)
    wants_ctx: bool = False

    @property
    def summary(self) -> str:
        first = self.doc.strip().split("\n\n")[0]
        return " ".join(first.split())


_PASSES: dict[str, PassInfo] = {}

# Named pipelines: usable anywhere a pass name is.
PIPELINES: dict[str, str] = {}


def register_pass(name: str, *, override: bool = False):
    """Decorator registering a pass function under `name` (kebab-case)."""
    if not re.fullmatch(r"[a-z][a-z0-9\-]*", name):
        raise QirError(f"pass name '{name}' must be kebab-case (like fold-batchnorm)")

    def wrap(fn: Callable[..., bool]) -> Callable[..., bool]:
        if name in _PASSES and not override and _PASSES[name].fn is not fn:
            raise QirError(f"pass '{name}' is registered twice")
        _PASSES[name] = _describe(name, fn)
        return fn

    return wrap


def _describe(name: str, fn: Callable) -> PassInfo:
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    options, wants_ctx = {}, False
    params = list(sig.parameters.values())
    if not params:
        raise QirError(f"pass '{name}' must take the module as its first parameter")
    for p in params[1:]:
        if p.name == "ctx":
            wants_ctx = True
            continue
        if p.kind is not inspect.Parameter.KEYWORD_ONLY or p.default is inspect.Parameter.empty:
            raise QirError(f"pass '{name}': option '{p.name}' must be keyword-only with a "
                           "default")
        hint = hints.get(p.name, type(p.default))
        doc = ""
        if get_origin(hint) is typing.Annotated:
            hint, *meta = get_args(hint)
            doc = next((m for m in meta if isinstance(m, str)), "")
        key = p.name.replace("_", "-")
        options[key] = PassOption(key, hint, p.default, doc)
    return PassInfo(name, fn, inspect.getdoc(fn) or "", options, wants_ctx)


def get_pass(name: str) -> PassInfo:
    _ensure_builtin_passes()
    if name not in _PASSES:
        known = ", ".join(sorted(_PASSES)) or "none"
        raise PipelineError(f"unknown pass '{name}' (known passes: {known}; named "
                            f"pipelines: {', '.join(sorted(PIPELINES)) or 'none'})")
    return _PASSES[name]


def all_passes() -> dict[str, PassInfo]:
    _ensure_builtin_passes()
    return dict(sorted(_PASSES.items()))


def _ensure_builtin_passes() -> None:
    import passes.builtin  # noqa: F401  (registers the built-in passes)


@dataclass
class PipelineStep:
    name: str
    options: dict[str, Any]
    info: PassInfo

    def __str__(self) -> str:
        if not self.options:
            return self.name
        opts = ",".join(f"{k}={_fmt_value(v)}" for k, v in self.options.items())
        return f"{self.name}{{{opts}}}"


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z0-9_\-]+)\s*(?:\{(?P<opts>[^{}]*)\})?)\s*(?P<sep>,|$)")


def parse_pipeline(text: str, _depth: int = 0) -> list[PipelineStep]:
    """Parse `a,b{key=value},c` into steps; named pipelines expand in place."""
    _ensure_builtin_passes()
    steps: list[PipelineStep] = []
    text = text.strip()
    if not text:
        return steps
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or not m.group("name"):
            raise PipelineError(_malformed(text, pos, "expected a pass name, optionally "
                                           "followed by {key=value,...}"))
        name, opts_text = m.group("name"), m.group("opts")
        if name in PIPELINES and opts_text is None:
            if _depth > 8:
                raise PipelineError(f"named pipeline '{name}' expands recursively")
            steps.extend(parse_pipeline(PIPELINES[name], _depth + 1))
        else:
            info = get_pass(name)
            steps.append(PipelineStep(name, _parse_options(info, opts_text or ""), info))
        pos = m.end()
        if m.group("sep") == "" and pos < len(text):
            raise PipelineError(_malformed(text, pos, "expected ','"))
    return steps


def _malformed(text: str, pos: int, what: str) -> str:
    return f"malformed pipeline at column {pos + 1}: {what}\n  {text}\n  {' ' * pos}^"


def _parse_options(info: PassInfo, text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    last: str | None = None
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip().replace("_", "-")
        if not eq and last is not None and info.options[last].type is str:
            # a comma inside a list-valued string option: keep-float=head,encoder.*
            out[last] = f"{out[last]},{item}"
            continue
        if not eq:
            raise PipelineError(f"option '{item}' of pass '{info.name}' needs a value "
                                "(key=value)")
        if key not in info.options:
            known = ", ".join(info.options) or "none"
            raise PipelineError(f"pass '{info.name}' has no option '{key}' (options: {known})")
        out[key] = info.options[key].parse(value.strip(), info.name)
        last = key
    return out
