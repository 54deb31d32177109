"""The PassManager: runs a pipeline over a module with instruments.

Instruments (TVM's PassInstrument, LLVM's -print-after-all): verify after each pass (on
by default), print after all passes or after named ones, dump one numbered file per
stage into a directory (`00-import.qir`, `01-fold-batchnorm.qir`, ...), per-pass timing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from qir.diagnostics import QirError, VerifyError
from qir.ir import Module
from qir.printer import print_module
from qir.verifier import verify

from passes.registry import PipelineStep, parse_pipeline


class PassFailed(QirError):
    """A pass raised an error or left the module invalid; names the pass."""


@dataclass
class PassContext:
    """Run-time inputs shared by passes: calibration data (a list of input dicts keyed
    by argument name) for @main and, in `function_data`, for other functions by name
    (a causal LM's @decode), statistics gathered by `calibrate`, and notes for the
    report."""

    calibration_data: list[dict[str, Any]] | None = None
    function_data: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def batches(self, function: str = "main") -> list[dict[str, Any]] | None:
        """The calibration data of @function (None when there is none)."""
        return self.calibration_data if function == "main" else self.function_data.get(
            function)


@dataclass
class PassTiming:
    name: str
    seconds: float
    changed: bool


@dataclass
class PassManager:
    """Runs `pipeline` (a string or parsed steps). Instruments are its fields."""

    pipeline: str | list[PipelineStep] = ""
    verify_each: bool = True
    print_after_all: bool = False
    print_after: tuple[str, ...] = ()
    dump_dir: str | Path | None = None
    timing: bool = False
    out: TextIO = field(default_factory=lambda: sys.stderr)
    ctx: PassContext = field(default_factory=PassContext)
    before_pass: list[Callable[[PipelineStep, Module], None]] = field(default_factory=list)
    after_pass: list[Callable[[PipelineStep, Module], None]] = field(default_factory=list)

    def __post_init__(self):
        self.steps = (parse_pipeline(self.pipeline) if isinstance(self.pipeline, str)
                      else list(self.pipeline))
        self.timings: list[PassTiming] = []
        known = {s.name for s in self.steps}
        for name in self.print_after:
            if name not in known:
                raise QirError(f"--print-after {name}: the pipeline has no pass '{name}'")

    @property
    def pipeline_string(self) -> str:
        return ",".join(str(s) for s in self.steps)

    def run(self, module: Module) -> Module:
        """Run every step in order on `module` (in place); returns the module."""
        dump = Path(self.dump_dir) if self.dump_dir is not None else None
        if dump is not None:
            dump.mkdir(parents=True, exist_ok=True)
            self._dump(module, dump, 0, "import")
        for i, step in enumerate(self.steps, start=1):
            for hook in self.before_pass:
                hook(step, module)
            start = time.perf_counter()
            kwargs = {k.replace("-", "_"): v for k, v in step.options.items()}
            if step.info.wants_ctx:
                kwargs["ctx"] = self.ctx
            try:
                changed = bool(step.info.fn(module, **kwargs))
            except QirError as e:
                raise PassFailed(f"pass '{step}' failed: {e}") from None
            seconds = time.perf_counter() - start
            self.timings.append(PassTiming(step.name, seconds, changed))
            if self.verify_each:
                try:
                    verify(module)
                except VerifyError as e:
                    raise PassFailed(f"the module does not verify after pass '{step}' "
                                     f"(a bug in that pass):\n{e}") from None
            if self.print_after_all or step.name in self.print_after:
                self.out.write(f"// ----- after {step} -----\n{print_module(module)}")
            if dump is not None:
                self._dump(module, dump, i, step.name)
            for hook in self.after_pass:
                hook(step, module)
        if self.timing:
            self.out.write(self.timing_report())
        return module

    def _dump(self, module: Module, directory: Path, index: int, name: str) -> None:
        from qir.io import save

        save(module, directory / f"{index:02d}-{name}.qir")

    def timing_report(self) -> str:
        total = sum(t.seconds for t in self.timings) or 1e-12
        lines = ["===== pass timing =====", f"{'time (ms)':>10} {'share':>6}  pass"]
        for t in self.timings:
            lines.append(f"{t.seconds * 1e3:10.2f} {100 * t.seconds / total:5.1f}%  {t.name}"
                         + ("" if t.changed else "  (no change)"))
        lines.append(f"{total * 1e3:10.2f} 100.0%  total")
        return "\n".join(lines) + "\n"
