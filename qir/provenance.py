"""Scale provenance: where a quantized value's scale came from.

The passes record it in the IR, in the `prov` attribute of the ops that decide a
quantization (qir.quantize, qir.requantize, qir.qadd, qir.qmul, qir.param): the observer
and calibration method with the range it saw, the weight and bias rules, the int16
choice for outlier channels, concat alignment. Ops that only move data (reshape,
max_pool2d, ...) keep their input's quantization and carry none: `explain` follows them
back to the op that decided. Everything here reads the IR only, so it works on any
saved module.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from qir.diagnostics import QirError
from qir.ir import Function, Module, Op, Value
from qir.pretty import describe_quant, type_short
from qir.printer import format_loc

ACCUMULATORS = ("qir.qconv1d", "qir.qconv2d", "qir.qlinear", "qir.qmatmul")


def records_provenance(op: Op) -> bool:
    """Whether `op` is one of the ops that decide a quantization (has a `prov` attr)."""
    try:
        return "prov" in op.opdef.attrs
    except QirError:  # an op unknown to this registry
        return False


def shares_input_scale(op: Op, v: Value) -> bool:
    """`v` (a result of `op`) keeps the quantization of op's first operand: data
    movement on the integers (reshape, max_pool2d, concat of aligned inputs, ...)."""
    return (not records_provenance(op) and bool(op.operands) and v.type.is_quantized
            and op.operands[0].type.elem == v.type.elem)


@dataclass
class Step:
    """One link of a provenance chain: a value, its defining op, and what it says."""

    value: Value
    op: Op | None
    text: str


def chain(v: Value, limit: int = 1000) -> list[Step]:
    """The provenance chain of `v`: through data movement and dequantize back to the op
    that decided the scale (or to a function argument)."""
    steps: list[Step] = []
    for _ in range(limit):
        op = v.owner
        if op is None:
            steps.append(Step(v, None, "function argument: its quantization is given by the "
                              "caller" if v.type.is_quantized else "function argument"))
            break
        if records_provenance(op):
            prov = op.attr("prov")
            steps.append(Step(v, op, prov or "no provenance recorded (set by a pass that "
                              "does not record one)"))
            break
        if op.name == "qir.dequantize":
            steps.append(Step(v, op, f"dequantizes %{op.operands[0].name}"))
            v = op.operands[0]
            continue
        if shares_input_scale(op, v):
            ins = op.operands if op.name == "qir.concat" else op.operands[:1]
            names = ", ".join(f"%{x.name}" for x in ins)
            what = (f"concat of {names}: its inputs were aligned to its scale "
                    "(propagate-scales); following the first" if op.name == "qir.concat"
                    else f"moves data on the integers: shares the scale of its input {names}")
            steps.append(Step(v, op, what))
            v = op.operands[0]
            continue
        if op.name in ACCUMULATORS:
            steps.append(Step(v, op, "int32 accumulator: real value = acc · s_in·s_w "
                              "(input scale times weight scale)"))
            break
        steps.append(Step(v, op, "not quantized" if not v.type.is_quantized else
                          f"quantized type set by {op.name}, which records no provenance"))
        break
    return steps


def find_value(module: Module, name: str, filename: str = "") -> tuple[Function, Value]:
    """The value named `name` (with or without `%`) in any function; a QirError with
    close names otherwise."""
    name = name.lstrip("%")
    names: list[str] = []
    for fn in module.functions.values():
        for v in fn.values():
            if v.name == name:
                return fn, v
            names.append(v.name)
    where = filename or module.source_file or "the module"
    # the quantized forms of a float name first (%foo -> %foo_q), then longer names
    # starting with it, then names that look alike
    close = [name + s for s in ("_q", "_dq", "_acc") if name + s in names]
    close += sorted((n for n in names if n.startswith((name + "_", name + "."))
                     and n not in close), key=len)
    close += [n for n in difflib.get_close_matches(name, names, n=4, cutoff=0.6)
              if n not in close]
    hint = ("; did you mean " + " or ".join(f"%{n}" for n in close[:4]) + "?") if close \
        else ""
    raise QirError(f"no value %{name} in {where}{hint}")


def _where(op: Op | None, filename: str) -> str:
    if op is None:
        return ""
    parts = []
    loc = format_loc(op.loc)
    if loc:
        parts.append(loc)
    if op.source_pos is not None and filename:
        parts.append(f"{filename}:{op.source_pos[0]}:{op.source_pos[1]}")
    return "  " + "  ".join(parts) if parts else ""


def _operand_summary(op: Op) -> list[str]:
    """For an integer compute op: where its input, weight and bias scales come from."""
    lines = []
    roles = ("input", "weight", "bias")
    for role, x in zip(roles, op.operands):
        last = chain(x)[-1]
        lines.append(f"{role} %{x.name} ({type_short(x.type)}): "
                     + (f"%{last.value.name}: " if last.value is not x else "") + last.text)
    return lines


def explain(module: Module, name: str, filename: str = "") -> str:
    """What `qir explain` prints: the value's type, its quantization, and the chain of
    provenance back to where the scale was decided."""
    filename = filename or module.source_file or ""
    _, v = find_value(module, name, filename)
    lines = [f"%{v.name}: {v.type}"]
    op = v.owner
    lines.append(f"  defined by: {op.name if op else 'function argument'}"
                 + _where(op, filename))
    if v.type.is_quantized:
        lines.append(f"  quantization: {describe_quant(v.type.quant)}")
    elif v.type.storage == "i32" and op is not None and op.name in ACCUMULATORS:
        lines.append("  quantization: int32 accumulator (no type-level scale)")
    else:
        lines.append(f"  quantization: none ({v.type.elem})")
    lines.append("provenance:")
    steps = chain(v)
    for i, step in enumerate(steps):
        arrow = "  " if i == 0 else "  <- "
        head = f"%{step.value.name}" + (f" = {step.op.name}" if step.op else "")
        lines.append(f"{arrow}{head}: {step.text}")
        if step.op is not None and step.op.name == "qir.requantize" and \
                step.op.operands[0].type.is_quantized:
            src = step.op.operands[0]
            lines.append(f"       rescales %{src.name} ({type_short(src.type)}) to this "
                         "scale")
    last = steps[-1]
    if last.op is not None and last.op.name in ACCUMULATORS:
        lines.extend(f"       {s}" for s in _operand_summary(last.op))
    elif last.op is not None and last.op.name == "qir.requantize" and \
            last.op.operands[0].owner is not None and \
            last.op.operands[0].owner.name in ACCUMULATORS:
        acc = last.op.operands[0].owner
        lines.append(f"       requantizes the int32 accumulator %{acc.result.name} "
                     f"({acc.name}):")
        lines.extend(f"         {s}" for s in _operand_summary(acc))
    return "\n".join(lines) + "\n"
