"""`qir compile MODEL [--target llvm|cuda|numpy|onnx] [--int8] [--calib CALIB.npz]
[--pipeline STR] [--dump-ir DIR] [--tune N] -o OUTDIR`: import → pipeline → codegen.

OUTDIR holds:
  model.qir (+ .npz)   the final IR and its weights
  model.onnx           (onnx) the module in QDQ form, as it stands before lower-to-integer:
                       QuantizeLinear/DequantizeLinear around float ops (docs/deploy.md)
  float.qir (+ .npz)   the float module the int8 one is compared against (the module just
                       before observers go in) — `qir report OUTDIR` uses it
  model.so             the compiled library (llvm, cuda)
  manifest.json        inputs/outputs (names, shapes, dtypes), target, pipeline, versions,
                       and for llvm the CPU and kernel family the build was made for
OUTDIR appears whole or not at all: everything is built in a temporary directory beside it
and renamed into place. The input model file is only read.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from qir.cli.opt import add_pipeline_arguments, calibration_batches, copy_module
from qir.diagnostics import QirError

TARGETS = ("llvm", "cuda", "numpy", "onnx")
# The first pass that makes the module stop computing in float: float.qir is the module
# just before it, so `qir report OUTDIR` compares like with like.
FLOAT_BOUNDARY = ("insert-observers", "mixed-precision", "weight-only", "dynamic-quant")
EXAMPLE_WARNING = ("warning: no --calib given: calibrating on the example inputs stored in "
                   "the export archive, which rarely represent real data; pass --calib "
                   "CALIB.npz (arrays keyed by input name, leading axis = samples)")


SCHEMES = ("int8", "w4a16", "w8a16", "nf4", "fp8", "dynamic")  # the scheme flags


def register(sub) -> None:
    p = sub.add_parser("compile", help="compile a model: import, pass pipeline, codegen",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="torch.export archive (.pt2/.pt), a float .qir file, or a "
                   "Hugging Face causal LM directory (config.json [+ weights]): then OUTDIR "
                   "holds prefill and decode for qir generate")
    p.add_argument("-o", "--output", help="output directory (must not exist, or --force)")
    p.add_argument("--target", default="llvm", choices=TARGETS)
    p.add_argument("--arch", default=None, help="CUDA architecture, e.g. sm_80 (cuda only)")
    p.add_argument("--cuda-graph", action="store_true", help="cuda: capture the model's "
                   "kernels as CUDA graphs on the first run and replay them after (fewer "
                   "launches: faster at small batch)")
    p.add_argument("--int8", action="store_true", help="quantize with the int8 pipeline")
    p.add_argument("--w4a16", action="store_true", help="int4 group-wise weights, float "
                   "activations (weight-only)")
    p.add_argument("--w8a16", action="store_true", help="int8 weights, float activations")
    p.add_argument("--nf4", action="store_true", help="NF4 (4-bit NormalFloat codebook) "
                   "group-wise weights, float activations (weight-only; groups of 64)")
    p.add_argument("--fp8", action="store_true", help="fp8 weights and activations "
                   "(e4m3; see --fp8-format)")
    p.add_argument("--fp8-format", choices=("e4m3", "e5m2"), default=None,
                   help="with --fp8: OCP E4M3FN (the default: more precision) or E5M2 (more "
                   "range)")
    p.add_argument("--dynamic", action="store_true", help="int8 weights, activations "
                   "quantized at run time per tensor (linear layers)")
    p.add_argument("--smoothquant", action="store_true", help="with --int8: migrate "
                   "activation outliers into the weights first (SmoothQuant)")
    p.add_argument("--pow2-scales", action="store_true", help="with --int8: every scale a "
                   "power of two, so that each requantize is a rounding shift (integer-only "
                   "accelerators); costs some accuracy (docs/methods.md)")
    p.add_argument("--min-sqnr", type=float, default=None, metavar="DB",
                   help="with --int8: keep the fewest layers float so that the output SQNR "
                   "on the calibration data is at least DB")
    p.add_argument("--max-drop", default=None, metavar="PCT",
                   help="with --int8: relative RMS output error budget, e.g. 0.5%% "
                   "(= --min-sqnr 46)")
    p.add_argument("--pipeline", default=None, help="pass pipeline (default: from the "
                   "scheme flags, else optimize)")
    p.add_argument("--dump-ir", default=None, metavar="DIR",
                   help="write the IR after every pass into DIR")
    p.add_argument("--emit", choices=("relax",), default=None,
                   help="print the Relax module (TVMScript) to stdout")
    p.add_argument("--force", action="store_true", help="replace OUTDIR if it exists")
    p.add_argument("--tune", type=int, default=None, metavar="N",
                   help="llvm: tune each kernel with TVM meta-schedule for N trials first; "
                   "results are cached by kernel shape, so a second build is instant")
    p.add_argument("--tune-cache", default=None, metavar="DIR",
                   help="the tuning cache (default: $QIR_CACHE_DIR/tune or "
                   "~/.cache/qir/tune)")
    p.add_argument("--group-size", type=int, default=None, metavar="G",
                   help="--w4a16/--w8a16: input channels per weight scale, 32..256 (0: one "
                   "per output channel; default 128 for int4, 0 for int8)")
    p.add_argument("--method", choices=("gptq", "awq", "rtn"), default=None,
                   help="--w4a16/--w8a16 rounding: GPTQ (the default with --calib), AWQ "
                   "(activation-aware scales, needs --calib) or round-to-nearest (the "
                   "default without)")
    p.add_argument("--max-seq", type=int, default=None, metavar="S",
                   help="causal LM: the longest sequence, prompt and new tokens (the KV "
                   "cache; default 256, or the model's positions when fewer)")
    p.add_argument("--prefill-len", type=int, default=64, metavar="P",
                   help="causal LM: tokens per prefill call")
    p.add_argument("--kv-int8", action="store_true",
                   help="causal LM, any scheme: keep the KV cache in int8, one scale per "
                   "layer and kv head calibrated on --calib (passes/kv_cache.py)")
    add_pipeline_arguments(p)
    p.set_defaults(func=run)


@contextlib.contextmanager
def staged_outdir(out: Path):
    """A fresh directory beside OUTDIR to write into; when the block completes it
    replaces OUTDIR whole (an existing one, with --force, is swapped out, then
    removed), and on any error it is removed: OUTDIR appears whole or not at all."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.rename(out, old / "x")
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_model(path: str):
    """(float module, example inputs or None) from an export archive or a .qir file."""
    p = Path(path)
    if not p.exists():
        raise QirError(f"{path}: no such file")
    if p.suffix == ".qir":
        from qir.io import load

        return load(p), None
    from frontends import load_model_file_with_examples

    return load_model_file_with_examples(str(p))


