"""Optional tuning of the llvm build with TVM meta-schedule (`qir compile --tune N`).

The default llvm build needs no tuning: the integer kernels are hand-scheduled
(backends/tvm/kernels) and every other fused kernel gets qir's rule-based CPU schedule
(backends/tvm/cpu.py). `Tuning(trials=N)` passed to `build` searches further, per kernel:

1. The workload is the kernel after qir's inlining (`cpu.inline_for_tuning`: what is
   left is marked so that meta-schedule inlines nothing more).
2. meta-schedule searches its default llvm space (tiling, parallel, vectorise, unroll,
   compute-at) for N trials, built and timed in this process.
3. The best candidate is built again and timed against qir's default schedule in the same
   way, and its outputs are compared bit for bit with the default's on random inputs.
   It is kept only when it is both exact and faster.
4. The outcome (the winning schedule's trace, or "the default wins") is stored in a cache
   keyed by the kernel's shape: its TIR with every constant other than shapes masked, the
   target and the TVM version. A later build finds it there and tunes nothing, and so
   does any model with a kernel of the same shape.

What is tuned: every kernel `ScheduleForCpu` would schedule, except those that reduce in
float (softmax, norms: a schedule may reorder a float sum and change its bits) and those
that divide by a variable (TVM 0.27 miscompiles that vectorised). The hand-written integer
kernels are not re-tuned: meta-schedule's space has no int16 `vpmaddwd` tensorization
and its plain-layout schedules are slower (../shared/tvm-0.27-notes.md).

The cache lives in `$QIR_CACHE_DIR/tune` (default `~/.cache/qir/tune`), one JSON file per
target; it is safe to delete.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import linecache
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tvm
from tvm import s_tir, tirx

from backends.tvm import cpu
from qir.diagnostics import QirError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the key or the record changes meaning
TRIALS_PER_ITER = 16  # candidates built and timed per meta-schedule round
MIN_REPEAT_MS = 20  # each timing runs the kernel at least this long
REPEAT = 5  # timings per candidate; the median counts


SEARCHES = ("auto", "evolutionary", "replay")


def _have_xgboost() -> bool:
    import importlib.util

    return importlib.util.find_spec("xgboost") is not None


@dataclass
class Tuning:
    """How `build` tunes: `trials` meta-schedule candidates per kernel, outcomes cached
    in `cache_dir`. `search`: "evolutionary" (meta-schedule's default, with its XGBoost
    cost model: needs `pip install -e '.[tune]'`), "replay" (random candidates of the
    same space) or "auto" (evolutionary when xgboost is installed). After the build,
    `outcomes` lists one `Outcome` per tunable kernel."""

    trials: int
    cache_dir: Path | None = None
    progress: bool = False
    seed: int = 0
    search: str = "auto"
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self):
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) \
                or self.trials < 1:
            raise QirError(f"tuning needs at least 1 trial per kernel, got {self.trials!r}")
        if self.search not in SEARCHES:
            raise QirError(f"unknown tuning search {self.search!r}: one of "
                           f"{', '.join(SEARCHES)}")
        if self.search == "auto":
            self.search = "evolutionary" if _have_xgboost() else "replay"
        self.cache_dir = Path(self.cache_dir) if self.cache_dir else default_cache_dir()

    def summary(self) -> str:
        """One line: kernels tuned/cached, how many beat the default, time saved."""
        if not self.outcomes:
            return "tuning: no tunable kernels"
        tuned = sum(not o.cached for o in self.outcomes)
        faster = [o for o in self.outcomes if o.applied]
        before = sum(o.default_us for o in self.outcomes)
        after = sum(o.best_us for o in self.outcomes)
        return (f"tuning: {len(self.outcomes)} kernels ({tuned} tuned now, "
                f"{len(self.outcomes) - tuned} from the cache), {len(faster)} faster than "
                f"the default schedule; their sum {before:.1f} -> {after:.1f} us")


@dataclass
class Outcome:
    """What tuning gave one kernel: its default and best time (us), whether the tuned
    schedule is used, and whether the result came from the cache."""

    kernel: str
    default_us: float
    tuned_us: float | None
    applied: bool
    cached: bool
    note: str = ""

    @property
    def best_us(self) -> float:
        return self.tuned_us if self.applied else self.default_us


def default_cache_dir() -> Path:
    root = os.environ.get("QIR_CACHE_DIR")
    if root:
        return Path(root) / "tune"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "qir" / "tune"


# --- the cache -------------------------------------------------------------------------------


class TuneCache:
    """Records keyed by kernel shape (see `shape_key`), one JSON file per target.
    Writes go through a temporary file and a rename, so a reader never sees half a file
    and two builds writing at once lose at most each other's new records."""

    def __init__(self, directory: Path, target: tvm.target.Target):
        ident = json.dumps(_target_json(target), sort_keys=True)
        digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
        self.path = Path(directory) / f"{target.kind.name}-{digest}.json"
        self.target = ident

    def load(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("ignoring the unreadable tuning cache %s: %s", self.path, e)
            return {}
        if data.get("format") != CACHE_FORMAT or data.get("tvm") != tvm.__version__:
            return {}
        return data.get("records", {})

    def store(self, key: str, record: dict) -> None:
        records = self.load()
        records[key] = record
        data = {"format": CACHE_FORMAT, "tvm": tvm.__version__, "target": self.target,
                "records": records}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tune-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as e:
            raise QirError(f"cannot write the tuning cache {self.path}: {e}; pass another "
                           "directory (--tune-cache DIR or QIR_CACHE_DIR)") from e


def _target_json(target: tvm.target.Target) -> dict:
    return {k: str(v) for k, v in target.export().items()}


_LITERAL = re.compile(r"(?<![\w.])-?\d+(\.\d+)?(e[+-]?\d+)?")
_SHAPE_LINE = re.compile(r"T\.(Buffer|grid|alloc_buffer|axis|match_buffer)\(|in range\(")


def shape_key(workload: tirx.PrimFunc) -> str:
    """The kernel's shape: its TVMScript with every number masked except on the lines
    that declare buffers, loops and block axes. Kernels that differ only in their
    constants (a requantize's multiplier, a scale) share a key, and a schedule."""
    lines = []
    for line in workload.script().splitlines():
        lines.append(line if _SHAPE_LINE.search(line) else _LITERAL.sub("#", line))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# --- what is tunable -------------------------------------------------------------------------


def tunable(func: tirx.PrimFunc) -> tuple[tirx.PrimFunc | None, str]:
    """The workload meta-schedule may tune for `func` (or None) and why not."""
    if int(func.attrs.get("tirx.is_scheduled", 0)) == 1:
        return None, "hand-scheduled kernel"
    if _reduces_in_float(func):
        return None, "reduces in float (a tuned schedule may reorder the sum)"
    if cpu.divides_by_variable(func):
        return None, "divides by a variable (TVM miscompiles it vectorised)"
    try:
        workload = cpu.inline_for_tuning(func)
    except Exception as e:  # noqa: BLE001
        return None, f"not in normal form: {type(e).__name__}"
    if workload is None:
        return None, "no blocks in normal form"
    return workload.with_attr("global_symbol", "main"), ""


def _reduces_in_float(func: tirx.PrimFunc) -> bool:
    sch = s_tir.Schedule(func)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        stmt = sch.get(block)
        if any(iv.iter_type == tirx.IterVar.CommReduce for iv in stmt.iter_vars) and any(
                str(w.source.dtype).startswith(("float", "bfloat")) for w in stmt.writes):
            return True
    return False


# --- building and timing in this process ----------------------------------------------------


def _compile(func: tirx.PrimFunc, target: tvm.target.Target) -> tvm.runtime.Module:
    return tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                       target).mod


