"""insert-observers: mark the float tensors that will be quantized with `qir.observe`.

The policy: an op is quantized when its name is in `ops` and neither its module path nor
its op name matches a `keep-float` pattern (fnmatch, comma-separated: `encoder.*.attn*`,
`qir.matmul`; `%linear_3` matches result value names). Its activation operands (not
constants or parameters) and its result are observed; weights are quantized from their
values later. `qir.add` and `qir.mul` are
quantized only when both operands come from quantized ops (through data movement): a
CNN's residual add becomes integer, while a transformer's residual stream, fed by float
LayerNorm, stays float — the tensors where its outlier channels live. `only` restricts
the choice to the ops matching its patterns (per-layer sensitivity).
"""

from __future__ import annotations

import fnmatch
from typing import Annotated, Literal

from qir.builder import Builder
from qir.ir import Function, Module, Op, Value

from passes.registry import register_pass

DATA_MOVEMENT = ("qir.reshape", "qir.permute", "qir.max_pool2d", "qir.pad", "qir.slice",
                 "qir.concat", "qir.split", "qir.relu", "qir.clamp", "qir.broadcast_to",
                 "qir.gather")
COMPUTE = ("qir.conv1d", "qir.conv2d", "qir.linear", "qir.matmul")
ELEMENTWISE = ("qir.add", "qir.mul")
DEFAULT_OPS = "qir.conv1d,qir.conv2d,qir.linear,qir.matmul,qir.add"


def _matches(op: Op, patterns: list[str]) -> bool:
    """A pattern matches the op name or its module path; `%pattern` its result names."""
    path = op.loc.module_path or ""
    for p in patterns:
        if p.startswith("%"):
            if any(fnmatch.fnmatchcase(r.name, p[1:]) for r in op.results):
                return True
        elif fnmatch.fnmatchcase(op.name, p) or fnmatch.fnmatchcase(path, p):
            return True
    return False


def _is_static(v: Value) -> bool:
    """Weights and constants: defined by qir.param / qir.constant."""
    return v.owner is not None and v.owner.name in ("qir.param", "qir.constant")


def _activations(op: Op) -> list[Value]:
    return [v for v in op.operands if not _is_static(v)]


def select_quantized_ops(fn: Function, ops: list[str], keep_float: list[str],
                         only: list[str] | None = None) -> list[Op]:
    """The ops the policy quantizes, in function order. With `only` (patterns as for
    keep-float), just the matching ones whatever feeds them: per-layer sensitivity
    quantizes one op at a time."""
    chosen: list[Op] = []
    quantized_values: set[int] = set()

    def from_quantized(v: Value) -> bool:
        seen = v
        while seen.owner is not None and seen.owner.name in DATA_MOVEMENT:
            seen = seen.owner.operands[0]
        return id(seen) in quantized_values

    for op in fn.ops:
        if op.name not in ops or _matches(op, keep_float):
            continue
        if only and not _matches(op, only):
            continue
        if not all(r.type.is_float for r in op.results):
            continue
        acts = _activations(op)
        if not acts or any(not v.type.is_float for v in acts):
            continue
        if op.name in ELEMENTWISE and not only and \
                not all(from_quantized(v) for v in op.operands):
            continue
        if op.name in COMPUTE and op.name != "qir.matmul" and not _is_static(op.operands[1]):
            continue  # a weight computed at run time has no static quantization
        chosen.append(op)
        quantized_values.update(id(r) for r in op.results)
    return chosen


def policy_ops(fn: Function, *, ops: str = DEFAULT_OPS, keep_float: str = "",
               only: str = "", **_) -> list[Op]:
    """The ops insert-observers quantizes with these options (as written in a pipeline:
    comma-separated strings); other options are ignored."""
    op_names = [s.strip() if s.strip().startswith("qir.") else f"qir.{s.strip()}"
                for s in ops.split(",") if s.strip()]
    keep = [s.strip() for s in keep_float.split(",") if s.strip()]
    only_patterns = [s.strip() for s in only.split(",") if s.strip()]
    return select_quantized_ops(fn, op_names, keep, only_patterns)


@register_pass("insert-observers")
def insert_observers(
    module: Module, *,
    ops: Annotated[str, "comma-separated op names to quantize"] = DEFAULT_OPS,
    keep_float: Annotated[str, "comma-separated fnmatch patterns of module paths or op "
                          "names to keep in float (%name: result value names)"] = "",
    activations: Annotated[Literal["i8", "u8", "i16"], "activation storage type"] = "i8",
    method: Annotated[str, "calibration method recorded on each observer"] = "minmax",
    only: Annotated[str, "quantize only the ops matching these patterns (like "
                    "keep-float), whatever feeds them: per-layer sensitivity"] = "",
) -> bool:
    """Insert qir.observe on the activations and results of the ops to quantize."""
    changed = False
    for fn in module.functions.values():
        observed: dict[int, Value] = {}
        for op in policy_ops(fn, ops=ops, keep_float=keep_float, only=only):
            for v in _activations(op) + list(op.results):
                if id(v) in observed or (v.owner is not None and v.owner.name == "qir.observe"):
                    continue
                anchor = v.owner
                b = (Builder(fn, after=anchor, loc=anchor.loc) if anchor is not None else
                     Builder(fn, before=fn.ops[0]))
                obs = b.value("qir.observe", [v], {"id": v.name, "method": method,
                                                   "dtype": activations},
                              names=[f"{v.name}_obs"])
                for use in list(v.uses):
                    if use.op is not obs.owner:
                        use.op.set_operand(use.index, obs)
                fn.replace_output(v, obs)
                observed[id(v)] = obs
                changed = True
    return changed
