"""The benchmark: one command, one run, every system measured side by side.

    .venv/bin/python -m bench.run                    # every model
    .venv/bin/python -m bench.run --models resnet18,minilm --repeat 50 --markdown

For each zoo model (ResNet-style, MobileNet-style, BERT-style, GPT-style) and each real-size
one (torchvision ResNet-18 and MobileNetV2 at 1x3x224x224, the all-MiniLM-L6-v2 encoder
with its pooling at 8x32 tokens: bench/real_models.py) it prints the median and 10th
percentile latency, the ratio to the fastest peer (torch or onnxruntime, whichever is
fastest on that model) and to torch fp32 eager, all measured in this same process, for:
qir int8 (llvm), qir float (llvm), torch fp32 eager, PyTorch int8 (torch.ao: static FX
quantization with the x86 engine for CNNs, quantize_dynamic for transformers),
onnxruntime fp32 and int8 (quantize_static QDQ per-channel for CNNs, quantize_dynamic for
transformers), and the qir numpy interpreter (int8); plus compile time and model size.
Every system is built first, then timed in rounds, the systems taking turns within each
round (`measure_interleaved`), so that load drifting over the run weighs on all alike.
Every system runs with 2 threads. onnxruntime and onnx are bench-only extras
(`pip install -e '.[bench]'`); a system whose package is missing is reported, not faked.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

THREADS = 2
ZOO_MODELS = ("resnet_style", "mobilenet_style", "bert_style", "gpt_style")
REAL_MODELS = ("resnet18", "mobilenet_v2", "minilm")  # bench/real_models.py: real sizes
MODELS = ZOO_MODELS + REAL_MODELS
PEERS = ("torch fp32 eager", "PyTorch int8", "onnxruntime fp32", "onnxruntime int8")


@dataclass
class Result:
    system: str
    median_ms: float | None = None
    compile_s: float | None = None
    size_bytes: int | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)
    p10_ms: float | None = None
    fn: Callable[[], object] | None = field(default=None, repr=False)  # one inference


def quiet_on_threads() -> None:
    """Every system on THREADS threads (torch, TVM and OpenMP pools), and the libraries'
    warnings and advice (onnxruntime.quantization's) off the benchmark's output."""
    import logging
    import warnings

    import torch

    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
    os.environ.setdefault("TVM_NUM_THREADS", str(THREADS))
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    torch.set_num_threads(THREADS)


def median_ms(fn: Callable[[], object], repeat: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure_interleaved(results: list[Result], repeat: int, warmup: int, rounds: int) -> None:
    """Time every result's `fn` in `rounds` rounds, each system in turn within a round
    (`warmup` untimed calls, then repeat/rounds timed ones), and set `median_ms` to the
    median over all rounds (and `p10_ms` to the 10th percentile). Load that drifts over
    the run (a shared machine) then
    weighs on every system alike, and the untimed calls let the previous system's
    thread pools (torch's OpenMP, onnxruntime's spinning workers) go idle first."""
    timed = [r for r in results if r.fn is not None]
    times: dict[int, list[float]] = {id(r): [] for r in timed}
    per_round = max(1, -(-repeat // rounds))
    for _ in range(rounds):
        for r in timed:
            for _ in range(warmup):
                r.fn()
            for _ in range(per_round):
                start = time.perf_counter()
                r.fn()
                times[id(r)].append((time.perf_counter() - start) * 1e3)
    for r in timed:
        r.median_ms = statistics.median(times[id(r)])
        r.p10_ms = float(np.percentile(times[id(r)], 10))


def library_bytes(compiled) -> int:
    """The size of `compiled` as a deployed library (model.so, weights inside)."""
    with tempfile.TemporaryDirectory() as tmp:
        return Path(compiled.export_library(f"{tmp}/model.so")).stat().st_size


def _params_bytes(module) -> int:
    return int(sum(a.nbytes for a in module.params.values()))


# --- systems ---------------------------------------------------------------------------------


def bench_torch_fp32(model, args) -> Result:
    import torch

    def infer():
        with torch.no_grad():
            return model(*args)

    size = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    return Result("torch fp32 eager", None, None, size, fn=infer)


def bench_torch_int8(entry, model, args, calib) -> Result:
    import torch

    start = time.perf_counter()
    if entry.kind == "transformer":
        qmodel = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                        dtype=torch.qint8)
        how = "quantize_dynamic"
    else:
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        torch.backends.quantized.engine = "x86"
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), args)
        with torch.no_grad():
            for batch in calib:
                prepared(*batch)
        qmodel = convert_fx(prepared)
        how = "static FX, x86"
    compile_s = time.perf_counter() - start
    buf = io.BytesIO()
    torch.save(qmodel.state_dict(), buf)

    def infer():
        with torch.no_grad():
            return qmodel(*args)

    return Result("PyTorch int8", None, compile_s, buf.getbuffer().nbytes, how, fn=infer)


def _onnx_export(model, args, names, path: Path) -> None:
    import torch

    torch.onnx.export(model, args, str(path), input_names=list(names), dynamo=False,
                      opset_version=17)


def _ort_session(path: Path):
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    model.ir_version = min(model.ir_version, 10)  # onnxruntime 1.31 rejects IR version 14
    ort.set_default_logger_severity(3)  # not its notes on unused initializers
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def bench_onnxruntime(entry, model, args, names, calib, work: Path):
    out = []
    try:
        import onnxruntime  # noqa: F401
        from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                              quantize_dynamic, quantize_static)
    except ImportError:
        note = "onnxruntime not installed (pip install -e '.[bench]')"
        return [Result("onnxruntime fp32", note=note), Result("onnxruntime int8", note=note)]
    fp32 = work / f"{entry.name}.onnx"
    start = time.perf_counter()
    _onnx_export(model, args, names, fp32)
    export_s = time.perf_counter() - start
    feed = {n: a.numpy() for n, a in zip(names, args)}
    sess = _ort_session(fp32)
    out.append(Result("onnxruntime fp32", None, export_s, fp32.stat().st_size,
                      fn=lambda: sess.run(None, feed)))
    int8 = work / f"{entry.name}.int8.onnx"
    start = time.perf_counter()
    if entry.kind == "transformer":
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
        how = "quantize_dynamic"
    else:
        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter([{n: a.numpy() for n, a in zip(names, b)} for b in calib])

            def get_next(self):
                return next(self.it, None)

        quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        how = "quantize_static QDQ per-channel"
    q_s = time.perf_counter() - start
    qsess = _ort_session(int8)
    out.append(Result("onnxruntime int8", None, q_s, int8.stat().st_size, how,
                      fn=lambda: qsess.run(None, feed)))
    return out


def _qir_qdq_in_onnxruntime(entry, module, feed, work: Path) -> Result:
    """qir's int8, exported as QDQ ONNX (`qir compile --target onnx`), run by onnxruntime."""
    label = "qir int8 QDQ in onnxruntime"
    try:
        from backends.onnx import export
    except ImportError:
        return Result(label, note="onnx not installed (pip install -e '.[onnx]')")
    start = time.perf_counter()
    path = work / f"{entry.name}.qir-qdq.onnx"
    path.write_bytes(export(module).SerializeToString())
    sess = _ort_session(path)
    return Result(label, None, time.perf_counter() - start, path.stat().st_size,
                  "qir compile --target onnx", fn=lambda: sess.run(None, feed))


def bench_qir(entry, model, args, calib, numpy_repeat, cpus: tuple[str, ...] = (),
              work: Path | None = None) -> list[Result]:
    """qir int8 and float for this machine's CPU, the interpreter, and the int8 build
    for each LLVM CPU name in `cpus` too (another kernel family, e.g. "haswell" for the
    AVX2 kernels, run on this machine: its instructions must be a subset of this CPU's)."""
    import frontends
    from backends.numpy import run as interpret
    from backends.tvm import build, llvm_target
    from passes import PassContext, PassManager

    from backends.onnx import qdq_snapshot_stage
    from qir.cli.opt import copy_module

    results = []
    names = None
    qdq = {}  # the int8 module in QDQ form, for its ONNX export

    def keep_qdq(step, m) -> None:
        if step.name == qdq_snapshot_stage() and not qdq:
            qdq["module"] = copy_module(m)

    for label, pipeline in (("qir int8 (llvm)", "int8"), ("qir float (llvm)", "optimize")):
        start = time.perf_counter()
        module = frontends.from_torch(model, args)
        names = [a.name for a in module.main.args]
        batches = [dict(zip(names, [t.numpy() for t in b])) for b in calib]
        PassManager(pipeline, ctx=PassContext(calibration_data=batches, progress=False),
                    before_pass=[keep_qdq]).run(module)
        compiled = build(module, "llvm")
        compile_s = time.perf_counter() - start
        feed = dict(zip(names, [a.numpy() for a in args]))
        results.append(Result(label, None, compile_s, _params_bytes(module),
                              fn=functools.partial(compiled.run, feed)))
        if pipeline == "int8":
            int8_module = module
            for cpu in cpus:
                start = time.perf_counter()
                other = build(module, llvm_target(mcpu=cpu))
                results.append(Result(f"qir int8 (llvm, {cpu})", None,
                                      time.perf_counter() - start, _params_bytes(module),
                                      note=f"built for -mcpu={cpu}, run here",
                                      fn=functools.partial(other.run, feed)))
    feed = dict(zip(names, [a.numpy() for a in args]))
    if "module" in qdq and work is not None:
        results.append(_qir_qdq_in_onnxruntime(entry, qdq["module"], feed, work))
    t = median_ms(lambda: interpret(int8_module, feed), numpy_repeat, 1)
    results.append(Result("qir numpy interpreter (int8)", t, None, _params_bytes(int8_module)))
    return results


# --- driver ----------------------------------------------------------------------------------


def run_model(name: str, repeat: int, warmup: int, rounds: int, numpy_repeat: int,
              work: Path, systems: set[str], cpus: tuple[str, ...] = ()) -> list[Result]:
    from bench.real_models import bench_entries
    from tests.zoo import ZOO

    entry = ZOO[name] if name in ZOO else bench_entries()[name]
    model = entry.build()
    args = entry.example_inputs(0)
    calib = [entry.example_inputs(1 + i) for i in range(8 if name in REAL_MODELS else 16)]
    results: list[Result] = []

    def attempt(label, fn):
        try:
            out = fn()
            results.extend(out if isinstance(out, list) else [out])
        except Exception as e:  # a peer failing must not hide the others' numbers
            results.append(Result(label, note=f"failed: {type(e).__name__}: {e}"[:160]))
            traceback.print_exc(file=sys.stderr)

    attempt("torch fp32 eager", lambda: bench_torch_fp32(model, args))
    if "qir" in systems:
        attempt("qir", lambda: bench_qir(entry, model, args, calib, numpy_repeat, cpus, work))
    if "torch" in systems:
        attempt("PyTorch int8", lambda: bench_torch_int8(entry, entry.build(), args, calib))
    if "ort" in systems:
        attempt("onnxruntime", lambda: bench_onnxruntime(entry, model, args, entry.input_names,
                                                         calib, work))
    measure_interleaved(results, repeat, warmup, rounds)
    return results


ORDER = ["qir int8 (llvm)", "qir float (llvm)", "torch fp32 eager", "PyTorch int8",
         "onnxruntime fp32", "onnxruntime int8", "qir int8 QDQ in onnxruntime",
         "qir numpy interpreter (int8)"]


def table(name: str, results: list[Result], markdown: bool) -> str:
    """Median and 10th percentile, and the ratio to the fastest peer (torch or
    onnxruntime, whichever is fastest on this model) and to torch fp32 eager."""
    ref = next((r.median_ms for r in results if r.system == "torch fp32 eager"), None)
    peers = [r for r in results if r.system in PEERS and r.median_ms is not None]
    best = min(peers, key=lambda r: r.median_ms) if peers else None
    def rank(r: Result) -> float:
        if r.system.startswith("qir int8 (llvm, "):  # other kernel families: after ours
            return ORDER.index("qir int8 (llvm)") + 0.5
        return ORDER.index(r.system) if r.system in ORDER else 99

    rows = sorted(results, key=rank)
    cols = ["system", "median ms", "p10 ms", "x fastest peer", "x torch fp32", "compile s",
            "size KiB", "note"]
    lines = []
    if markdown:
        lines += [f"### {name}", "", "| " + " | ".join(cols) + " |",
                  "|---|" + "---:|" * (len(cols) - 2) + "---|"]
    else:
        lines += [f"== {name}" + (f" (fastest peer: {best.system})" if best else ""),
                  f"{cols[0]:<30} " + " ".join(f"{c:>14}" for c in cols[1:-1]) + "  note"]

    def fmt(x, spec):
        return format(x, spec) if x is not None else "-"

    for r in rows:
        cells = [fmt(r.median_ms, ".3f"), fmt(r.p10_ms, ".3f"),
                 fmt(r.median_ms / best.median_ms if r.median_ms and best else None, ".2f"),
                 fmt(r.median_ms / ref if r.median_ms and ref else None, ".2f"),
                 fmt(r.compile_s, ".1f"),
                 fmt(r.size_bytes / 1024 if r.size_bytes is not None else None, ".0f")]
        if markdown:
            lines.append(f"| {r.system} | " + " | ".join(cells) + f" | {r.note} |")
        else:
            lines.append(f"{r.system:<30} " + " ".join(f"{c:>14}" for c in cells)
                         + f"  {r.note}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--repeat", type=int, default=50, help="timed calls per system")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before each "
                   "system's turn in a round")
    p.add_argument("--rounds", type=int, default=5, help="rounds the timed calls are "
                   "spread over, the systems taking turns in each")
    p.add_argument("--numpy-repeat", type=int, default=5)
    p.add_argument("--systems", default="qir,torch,ort")
    p.add_argument("--markdown", action="store_true", help="print markdown tables")
    p.add_argument("--qir-cpus", default="", help="comma-separated LLVM CPU names to build "
                   "qir int8 for as well, run on this machine (e.g. haswell: the AVX2 "
                   "kernels; alderlake: AVX-VNNI on ymm)")
    args = p.parse_args(argv)
    quiet_on_threads()
    systems = set(args.systems.split(","))
    with tempfile.TemporaryDirectory(prefix="qir-bench-") as tmp:
        for name in args.models.split(","):
            results = run_model(name, args.repeat, args.warmup, args.rounds,
                                args.numpy_repeat, Path(tmp), systems,
                                tuple(c for c in args.qir_cpus.split(",") if c))
            print(table(name, results, args.markdown), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
