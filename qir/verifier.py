"""The verifier: structural rules (SSA, use lists), op declarations (operand counts,
attributes, type inference) and each op's own rules. It collects every error before
raising one VerifyError; warnings are returned."""

from __future__ import annotations

from qir.diagnostics import Diagnostic, QirError, VerifyError
from qir.ir import Function, Module, Op
from qir.registry import REQUIRED, has_op


def verify(module: Module, raise_on_error: bool = True) -> list[Diagnostic]:
    """Check the module. Raises VerifyError listing every error; returns the diagnostics
    (warnings only, unless raise_on_error is False)."""
    diags: list[Diagnostic] = []
    names = set()
    for fn in module.functions.values():
        if fn.name in names:
            diags.append(Diagnostic(f"function @{fn.name} is defined twice"))
        names.add(fn.name)
        _verify_function(module, fn, diags)
    errors = [d for d in diags if d.severity == "error"]
    if errors and raise_on_error:
        raise VerifyError(errors)
    return diags


def _where(module: Module, op: Op) -> str:
    if op.source_pos and module.source_file:
        return f"{module.source_file}:{op.source_pos[0]}:{op.source_pos[1]}"
    return ""


def _verify_function(module: Module, fn: Function, diags: list[Diagnostic]) -> None:
    defined: set[int] = set()
    seen_names: set[str] = set()

    def err(msg: str, op: Op | None = None, severity: str = "error") -> None:
        where = _where(module, op) if op is not None else f"@{fn.name}"
        diags.append(Diagnostic(msg, op, severity, where))

    for a in fn.args:
        if a.name in seen_names:
            err(f"argument name %{a.name} is used twice")
        seen_names.add(a.name)
        defined.add(id(a))
        try:
            a.type.validate()
        except QirError as e:
            err(f"argument %{a.name}: {e}")
    for op in fn.ops:
        if op.function is not fn:
            err("op is listed in the function but does not belong to it", op)
        for i, v in enumerate(op.operands):
            if id(v) not in defined:
                err(f"operand #{i} %{v.name} is used before it is defined (or comes from "
                    "another function)", op)
            if not any(u.op is op and u.index == i for u in v.uses):
                err(f"use list of %{v.name} is missing operand #{i}", op)
        for r in op.results:
            if r.name in seen_names:
                err(f"value name %{r.name} is defined twice", op)
            seen_names.add(r.name)
            if r.owner is not op:
                err(f"result %{r.name} does not point back at its op", op)
        _verify_op(module, op, err)
        for r in op.results:
            defined.add(id(r))
    for i, v in enumerate(fn.outputs):
        if id(v) not in defined:
            err(f"returned value #{i} %{v.name} is not defined in @{fn.name}")


# The ops a codebook-typed value may meet: stored weights and their dequantize.
CODEBOOK_OPS = ("qir.param", "qir.constant", "qir.dequantize")


def _verify_op(module: Module, op: Op, err) -> None:
    if not has_op(op.name):
        err(f"unknown op '{op.name}'", op)
        return
    opdef = op.opdef
    n = len(op.operands)
    hi = opdef.max_operands
    if n < opdef.min_operands or (hi is not None and n > hi):
        want = (f"{opdef.min_operands}" if hi == opdef.min_operands else
                f"{opdef.min_operands} to {hi}" if hi is not None else
                f"at least {opdef.min_operands}")
        err(f"{op.name} takes {want} operand(s) ({', '.join(opdef.operands) or 'none'}), "
            f"got {n}", op)
        return
    if opdef.num_results is not None and len(op.results) != opdef.num_results:
        err(f"{op.name} has {opdef.num_results} result(s), got {len(op.results)}", op)
        return
    try:
        opdef.normalize_attrs(op.attrs)
    except QirError as e:
        err(str(e), op)
        return
    for key, spec in opdef.attrs.items():
        if spec.default is REQUIRED and key not in op.attrs:
            err(f"{op.name} needs attribute '{key}'", op)
            return
    for r in op.results:
        try:
            r.type.validate()
        except QirError as e:
            err(f"result %{r.name}: {e}", op)
            return
    if op.name not in CODEBOOK_OPS:
        for v in list(op.operands) + list(op.results):
            if v.type.is_quantized and v.type.quant.is_codebook:
                err(f"{op.name}: %{v.name} has a codebook type ({v.type.quant}); codebook "
                    f"values live in {', '.join(CODEBOOK_OPS)} (weights): dequantize them "
                    "before use", op)
                return
    for i, v in enumerate(op.operands):
        if v.type.is_quantized and opdef.category == "float":
            err(f"{op.name} takes float tensors; operand #{i} %{v.name} is quantized "
                f"({v.type}). Dequantize it first or use the integer op", op)
            return
    if opdef.infer is not None:
        try:
            inferred = opdef.infer(op)
        except QirError as e:
            err(str(e), op)
            return
        if len(inferred) != len(op.results):
            err(f"type inference gives {len(inferred)} result(s), op has {len(op.results)}", op)
            return
        for r, want in zip(op.results, inferred):
            if r.type.shape != want.shape:
                err(f"result %{r.name} has shape {list(r.type.shape)}, expected "
                    f"{list(want.shape)}", op)
            elif want.elem is not None and r.type.elem != want.elem:
                err(f"result %{r.name} has element type {r.type.elem}, expected {want.elem}",
                    op)
    if opdef.verify is not None:
        try:
            opdef.verify(op)
        except QirError as e:
            err(str(e), op)
            return
    if op.name in ("qir.qconv1d", "qir.qconv2d", "qir.qlinear", "qir.qmatmul"):
        warning = accumulator_overflow(module, op)
        if warning:
            err(warning, op, "warning")


def accumulator_overflow(module: Module, op: Op) -> str | None:
    """A warning when the op's int32 accumulator can overflow: K · max|x − z_x| · max|w|
    (with the weights' actual values when the module has them, Σ_k |w[c, k]| per
    channel instead)."""
    import numpy as np

    x, w = op.operands[0].type, op.operands[1].type
    xq, wq = x.quant, w.quant
    max_x = max(xq.storage_max - xq.zero_point, xq.zero_point - xq.storage_min)
    if op.name == "qir.qmatmul":
        k = x.shape[-1]
        max_w = max(wq.storage_max - wq.zero_points[0], wq.zero_points[0] - wq.storage_min)
        bound = k * max_x * max_w
    else:
        k = int(np.prod(w.shape[1:]))
        data = None
        owner = op.operands[1].owner
        if owner is not None and owner.name == "qir.param":
            data = module.params.get(owner.attr("name"))
        if data is not None and data.shape == w.shape:
            bound = max_x * int(np.abs(data.astype(np.int64)).reshape(w.shape[0], -1)
                                .sum(axis=1).max(initial=0))
        else:
            bound = k * max_x * max(abs(wq.storage_min), abs(wq.storage_max))
    if bound > 2**31 - 1:
        return (f"the int32 accumulator can overflow: a sum of {k} products reaches up to "
                f"{bound} > 2^31 - 1 (use narrower activations or split the reduction)")
    return None