def _random_args(func: tirx.PrimFunc, rng: np.random.Generator) -> list[np.ndarray]:
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    return [_random_arg(info.as_json(), rng) for info in ArgInfo.from_prim_func(func)]


def _random_arg(info, rng: np.random.Generator) -> np.ndarray:
    """A random array for a meta-schedule ArgInfo (["TENSOR", dtype, shape]): integers
    over their range (at most +-2^20, so that sums stay far from overflow), floats
    normal."""
    _, dtype, shape = info
    dtype, shape = str(dtype), [int(d) for d in shape]
    if dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.startswith(("int", "uint")):
        limits = np.iinfo(dtype)
        lo, hi = max(int(limits.min), -(1 << 20)), min(int(limits.max), 1 << 20)
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _time_us(rt: tvm.runtime.Module, args: list) -> float:
    dev = tvm.cpu()
    timer = rt.time_evaluator("main", dev, number=1, repeat=REPEAT,
                              min_repeat_ms=MIN_REPEAT_MS)
    return float(np.median(timer(*args).results)) * 1e6


def _outputs(rt: tvm.runtime.Module, inputs: list[np.ndarray]) -> list[np.ndarray]:
    args = [tvm.runtime.tensor(a.copy()) for a in inputs]
    rt["main"](*args)
    return [a.numpy() for a in args]


