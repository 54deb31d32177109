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
  injective producers inlined; then, as dlight's CPU reduction rule does, every block
  computed row by row under the last block's leading spatial loops (rows in parallel,
  injective blocks vectorised), else each block's leading spatial loops in parallel.

A kernel runs in parallel only when its work (see `_work`) outweighs starting TVM's
thread pool.

No schedule here reorders a reduction: each one still adds in index order, one element
after the other, as the numpy interpreter does (docs/semantics.md), so the builds stay
bit-exact. Vectorising a float block keeps every product fenced (backends/tvm/exact.py):
the fence is an LLVM intrinsic on vector types too.
"""

from __future__ import annotations

import logging
import re

import tvm
from tvm import s_tir, tirx
from tvm.ir.transform import module_pass

log = logging.getLogger(__name__)

KEEP_STAGE = "keep"  # block name of floatmath's stored values (backends/tvm/floatmath.py)
LANES = 16  # elements per vector chunk (int8 outputs: one xmm; float32: two ymm)
PARALLEL_WORK = 1 << 17  # see _work: below it a kernel runs on one thread
SMALL_EXPR = 400  # TVMScript characters of a block cheap enough to copy (see _inline)


@module_pass(opt_level=0, name="QirCpuSchedule")
class ScheduleForCpu:
    """Schedule every PrimFunc of the module that is not scheduled yet (see the module
    docstring); a function no rule applies to is left as it is, and its name and the
    reason recorded in `unscheduled`."""

    def __init__(self):
        self.unscheduled: dict[str, str] = {}

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        updated = {}
        for gvar, func in mod.functions_items():
            if not isinstance(func, tirx.PrimFunc) or int(
                    func.attrs.get("tirx.is_scheduled", 0)) == 1:
                continue
            try:
                scheduled = default_schedule(func)
            except Exception as e:  # noqa: BLE001  (an unforeseen shape: keep it unscheduled)
                log.debug("no CPU schedule for %s: %s", gvar.name_hint, e)
                self.unscheduled[gvar.name_hint] = f"{type(e).__name__}: {e}"[:300]
                continue
            if scheduled is None:
                self.unscheduled[gvar.name_hint] = "no blocks in normal form"
            else:
                updated[gvar] = scheduled.with_attr("tirx.is_scheduled", True)
        for gvar, func in updated.items():
            mod[gvar] = func
        return mod


def default_schedule(func: tirx.PrimFunc) -> tirx.PrimFunc | None:
    """`func` as `ScheduleForCpu` schedules it (None: no blocks to schedule); raises
    when no rule applies."""
    scheduled = schedule_kernel(func)
    if scheduled is not None and not well_formed(scheduled):
        # TVM's compute_inline has dropped a buffer that was still read (seen on long
        # where/shift chains): schedule without inlining.
        scheduled = schedule_kernel(func, inline=False)
        if scheduled is not None and not well_formed(scheduled):
            raise ValueError("the schedule is not well formed")
    return scheduled


def well_formed(func: tirx.PrimFunc) -> bool:
    """Whether every buffer `func` reads is a parameter or allocated: TVMScript declares
    any other in the body (`name = T.Buffer(...)`). (TVM's verify_well_formed does not
    take s_tir blocks.)"""
    return re.search(r"^\s+\w+ = T\.Buffer\(", func.script(), re.MULTILINE) is None


def schedule_kernel(func: tirx.PrimFunc, inline: bool = True) -> tirx.PrimFunc | None:
    """`func` scheduled for the current llvm target (without inlining any block when
    not `inline`), or None when it has no blocks to schedule (already opaque, or not in
    normal form)."""
    from tvm.s_tir.dlight.analysis import normalize_prim_func

    sch = s_tir.Schedule(func)
    infos = normalize_prim_func(sch)
    if not infos:
        return None
    parallel = _work(func, infos) >= PARALLEL_WORK
    if all(b.is_injective() for b in infos):
        left = [b.block_rv for b in infos]
        if inline:
            left = _inline(sch, left, single_consumer=False)
        # The last block writes the output; the others (kept values, values read at
        # two places) are computed chunk by chunk under its loops where they can be.
        *inner, last = left
        at = _schedule_spatial(sch, last, parallel)
        if at is not None:
            inner = _compute_kept_at(sch, inner, at)
        for block in inner:
            _schedule_spatial(sch, block, parallel)
        return sch.mod["main"]
    if inline:
        _inline(sch, [b.block_rv for b in infos if b.is_injective()], single_consumer=True)
    inlined = sch.mod["main"]
    try:
        rows = _schedule_rows(inlined, parallel)
    except Exception:  # noqa: BLE001  (compute_at refused: schedule block by block)
        rows = None
    if rows is not None:
        return rows
    sch = s_tir.Schedule(inlined)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        _schedule_reduction_block(sch, block, parallel)
    return sch.mod["main"]


def inline_for_tuning(func: tirx.PrimFunc) -> tirx.PrimFunc | None:
    """`func` with the blocks `schedule_kernel` inlines inlined and its loops untouched:
    the workload meta-schedule tunes (backends/tvm/tune.py). Every block left is marked
    so that meta-schedule's AutoInline leaves it alone: kept stages and values read
    twice grow exponentially when inlined. None when `func` has no blocks in normal
    form, or inlining left it ill-formed."""
    from tvm.s_tir.dlight.analysis import normalize_prim_func

    sch = s_tir.Schedule(func)
    infos = normalize_prim_func(sch)
    if not infos:
        return None
    injective = all(b.is_injective() for b in infos)
    _inline(sch, [b.block_rv for b in infos if b.is_injective()],
            single_consumer=not injective)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        sch.annotate(block, "meta_schedule.inline_rule", "disable")
        if "schedule_rule" in sch.get(block).annotations:  # TOPI's, for rules qir lacks
            sch.unannotate(block, "schedule_rule")
    inlined = sch.mod["main"]
    return inlined if well_formed(inlined) else None


def _work(func: tirx.PrimFunc, infos) -> float:
    """A rough cost of running `func` once: TVM's count of its arithmetic plus the
    iterations of its blocks. Below PARALLEL_WORK, starting the thread pool (~1 us)
    costs more than the second core saves."""
    flops = float(tvm.get_global_func("s_tir.analysis.EstimateTIRFlops")(func.body))
    iterations = 0
    for info in infos:
        n = 1
        for d in info.dom():
            n *= int(d) if isinstance(d, (int, tirx.IntImm)) else 1
        iterations += n
    return flops + iterations


def _inline(sch: s_tir.Schedule, blocks: list, single_consumer: bool) -> list:
    """Inline what can be of `blocks` (into their consumers, else their producer into
    them); returns the blocks left. Keep stages stay. A value is only inlined where it
    is loaded once, unless its expression is small (SMALL_EXPR): copies of copies grow
    exponentially (a chain of squarings; diamonds of where/select). With
    `single_consumer`, a block read by several others stays too."""
    left = list(blocks)
    progress = True
    while progress:
        progress = False
        for block in list(left):
            if sch.get(block).name_hint.startswith(KEEP_STAGE):
                continue
            if single_consumer and len(sch.get_consumers(block)) > 1:
                continue
            for inline, allowed in ((sch.compute_inline, _may_inline),
                                    (sch.reverse_compute_inline, _may_reverse_inline)):
                if not allowed(sch, block):
                    continue
                try:
                    inline(block)
                except Exception:  # noqa: BLE001  (not inlinable: an output, a reduction)
                    continue
                left.remove(block)
                progress = True
                break
    return left


def _small(sch: s_tir.Schedule, block) -> bool:
    return len(str(sch.get(block).body)) <= SMALL_EXPR


def _loads(sch: s_tir.Schedule, reader, writer) -> int:
    """At how many places block `reader` loads what block `writer` writes."""
    writes = sch.get(writer).writes
    if len(writes) != 1:
        return 2
    name = re.escape(writes[0].source.name)
    return len(re.findall(rf"\b{name}\[", str(sch.get(reader).body)))


def _may_inline(sch: s_tir.Schedule, block) -> bool:
    """Whether inlining `block` into its consumers copies it at most once (or it is
    small)."""
    consumers = sch.get_consumers(block)
    if len(consumers) == 1 and _loads(sch, consumers[0], block) == 1:
        return True
    return _small(sch, block)


def _may_reverse_inline(sch: s_tir.Schedule, block) -> bool:
    """Whether inlining `block` into its producer copies the producer's value at most
    once (or the producer is small)."""
    return all(_loads(sch, block, p) <= 1 or _small(sch, p)
               for p in sch.get_producers(block))


def _extent(sch: s_tir.Schedule, loop) -> int | None:
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tirx.IntImm) else None


def _schedule_spatial(sch: s_tir.Schedule, block, parallel: bool):
    """Vectorise the trailing loops of an injective block (fused until they hold a
    multiple of LANES, or enough elements), fuse the others and run them in parallel
    when `parallel`. Returns the loop just above the vector chunk (where producers can
    be computed chunk by chunk), or None."""
    from backends.tvm.kernels.common import vectorize_inner

    loops = sch.get_loops(block)
    extents = [_extent(sch, lp) for lp in loops]
    if not loops or None in extents:
        return None
    k, inner = len(loops) - 1, extents[-1]
    while k > 0 and inner % LANES and inner < 4 * LANES:
        k -= 1
        inner *= extents[k]
    vec = sch.fuse(*loops[k:]) if k < len(loops) - 1 else loops[k]
    if _divides_by_variable(sch, block):  # TVM 0.27 miscompiles it vectorised
        if parallel and k:
            sch.parallel(sch.fuse(*loops[:k]) if k > 1 else loops[0])
        return None
    outer = None
    if k:
        outer = sch.fuse(*loops[:k]) if k > 1 else loops[0]
    elif inner % LANES == 0 and inner > LANES:  # one loop for everything: chunk it
        outer, vec = sch.split(vec, [None, LANES])
    if outer is not None and parallel:
        sch.parallel(outer)
    vectorize_inner(sch, vec, LANES)
    return sch.get_loops(block)[-2] if len(sch.get_loops(block)) > 1 else None


_VARIABLE_DIVISOR = re.compile(r"(//|%) (?!T\.u?int\d+\(|-?\d)")


def _divides_by_variable(sch: s_tir.Schedule, block) -> bool:
    """Whether the block divides integers by a non-constant: vectorised, TVM 0.27's
    lowering of such a floordiv fails ("mismatched types int32x10 vs. int32")."""
    return _VARIABLE_DIVISOR.search(str(sch.get(block).body)) is not None


def divides_by_variable(func: tirx.PrimFunc) -> bool:
    """Whether any block of `func` divides integers by a non-constant (see
    `_divides_by_variable`)."""
    return _VARIABLE_DIVISOR.search(func.script()) is not None


def _compute_kept_at(sch: s_tir.Schedule, kept: list, loop) -> list:
    """Compute the blocks `kept` chunk by chunk under `loop` (the output's loop above
    its vector chunk), last producer first, each vectorised; returns those that could
    not be moved (an output of its own, a region compute_at cannot cover) or should not
    be (where the chunks' regions overlap so much that more than twice its values would
    be computed)."""
    from backends.tvm.kernels.common import vectorize_inner

    depth = _depth(sch, loop) + 1
    left = []
    for block in reversed(kept):
        if not _reads_declared(sch, block):
            left.append(block)
            continue
        alone = _iterations(sch, block)
        try:
            trial = sch.copy()
            trial.compute_at(block, loop, preserve_unit_loops=True)
        except Exception:  # noqa: BLE001  (a region compute_at cannot cover)
            left.append(block)
            continue
        if _iterations(trial, block) > 2 * alone:
            # chunk by chunk it would recompute overlapping windows (a consumer reading a
            # shifted slice of it, as RoPE's rotate_half does): computed whole instead
            left.append(block)
            continue
        sch.compute_at(block, loop, preserve_unit_loops=True)
        mine = sch.get_loops(block)[depth:]
        if mine:
            vectorize_inner(sch, sch.fuse(*mine) if len(mine) > 1 else mine[0], LANES)
    return left


def _reads_declared(sch: s_tir.Schedule, block) -> bool:
    """Whether every consumer of `block` declares all it reads of it. compute_at sizes
    the chunk it computes from the declared reads, and a fused kernel can declare too
    little: RoPE's cat(freqs, freqs) reads freqs at [j] and [j - half] but declares only
    the second, so freqs would be computed for the second half alone, and the first
    half read before it is written."""
    from tvm.s_tir.analysis import get_sblock_read_write_region

    produced = {w.source.same_as for w in sch.get(block).writes}
    for consumer in sch.get_consumers(block):
        stmt = sch.get(consumer)
        buffers = {r.source: r.source for r in [*stmt.reads, *stmt.writes]}
        detected = get_sblock_read_write_region(stmt, buffers)[0]
        declared = {str(r) for r in stmt.reads}
        for region in detected:
            if any(f(region.source) for f in produced) and str(region) not in declared:
                return False
    return True


def _iterations(sch: s_tir.Schedule, block) -> int:
    """How many times the loops around `block` run it (constant extents)."""
    n = 1
    for loop in sch.get_loops(block):
        extent = sch.get(loop).extent
        n *= int(extent) if isinstance(extent, (int, tirx.IntImm)) else 1
    return n


def _depth(sch: s_tir.Schedule, loop) -> int:
    """How many loops enclose `loop`."""
    n, sref = 0, sch.get_sref(loop).parent
    while sref is not None and isinstance(sref.stmt, tirx.For):
        n, sref = n + 1, sref.parent
    return n


def _schedule_reduction_block(sch: s_tir.Schedule, block, parallel: bool) -> None:
    """A root block of a function with reductions, when dlight's rule does not apply:
    its leading spatial loops fused (and run in parallel when `parallel`)."""
    stmt = sch.get(block)
    loops = sch.get_loops(block)
    spatial = []
    for loop, iv in zip(loops, stmt.iter_vars):
        if iv.iter_type != tirx.IterVar.DataPar or _extent(sch, loop) is None:
            break
        spatial.append(loop)
    if not spatial or not parallel:
        return
    fused = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
    sch.parallel(fused)


def _schedule_rows(func: tirx.PrimFunc, parallel: bool) -> tirx.PrimFunc | None:
    """Softmax, norms, sums (after dlight's CPU reduction rule): every block computed
    under the leading spatial loops of the last one (rows, in parallel when `parallel`),
    injective blocks vectorised, reductions left in order. None when the blocks do not
    share leading spatial loops."""
    from tvm.s_tir.dlight.analysis import normalize_prim_func

    from backends.tvm.kernels.common import vectorize_inner

    sch = s_tir.Schedule(func)
    infos = normalize_prim_func(sch)
    if not infos or any(not b.dom_kind().startswith("S") for b in infos):
        return None
    lead = min(len(b.dom_kind()) - len(b.dom_kind().lstrip("S")) for b in infos)
    last = infos[-1]
    loops = sch.get_loops(last.block_rv)
    rows = sch.fuse(*loops[:lead]) if lead > 1 else loops[0]
    if parallel:
        sch.parallel(rows)
    for info in reversed(infos[:-1]):
        sch.compute_at(info.block_rv, rows, preserve_unit_loops=True)
    depth = _depth(sch, rows) + 1
    for info in infos:
        mine = sch.get_loops(info.block_rv)[depth:]
        if info.is_injective() and mine:
            vectorize_inner(sch, sch.fuse(*mine) if len(mine) > 1 else mine[0], LANES)
    return sch.mod["main"]