def _example_batches(module, examples) -> list[dict]:
    import numpy as np

    names = [a.name for a in module.main.args]
    arrays = [np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t)
              for t in examples]
    return [dict(zip(names, arrays))]


def manifest(module, args, pipeline: str, outdir: Path, model_path: Path) -> dict:
    """The manifest of the output directory being written at `outdir` (every file there
    is listed with its size and sha256: qir.cli.artifact.verify checks them)."""
    from qir.cli.artifact import FORMAT, sha256, versions

    fn = module.main

    def tensor(v, name):
        t = v.type
        return {"name": name, "shape": list(t.shape), "dtype": t.dtype.name,
                "qir_type": str(t)}

    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256(p)}
             for p in sorted(outdir.iterdir())}
    return {
        "format": FORMAT,
        "model": {"path": str(model_path), "sha256": sha256(model_path)},
        "target": args.target,
        "arch": args.arch if args.target == "cuda" else None,
        "pipeline": pipeline,
        "int8": bool(args.int8),
        "scheme": next((f for f in SCHEMES
                        if getattr(args, f)), "float"),
        "inputs": [tensor(a, a.name) for a in fn.args],
        "outputs": [tensor(v, v.name) for v in fn.outputs],
        "files": files,
        "cpu": _cpu(args),
        "versions": versions(args.target),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _cpu(args) -> dict | None:
    """The llvm build's CPU and kernel family (backends/tvm/kernels/common.py)."""
    if args.target != "llvm":
        return None
    from backends.tvm.kernels.common import kernel_family
    from backends.tvm.target import resolve_target

    return kernel_family(resolve_target("llvm"))


def _min_sqnr(args) -> float | None:
    import math

    if args.max_drop is None:
        return args.min_sqnr
    text = args.max_drop.strip()
    try:
        drop = float(text.rstrip("%")) / (100.0 if text.endswith("%") else 1.0)
    except ValueError:
        raise QirError(f"--max-drop {args.max_drop!r}: expected a fraction like 0.005 or "
                       "0.5%") from None
    if not 0 < drop < 1:
        raise QirError("--max-drop must be between 0 and 100%")
    return -20 * math.log10(drop)


def scheme_pipeline(args) -> str:
    """The pipeline the scheme flags ask for (docs/methods.md)."""
    schemes = [f for f in SCHEMES if getattr(args, f)]
    if len(schemes) > 1:
        raise QirError("choose one of --int8, --w4a16, --w8a16, --nf4, --fp8, --dynamic")
    min_sqnr = _min_sqnr(args)
    if (args.smoothquant or args.pow2_scales or min_sqnr is not None) and schemes != ["int8"]:
        raise QirError("--smoothquant, --pow2-scales, --min-sqnr and --max-drop apply to "
                       "--int8")
    weight_only = schemes in (["w4a16"], ["w8a16"], ["nf4"])
    if not weight_only and (args.group_size is not None or args.method is not None):
        raise QirError("--group-size and --method apply to --w4a16, --w8a16 and --nf4")
    if args.fp8_format is not None and schemes != ["fp8"]:
        raise QirError("--fp8-format applies to --fp8")
    if not schemes:
        return "optimize"
    scheme = schemes[0]
    if scheme == "fp8" and args.fp8_format == "e5m2":
        from passes.builtin import PIPELINES

        return PIPELINES["fp8-e4m3"].replace("fp8{format=e4m3}", "fp8{format=e5m2}")
    if weight_only:
        bits = 8 if scheme == "w8a16" else 4
        group = args.group_size if args.group_size is not None else {
            "w4a16": 128, "w8a16": 0, "nf4": 64}[scheme]
        method = args.method or ("gptq" if args.calib else "rtn")
        if method != "rtn" and not args.calib:
            raise QirError(f"--method {method} needs calibration data: pass --calib "
                           "CALIB.npz")
        import re

        from passes.builtin import PIPELINES

        stage = (f"weight-only{{bits={bits},group-size={group}"
                 f"{',format=nf4' if scheme == 'nf4' else ''}"
                 f"{'' if method == 'rtn' else f',{method}=true'}}}")
        return re.sub(r"weight-only\{[^}]*\}", stage, PIPELINES[scheme])
    if scheme != "int8":
        return {"w4a16": "w4a16", "w8a16": "w8a16", "fp8": "fp8-e4m3",
                "dynamic": "int8-dynamic"}[scheme]
    from passes.builtin import PIPELINES  # (importing it registers the named pipelines)

    stages = PIPELINES["int8"].split(",")  # the named pipeline, with --int8's options
    at = stages.index("insert-observers")
    observe = ("insert-observers" if min_sqnr is None
               else f"mixed-precision{{min-sqnr={min_sqnr:.2f}}}")
    smooth = ["smoothquant"] if args.smoothquant else []
    if args.pow2_scales:
        stages = ["quantize{scales=pow2}" if s == "quantize" else s for s in stages]
    return ",".join(stages[:at] + smooth + [observe] + stages[at + 1:])


def _tuning(args):
    """The Tuning --tune asks for, or None."""
    if args.tune is None:
        if args.tune_cache:
            raise QirError("--tune-cache applies with --tune N")
        return None
    if args.target != "llvm":
        raise QirError(f"--tune times kernels on this machine's CPU: it applies to "
                       f"--target llvm, not {args.target}")
    if args.tune < 1:
        raise QirError(f"--tune N: N is the number of trials per kernel, at least 1 "
                       f"(got {args.tune})")
    from backends.tvm import Tuning

    return Tuning(trials=args.tune, cache_dir=args.tune_cache,
                  progress=not args.no_progress and sys.stderr.isatty())


def run(args) -> int:
    from passes import PassContext, PassManager, load_pass_file, parse_pipeline
    from qir.io import save
    from qir.verifier import verify

    if Path(args.model).is_dir():
        from qir.cli.generate import compile_causal_lm

        return compile_causal_lm(args)
    if args.kv_int8:
        raise QirError("--kv-int8 applies to causal LMs (a Hugging Face model directory)")
    if args.output is None and args.emit is None:
        raise QirError("give an output directory with -o OUTDIR (or --emit relax to print)")
    if args.arch and args.target != "cuda":
        raise QirError("--arch applies to --target cuda only")
    if args.cuda_graph and args.target != "cuda":
        raise QirError("--cuda-graph applies to --target cuda only")
    if args.target == "onnx" and any(getattr(args, f) for f in ("w4a16", "w8a16", "fp8",
                                                                  "dynamic")):
        raise QirError("--target onnx exports float and --int8 models (QDQ ONNX); the "
                       "weight-only, fp8 and dynamic schemes have no export yet")
    tuning = _tuning(args)
    out = Path(args.output) if args.output else None
    if out is not None and out.exists() and not args.force:
        raise QirError(f"{out} already exists; choose another -o or pass --force")
    model_path = Path(args.model)
    module, examples = load_model(args.model)
    verify(module)

    for path in args.load_passes:
        load_pass_file(path)
    pipeline = args.pipeline if args.pipeline is not None else scheme_pipeline(args)
    steps = parse_pipeline(pipeline)
    ctx = PassContext(progress=not args.no_progress and sys.stderr.isatty())
    if args.calib:  # calibrate, and GPTQ's Hessians
        ctx.calibration_data = calibration_batches(module.main, args.calib)
    elif any(s.name == "calibrate" for s in steps):
        if examples is not None:
            print(EXAMPLE_WARNING, file=sys.stderr)
            ctx.calibration_data = _example_batches(module, examples)
        else:
            raise QirError(f"{args.model} carries no example inputs to calibrate on: pass "
                           "--calib CALIB.npz")
    float_ref = {"module": copy_module(module)}

    def snapshot(step, m) -> None:
        if step.name in FLOAT_BOUNDARY and "taken" not in float_ref:
            float_ref["module"], float_ref["taken"] = copy_module(m), True

    qdq = {}  # --target onnx: the module in QDQ form

    def snapshot_qdq(step, m) -> None:
        from backends.onnx import qdq_snapshot_stage

        if step.name == qdq_snapshot_stage() and "module" not in qdq:
            qdq["module"] = copy_module(m)

    pm = PassManager(steps, verify_each=not args.no_verify_each,
                     print_after_all=args.print_after_all, print_after=tuple(args.print_after),
                     dump_dir=args.dump_ir or args.dump_dir, timing=args.timing, ctx=ctx,
                     before_pass=[snapshot] + ([snapshot_qdq] if args.target == "onnx"
                                               else []))
    pm.run(module)
    if not float_ref.get("taken"):
        float_ref["module"] = copy_module(module)
    onnx_model = None
    if args.target == "onnx":
        from backends.onnx import export

        onnx_model = export(qdq.get("module", module))

    compiled = None
    if args.target not in ("numpy", "onnx") or args.emit:
        from backends.tvm import build, to_relax

        if args.emit == "relax":
            sys.stdout.write(to_relax(module).script())
            sys.stdout.flush()
        if out is not None and args.target not in ("numpy", "onnx"):
            target = args.target if not args.arch else f"cuda:{args.arch}"
            compiled = build(module, target, tune=tuning, cuda_graph=args.cuda_graph)
            if tuning is not None:
                print(tuning.summary(), file=sys.stderr)
    if out is None:
        return 0

    with staged_outdir(out) as tmp:
        save(module, tmp / "model.qir")
        save(float_ref["module"], tmp / "float.qir")
        if compiled is not None:
            compiled.export_library(str(tmp / "model.so"))
        if onnx_model is not None:
            (tmp / "model.onnx").write_bytes(onnx_model.SerializeToString())
        from qir.io import fix_mode

        fix_mode(tmp, directory=True)
        info = manifest(module, args, pm.pipeline_string, tmp, model_path)
        if tuning is not None:
            info["tuning"] = {"trials": tuning.trials, "search": tuning.search,
                              "cache": str(tuning.cache_dir),
                              "kernels": [vars(o) for o in tuning.outcomes]}
        (tmp / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")
    for note in ctx.notes:
        print(f"note: {note}", file=sys.stderr)
    scheme = next((f for f in SCHEMES if getattr(args, f)),
                  "float")
    print(f"wrote {out} ({args.target}, {scheme})", file=sys.stderr)
    return 0