def _same_bits(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    for x, y in zip(a, b):
        if x.dtype.kind == "f":
            both_nan = np.isnan(x) & np.isnan(y)
            bits = x.view(f"u{x.dtype.itemsize}") == y.view(f"u{y.dtype.itemsize}")
            if not np.all(bits | both_nan):
                return False
        elif not np.array_equal(x, y):
            return False
    return True


# --- meta-schedule, in process -------------------------------------------------------------


def _in_process_builder_runner():
    """A meta-schedule builder and runner that build and time in this process: the
    default ones pickle work to fresh worker processes, each of which imports TVM's
    tensor intrinsics again (45 s here)."""
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture, RunnerResult
    from tvm.ir.utils import derived_object

    built: dict[str, tvm.runtime.Module] = {}

    @derived_object
    class InProcessBuilder(PyBuilder):
        def build(self, build_inputs):
            results = []
            for inp in build_inputs:
                try:
                    rt = tvm.compile(inp.mod, inp.target).mod
                except Exception as e:  # noqa: BLE001  (a candidate TVM cannot build)
                    results.append(BuilderResult(None, f"{type(e).__name__}: {e}"[:500]))
                    continue
                key = f"qir-in-process-{len(built)}-{id(rt)}"
                built[key] = rt
                results.append(BuilderResult(key, None))
            return results

    @derived_object
    class InProcessRunner(PyRunner):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(0)

        def run(self, runner_inputs):
            futures = []
            for inp in runner_inputs:
                rt = built.pop(inp.artifact_path, None)
                try:
                    args = [tvm.runtime.tensor(_random_arg(i.as_json(), self.rng))
                            for i in inp.args_info]
                    result = RunnerResult([_time_us(rt, args) * 1e-6], None)
                except Exception as e:  # noqa: BLE001  (a candidate that fails to run)
                    result = RunnerResult(None, f"{type(e).__name__}: {e}"[:500])
                futures.append(_Done(result))
            return futures

    @derived_object
    class _Done(PyRunnerFuture):
        def __init__(self, result):
            super().__init__()
            self.res = result

        def done(self):
            return True

        def result(self):
            return self.res

    return InProcessBuilder(), InProcessRunner()


@contextlib.contextmanager
def _fast_tvmscript():
    """TVMScript's `T.prim_func` calls `inspect.stack()`, which looks up the source file
    of every frame; importing TVM's tensor intrinsics (as meta-schedule does) parses
    hundreds of them and takes 45 s here. The parser uses only the frames and the
    source line of one of them, so hand it those."""
    original = inspect.stack

    def stack(context: int = 1):
        frames, frame = [], sys._getframe(1)
        while frame is not None:
            code = frame.f_code
            lines = [linecache.getline(code.co_filename, frame.f_lineno)] \
                if len(frames) < 4 else None
            frames.append(inspect.FrameInfo(frame, code.co_filename, frame.f_lineno,
                                            code.co_name, lines, 0 if lines else None))
            frame = frame.f_back
        return frames

    inspect.stack = stack
    try:
        yield
    finally:
        inspect.stack = original


def _search(workload: tirx.PrimFunc, target: tvm.target.Target, trials: int, seed: int,
            name: str, search: str) -> s_tir.Schedule | None:
    """The best schedule meta-schedule finds for `workload` in `trials` candidates."""
    from tvm.s_tir import meta_schedule as ms

    if search == "evolutionary":  # guided by an XGBoost cost model trained as it goes
        strategy = ms.search_strategy.EvolutionarySearch(
            population_size=min(512, max(64, 8 * trials)))
        cost_model = "xgb"
    else:  # random candidates from the design space
        strategy, cost_model = ms.search_strategy.ReplayTrace(), "random"

    with _fast_tvmscript():
        import tvm.s_tir.tensor_intrin  # noqa: F401  (what TuneContext imports)
    builder, runner = _in_process_builder_runner()
    database = ms.database.MemoryDatabase()
    mod = tvm.IRModule({"main": workload})
    with tempfile.TemporaryDirectory(prefix="qir-tune-") as work_dir:
        context = ms.TuneContext(mod=mod, target=target, space_generator="post-order-apply",
                                 search_strategy=strategy, task_name=name,
                                 rand_state=seed, num_threads=_cores(target),
                                 logger=logging.getLogger("qir.tune.meta_schedule"))
        ms.tune.tune_tasks(
            tasks=[context], task_weights=[1.0], work_dir=work_dir,
            max_trials_global=trials, max_trials_per_task=trials,
            num_trials_per_iter=min(trials, TRIALS_PER_ITER), builder=builder, runner=runner,
            database=database, cost_model=cost_model,
            measure_callbacks=[ms.measure_callback.AddToDatabase(),
                               ms.measure_callback.UpdateCostModel()],
            task_scheduler="round-robin")
    return database.query_schedule(mod, target, workload_name="main")


def _apply(workload: tirx.PrimFunc, record: dict) -> tirx.PrimFunc | None:
    """`workload` scheduled by the record's trace, or None when the trace does not
    apply (a cache written by another qir whose kernels changed)."""
    try:
        sch = s_tir.Schedule(workload)
        s_tir.Trace.apply_json_to_schedule(tvm.ir.load_json(record["trace"]), sch)
        func = sch.mod["main"]
    except Exception as e:  # noqa: BLE001
        log.debug("the tuned schedule of %s does not apply: %s", record.get("kernel"), e)
        return None
    return func if cpu.well_formed(func) else None


def _cores(target: tvm.target.Target) -> int:
    cores = target.attrs.get("num-cores")
    return int(cores) if cores is not None else max(1, len(os.sched_getaffinity(0)))


# --- tuning a module -------------------------------------------------------------------------


def tune_and_apply(mod: tvm.IRModule, target: tvm.target.Target, tuning: Tuning
                   ) -> tvm.IRModule:
    """Tune (or find in the cache) every tunable kernel of `mod` and put in the tuned
    schedules that won; the rest is left for `cpu.ScheduleForCpu`."""
    from tqdm import tqdm

    cache = TuneCache(tuning.cache_dir, target)
    records = cache.load()
    kernels = []
    for gvar, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc):
            workload, why = tunable(func)
            if workload is not None:
                kernels.append((gvar, func, workload, shape_key(workload)))
            elif why != "hand-scheduled kernel":
                log.debug("not tuning %s: %s", gvar.name_hint, why)
    done: dict[str, dict] = {}
    for gvar, func, workload, key in tqdm(kernels, desc="tune", unit="kernel",
                                          disable=not tuning.progress, leave=False):
        record = done.get(key) or records.get(key)
        cached = record is not None and record.get("trials", 0) >= tuning.trials
        if not cached:
            with target:
                fresh = _tune_kernel(func, workload, target, tuning, gvar.name_hint)
            record = _better(record, fresh) if record is not None else fresh
            cache.store(key, record)
        done[key] = record
        scheduled = _apply(workload, record) if record.get("trace") else None
        if record.get("trace") and scheduled is None:
            note = "the cached schedule no longer applies; default used"
        else:
            note = record.get("note", "")
        tuning.outcomes.append(Outcome(gvar.name_hint, record["default_us"],
                                       record.get("tuned_us"), scheduled is not None,
                                       cached, note))
        if scheduled is not None:
            symbol = func.attrs.get("global_symbol")
            scheduled = scheduled.without_attr("global_symbol") if symbol is None \
                else scheduled.with_attr("global_symbol", symbol)
            mod[gvar] = scheduled.with_attr("tirx.is_scheduled", True)
    return mod


