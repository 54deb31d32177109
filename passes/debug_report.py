"""Numerics debugging: run the float and the quantized module side by side and say where
the error comes from.

- `debug_report(float_module, quant_module, samples)`: per quantized tensor SQNR, cosine,
  max abs error, scale, zero point and clipping rate against its float value; per output
  the same end to end; parameter bytes float vs quantized.
- `quantize_with_reference(module, samples, pipeline)`: quantize a float module and keep
  the float reference the report compares against (the module just before
  `insert-observers`, after BatchNorm folding and activation fusion, whose value names
  the quantized values are named after).
- `sensitivity(float_module, samples)`: quantize one layer at a time (everything else
  float, via `insert-observers{only=%layer}`) and rank the layers by the output error
  each causes alone, worst first — where to spend higher precision.

Rendering (terminal table, JSON, HTML) is in passes/report_format.py.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field

import numpy as np

from qir.diagnostics import QirError
from qir.ir import Function, Module, Op

from passes.report import ErrorStats, LayerRow, OutputRow, compare_modules


@dataclass
class SensitivityRow:
    """Output error with only `layer` quantized (worst over the outputs)."""

    layer: str
    op: str
    loc: str
    sqnr_db: float | None
    cosine: float | None
    max_abs_err: float | None


@dataclass
class DebugReport:
    layers: list[LayerRow]
    outputs: list[OutputRow]
    float_bytes: int
    quant_bytes: int
    samples: int
    model: str = ""
    pipeline: str | None = None
    sensitivity: list[SensitivityRow] | None = None
    notes: list[str] = field(default_factory=list)


def copy_module(module: Module) -> Module:
    """An independent copy: new functions, ops and values with the same names; attribute
    values copied; parameter arrays shared (passes replace parameters, never write
    into them)."""
    copy = Module()
    copy.params = dict(module.params)
    copy.source_file = module.source_file
    for fn in module.functions.values():
        new = Function(fn.name, [(a.name, a.type) for a in fn.args])
        values = {id(a): b for a, b in zip(fn.args, new.args)}
        for op in fn.ops:
            twin = Op(op.name, [values[id(v)] for v in op.operands], deepcopy(op.attrs),
                      [r.type for r in op.results], [r.name for r in op.results], op.loc)
            twin.source_pos = op.source_pos
            new.append(twin)
            values.update((id(r), t) for r, t in zip(op.results, twin.results))
        new.set_outputs([values[id(v)] for v in fn.outputs])
        copy.add_function(new)
    return copy


def param_bytes(module: Module) -> int:
    """Bytes of the parameters the module's ops use (plus inline constants)."""
    used: set[str] = set()
    total = 0
    for fn in module.functions.values():
        for op in fn.ops:
            if op.name == "qir.param":
                used.add(op.attr("name"))
            elif op.name == "qir.constant":
                total += int(op.attr("value").nbytes)
    for name in used:
        arr = module.params.get(name)
        if arr is not None:
            total += int(arr.nbytes)
        else:  # no data loaded: count from the declared type
            ty = next(op.result.type for fn in module.functions.values() for op in fn.ops
                      if op.name == "qir.param" and op.attr("name") == name)
            total += ty.numel * ty.dtype.itemsize
    return total


def _steps(pipeline):
    from passes.registry import parse_pipeline

    return parse_pipeline(pipeline) if isinstance(pipeline, str) else list(pipeline)


def quantize_with_reference(module: Module, samples: list[dict[str, np.ndarray]],
                            pipeline="int8", *, progress: bool = False
                            ) -> tuple[Module, Module, list[str]]:
    """(float reference, quantized module, notes): runs `pipeline` on a copy of `module`
    calibrating on `samples`; the reference is the module just before insert-observers
    (the input module when the pipeline has no such pass)."""
    from passes.manager import PassContext, PassManager

    ref = {"module": copy_module(module)}

    def snapshot(step, m) -> None:
        if step.name == "insert-observers" and "taken" not in ref:
            ref["module"], ref["taken"] = copy_module(m), True

    ctx = PassContext(calibration_data=samples, progress=progress)
    pm = PassManager(_steps(pipeline), ctx=ctx)
    pm.before_pass.append(snapshot)
    quant = copy_module(module)
    pm.run(quant)
    return ref["module"], quant, list(ctx.notes)


def debug_report(float_module: Module, quant_module: Module,
                 samples: list[dict[str, np.ndarray]], *, model: str = "",
                 pipeline: str | None = None) -> DebugReport:
    """Per-layer and per-output error of `quant_module` against `float_module`."""
    if not samples:
        raise QirError("no sample inputs to compare on")
    layers, outputs = compare_modules(float_module, quant_module, samples)
    return DebugReport(layers, outputs, param_bytes(float_module), param_bytes(quant_module),
                       len(samples), model, pipeline)


