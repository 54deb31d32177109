"""qir Module -> TVM Relax IRModule.

One Relax function, "main", whose parameters are the qir function's arguments (same
order, names, shapes and storage dtypes) and which always returns a tuple, one field per
qir output. Each qir op becomes the Relax bindings its registered lowering emits, inside
one dataflow block, except chains that end in one kernel call: an integer conv or linear,
its requantize and a residual qadd (backends/tvm/epilogue_fusion.py).

Parameters (`module.params`) become Relax constants, embedded in the compiled artifact:
a built module is then one self-contained file, and TVM can fold and fuse around the
weights. (Binding them as extra run-time arguments would keep the artifact small for
big models; nothing in qir needs that yet.)
"""

from __future__ import annotations

import tvm
from tvm import relax

import qir
from qir.ir import describe_op
from backends.tvm import epilogue_fusion
from backends.tvm.trace import binding_name, lowering_groups
from backends.tvm.common import (FP8, LOW_FLOATS, R, dtype_of, is_float, shape_of, to_float32,
                                 tvm_dtype)
from backends.tvm.registry import LoweringError, error_summary, get_lowering
from qir.ir import Function, Module, Op, Value


def to_relax(module: Module, *, function: str = "main", verify: bool = True) -> tvm.IRModule:
    """Lower `function` of a (verified) qir module to a Relax IRModule with one function,
    "main". Raises LoweringError (a QirError) naming every op without a lowering, or the
    first op whose construct a lowering cannot express."""
    if verify:
        qir.verify(module)
    try:
        fn = module.function(function)
    except qir.QirError as e:
        raise LoweringError(str(e)) from None
    missing = sorted({describe_op(op) for op in fn.ops if get_lowering(op.name) is None})
    if missing:
        shown = "\n  ".join(missing[:20]) + ("\n  ..." if len(missing) > 20 else "")
        raise LoweringError(f"no Relax lowering for {len(missing)} op(s) in @{fn.name}:\n"
                            f"  {shown}\nregister one with @relax_lowering(op_name) from "
                            "backends.tvm")
    bb = _NamingBuilder()
    args = [relax.Var(a.name, relax.TensorType(a.type.shape, tvm_dtype(a.type)))
            for a in fn.args]
    with bb.function("main", args):
        with bb.dataflow():
            env: dict[Value, relax.Expr] = dict(zip(fn.args, args))
            for index, (group, chain) in enumerate(lowering_groups(fn)):
                bb.naming = binding_name(group, index)  # kernels trace back to ops by it
                fused = _lower_chain(bb, chain, env) if chain is not None else None
                if fused is not None:
                    env[chain.tail.result] = fused
                    continue
                for member in group:
                    for value, expr in zip(member.results,
                                           _lower_op(bb, member, env, module.params)):
                        env[value] = expr
            outputs = bb.emit_output(relax.Tuple([env[v] for v in fn.outputs]))
        bb.emit_func_output(outputs)
    return bb.get()


class _NamingBuilder(relax.BlockBuilder):
    """A BlockBuilder that names every binding it is not given a name for after the
    lowering group being lowered (backends/tvm/trace.py)."""

    naming = ""

    def emit(self, expr: relax.Expr, name_hint: str = "") -> relax.Var:
        return super().emit(expr, name_hint or self.naming)


def _lower_chain(bb: relax.BlockBuilder, chain, env: dict) -> relax.Expr | None:
    """An epilogue-fusion chain through one kernel (backends/tvm/epilogue_fusion.py),
    checked like any lowering's result; None when no kernel takes it."""
    try:
        expr = epilogue_fusion.lower_chain(bb, chain, env)
    except Exception as e:  # a TVM error while building the kernel: a lowering bug
        raise LoweringError(f"{describe_op(chain.tail)}: fused lowering of "
                            f"{' -> '.join(op.name for op in chain.ops)} failed: "
                            f"{type(e).__name__}: {error_summary(e)}") from e
    if expr is None:
        return None
    value = chain.tail.result
    if dtype_of(expr) != tvm_dtype(value.type) or shape_of(expr) != value.type.shape:
        raise LoweringError(f"{describe_op(chain.tail)}: the fused lowering produced "
                            f"{dtype_of(expr)}{list(shape_of(expr))} for %{value.name}: "
                            f"{value.type}")
    return expr


def _round_to(bb: relax.BlockBuilder, x: relax.Expr, dtype: str) -> relax.Expr:
    """A float result rounded (to nearest even) to a half-float result dtype."""
    if dtype in FP8:
        from backends.tvm.fp8 import encode_fp8

        return encode_fp8(bb, bb.emit(R.astype(x, "float32")), dtype)
    return bb.emit(R.astype(x, dtype))


def _lower_op(bb: relax.BlockBuilder, op: Op, env: dict, params) -> list[relax.Expr]:
    """Run one lowering; upcast half floats around it and check what it returns."""
    entry = get_lowering(op.name)
    args = [env[v] for v in op.operands]
    if entry.upcast:
        args = [to_float32(bb, a) for a in args]
    try:
        out = entry.fn(op, bb, args, params)
    except LoweringError:
        raise
    except qir.QirError as e:
        raise LoweringError(f"{describe_op(op)}: {e}") from e
    except Exception as e:  # a TVM error while building the expression: a lowering bug
        raise LoweringError(f"{describe_op(op)}: lowering failed: {type(e).__name__}: "
                            f"{error_summary(e)}") from e
    results = list(out) if isinstance(out, (list, tuple)) else [out]
    if len(results) != len(op.results):
        raise LoweringError(f"{describe_op(op)}: the lowering returned {len(results)} "
                            f"values for {len(op.results)} results")
    checked = []
    for value, expr in zip(op.results, results):
        if not isinstance(expr, relax.Var):
            expr = bb.emit(expr)
        want = tvm_dtype(value.type)
        got = dtype_of(expr)
        if got != want and is_float(got) and (want in LOW_FLOATS or want in FP8):
            expr = _round_to(bb, expr, want)  # round once to the result dtype
            got = want
        if got != want or shape_of(expr) != value.type.shape:
            raise LoweringError(
                f"{describe_op(op)}: the lowering produced {got}{list(shape_of(expr))} for "
                f"%{value.name}: {value.type} (wants {want}{list(value.type.shape)})")
        checked.append(expr)
    return checked