def _better(old: dict, new: dict) -> dict:
    """A search with more trials (`new`) replaces an older record, but keeps the older
    tuned schedule when the new search found none faster."""
    if old.get("trace") and (not new.get("trace") or old["tuned_us"] < new["tuned_us"]):
        return {**new, "trace": old["trace"], "tuned_us": old["tuned_us"],
                "note": "an earlier search found the best schedule"}
    return new


def _tune_kernel(func: tirx.PrimFunc, workload: tirx.PrimFunc, target: tvm.target.Target,
                 tuning: Tuning, name: str) -> dict:
    """Search, then time the best candidate against the default schedule and compare
    their outputs; the record says which won."""
    default = cpu.default_schedule(func)
    default_rt = _compile(default if default is not None else func, target)
    inputs = _random_args(func, np.random.default_rng(tuning.seed))
    reference = _outputs(default_rt, inputs)
    args = [tvm.runtime.tensor(a) for a in inputs]
    record = {"kernel": name, "trials": tuning.trials,
              "default_us": round(_time_us(default_rt, args), 3), "tuned_us": None,
              "trace": None, "note": ""}
    start = time.perf_counter()
    try:
        best = _search(workload, target, tuning.trials, tuning.seed, name,
                       tuning.search)
    except Exception as e:  # noqa: BLE001  (meta-schedule failed on this kernel)
        record["note"] = f"meta-schedule failed: {type(e).__name__}: {e}"[:300]
        return record
    record["search_s"] = round(time.perf_counter() - start, 2)
    if best is None:
        record["note"] = "meta-schedule found no valid schedule"
        return record
    rt = _compile(best.mod["main"], target)
    if not _same_bits(_outputs(rt, inputs), reference):
        record["note"] = "the tuned schedule changed the results; default kept"
        return record
    record["tuned_us"] = round(_time_us(rt, args), 3)
    if record["tuned_us"] < record["default_us"]:
        record["trace"] = tvm.ir.save_json(best.trace.as_json(remove_postproc=False))
    else:
        record["note"] = "the default schedule is as fast"
    return record
