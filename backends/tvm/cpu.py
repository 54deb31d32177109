"""CPU (llvm) schedules for the kernels TVM legalizes without one.

After LegalizeOps and fusion, every fused elementwise chain (requantize, residual add,
casts, the float formulas of backends/tvm/floatmath.py) is a PrimFunc of one block per
op, each writing a full-size intermediate buffer, in scalar loops on one thread; softmax
and the norms are the same with reductions in between. `ScheduleForCpu` schedules each
such PrimFunc (the hand-written integer kernels of backends/tvm/kernels are already
scheduled and skipped):

- injective functions: every block inlined into its consumer, except the stored values of
  the float formulas ("keep" stages: inlined, their expression trees grow exponentially);
  each remaining block's trailing loops vectorised, its outer loops fused and run in
  parallel when there is enough work;
- functions with reductions (softmax, layer/group norm, mean, pooling): single-consumer
  injective producers inlined; then dlight's CPU reduction rule (rows in parallel,
  injective blocks vectorised), else each block's leading spatial loops in parallel.

No schedule here reorders a reduction: each one still adds in index order, one element
after the other, as the numpy interpreter does (docs/semantics.md), so the builds stay
bit-exact. Vectorising a float block keeps every product fenced (backends/tvm/exact.py):
the fence is an LLVM intrinsic on vector types too.
"""

from __future__ import annotations

import logging

import tvm
from tvm import s_tir, tirx
from tvm.ir.transform import module_pass

log = logging.getLogger(__name__)

KEEP_STAGE = "keep"  # block name of floatmath's stored values (backends/tvm/floatmath.py)
LANES = 16  # elements per vector chunk (int8 outputs: one xmm; float32: two ymm)
PARALLEL_MIN = 1 << 14  # elements below which a block runs on one thread


@module_pass(opt_level=0, name="QirCpuSchedule")
class ScheduleForCpu:
    """Schedule every PrimFunc of the module that is not scheduled yet (see the module
    docstring); a function no rule applies to is left as it is."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        updated = {}
        for gvar, func in mod.functions_items():
            if not isinstance(func, tirx.PrimFunc) or int(
                    func.attrs.get("tirx.is_scheduled", 0)) == 1:
                continue
            try:
                scheduled = schedule_kernel(func)
            except Exception as e:  # noqa: BLE001  (an unforeseen shape: keep it unscheduled)
                log.debug("no CPU schedule for %s: %s", gvar.name_hint, e)
                continue
            if scheduled is not None:
                updated[gvar] = scheduled.with_attr("tirx.is_scheduled", True)
        for gvar, func in updated.items():
            mod[gvar] = func
        return mod


def schedule_kernel(func: tirx.PrimFunc) -> tirx.PrimFunc | None:
    """`func` scheduled for the current llvm target, or None when it has no blocks to
    schedule (already opaque, or not in normal form)."""
    from tvm.s_tir.dlight.analysis import normalize_prim_func

    sch = s_tir.Schedule(func)
    infos = normalize_prim_func(sch)
    if not infos:
        return None
    if all(b.is_injective() for b in infos):
        for block in _inline(sch, [b.block_rv for b in infos], single_consumer=False):
            _schedule_spatial(sch, block)
        return sch.mod["main"]
    _inline(sch, [b.block_rv for b in infos if b.is_injective()], single_consumer=True)
    inlined = sch.mod["main"]
    reduced = _reduction_rule(inlined)
    if reduced is not None:
        return reduced
    sch = s_tir.Schedule(inlined)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        _parallel_spatial_prefix(sch, block)
    return sch.mod["main"]


def _inline(sch: s_tir.Schedule, blocks: list, single_consumer: bool) -> list:
    """Inline what can be of `blocks` (into their consumers, else their producer into
    them); returns the blocks left. Keep stages stay; with `single_consumer`, so do
    blocks read by several others (inlined, they would be computed more than once)."""
    left = list(blocks)
    progress = True
    while progress:
        progress = False
        for block in list(left):
            name = sch.get(block).name_hint
            if name.startswith(KEEP_STAGE):
                continue
            if single_consumer and len(sch.get_consumers(block)) > 1:
                continue
            for inline in (sch.compute_inline, sch.reverse_compute_inline):
                try:
                    inline(block)
                except Exception:  # noqa: BLE001  (not inlinable: an output, a reduction)
                    continue
                left.remove(block)
                progress = True
                break
    return left


def _extent(sch: s_tir.Schedule, loop) -> int | None:
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tirx.IntImm) else None


def _schedule_spatial(sch: s_tir.Schedule, block) -> None:
    """Vectorise the trailing loops of an injective block (fused until they hold a
    multiple of LANES, or enough elements), fuse the others and run them in parallel
    when the block is big enough."""
    from backends.tvm.kernels.common import vectorize_inner

    loops = sch.get_loops(block)
    extents = [_extent(sch, lp) for lp in loops]
    if not loops or None in extents:
        return
    total = 1
    for e in extents:
        total *= e
    k, inner = len(loops) - 1, extents[-1]
    while k > 0 and inner % LANES and inner < 4 * LANES:
        k -= 1
        inner *= extents[k]
    vec = sch.fuse(*loops[k:]) if k < len(loops) - 1 else loops[k]
    parallel = total >= PARALLEL_MIN
    if k == 0:  # one loop for everything: its vector chunks in parallel
        if inner % LANES == 0 and inner > LANES:
            outer, vec = sch.split(vec, [None, LANES])
            if parallel:
                sch.parallel(outer)
        vectorize_inner(sch, vec, LANES)
        return
    outer = sch.fuse(*loops[:k]) if k > 1 else loops[0]
    if parallel:
        sch.parallel(outer)
    vectorize_inner(sch, vec, LANES)


def _parallel_spatial_prefix(sch: s_tir.Schedule, block) -> None:
    """Run the leading spatial loops of a root block in parallel (when big enough)."""
    stmt = sch.get(block)
    loops = sch.get_loops(block)
    spatial = []
    for loop, iv in zip(loops, stmt.iter_vars):
        if iv.iter_type != tirx.IterVar.DataPar or _extent(sch, loop) is None:
            break
        spatial.append(loop)
    if not spatial:
        return
    work = 1
    for loop in spatial:
        work *= _extent(sch, loop)
    if work < 2:
        return
    fused = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
    sch.parallel(fused)


def _reduction_rule(func: tirx.PrimFunc) -> tirx.PrimFunc | None:
    """dlight's CPU reduction schedule (softmax, norms: rows in parallel, injective
    blocks vectorised, reductions in order), or None when it does not apply."""
    from tvm.s_tir import dlight as dl

    target = tvm.target.Target.current(allow_none=False)
    sch = dl.cpu.Reduction().apply(func, target, False)
    return sch.mod["main"] if sch is not None else None