def _split_at_observers(pipeline):
    steps = _steps(pipeline)
    for i, step in enumerate(steps):
        if step.name == "insert-observers":
            return steps[:i], step, steps[i + 1:]
    raise QirError("sensitivity needs a pipeline with insert-observers (e.g. int8); got "
                   + ",".join(str(s) for s in steps))


def _prepare(float_module: Module, pipeline):
    """(prepared copy, insert-observers step, steps after it, the ops it would
    quantize): the passes before insert-observers run on a copy of `float_module`."""
    from passes.insert_observers import policy_ops
    from passes.manager import PassManager

    before, obs, after = _split_at_observers(pipeline)
    prepared = copy_module(float_module)
    PassManager(before).run(prepared)
    options = {k.replace("-", "_"): v for k, v in obs.options.items()}
    return prepared, obs, after, policy_ops(prepared.main, **options)


def quantizable_layers(float_module: Module, pipeline="int8") -> list:
    """The ops the pipeline's insert-observers would quantize (in a copy of
    `float_module` after the passes before insert-observers)."""
    return _prepare(float_module, pipeline)[3]


def _output_errors(module: Module, samples, reference) -> list[ErrorStats]:
    from backends.numpy import dequantize_values, run

    stats = [ErrorStats() for _ in module.main.outputs]
    for sample, ref in zip(samples, reference):
        got = run(module, sample).values()
        for acc, r, g, v in zip(stats, ref, got, module.main.outputs):
            acc.add(r, dequantize_values(g, v.type) if v.type.is_quantized else g)
    return stats


def _keep_observers_of(module: Module, name: str) -> None:
    """Remove every qir.observe except those on the inputs and results of the op that
    defines %name: what insert-observers{only=%name} would have inserted."""
    fn = module.main
    op = fn.value_by_name(name).owner
    keep = {id(v.owner) for v in op.operands if v.owner is not None and
            v.owner.name == "qir.observe"}
    keep |= {id(u) for r in op.results for u in r.users if u.name == "qir.observe"}
    for obs in fn.walk("qir.observe"):
        if id(obs) not in keep:
            fn.replace_all_uses(obs.result, obs.operands[0])
            fn.erase(obs)


def sensitivity(float_module: Module, samples: list[dict[str, np.ndarray]], *,
                pipeline="int8", progress: bool = False) -> list[SensitivityRow]:
    """Quantize one layer at a time, everything else float (insert-observers{only=%v}),
    calibrating and measuring on `samples`; rows sorted worst output SQNR first."""
    from backends.numpy import run
    from passes.manager import PassContext, PassManager
    from passes.registry import PipelineStep

    if not samples:
        raise QirError("sensitivity needs sample inputs")
    prepared, obs, after, ops = _prepare(float_module, pipeline)
    if obs.options.get("only"):
        raise QirError("sensitivity chooses the layers itself: drop only= from the pipeline")
    layers = [(op.result.name, op.name, str(op.loc) if not op.loc.is_unknown() else "")
              for op in ops]
    reference = [list(run(prepared, s).values()) for s in samples]
    calibrated = None
    if after and after[0].name == "calibrate":
        # Observers are identities and calibrate each on its own: calibrate all of them
        # once, then keep only one layer's observers per run.
        calibrated = copy_module(prepared)
        ctx = PassContext(calibration_data=samples, progress=progress)
        PassManager([obs, after[0]], ctx=ctx).run(calibrated)
    iterator = layers
    if progress:
        from tqdm import tqdm

        iterator = tqdm(layers, desc="sensitivity", unit="layer", leave=False)
    rows = []
    for name, op_name, loc in iterator:
        ctx = PassContext(calibration_data=samples, progress=False)
        if calibrated is not None:
            module = copy_module(calibrated)
            _keep_observers_of(module, name)
            PassManager(after[1:], ctx=ctx, verify_each=False).run(module)
        else:
            one = PipelineStep(obs.name, {**obs.options, "only": f"%{name}"}, obs.info)
            module = copy_module(prepared)
            PassManager([one] + after, ctx=ctx, verify_each=False).run(module)
        stats = _output_errors(module, samples, reference)
        worst = min(stats, key=lambda s: s.sqnr_db)
        rows.append(SensitivityRow(name, op_name, loc, worst.sqnr_db,
                                   min(s.cosine for s in stats),
                                   max(s.max_abs for s in stats)))
    rows.sort(key=lambda r: r.sqnr_db if r.sqnr_db is not None else float("inf"))
    return rows
