"""`qir report MODEL_OR_OUTDIR --inputs DATA.npz [--json] [--html OUT.html]
[--sensitivity] [--onnx [MODEL.onnx]]`: float and quantized side by side in the numpy
interpreter, per layer and per output; with --onnx, also ONNX Runtime's run of the QDQ
export against qir's int8, quantized tensor by quantized tensor.

MODEL_OR_OUTDIR is either a float model — a torch.export archive (.pt2) or a float .qir —
which is quantized here (pipeline `int8` unless --pipeline, calibrating on DATA), or a
directory written by `qir compile` holding float.qir (the module just before
insert-observers) and model.qir, which are compared as they are."""

from __future__ import annotations

import sys
from pathlib import Path

from qir.diagnostics import QirError


def register(sub) -> None:
    p = sub.add_parser("report", help="per-layer float-vs-quantized error, sizes, "
                       "sensitivity", description=__doc__.split("\n\n", 1)[1]
                       .replace("\n", " "))
    p.add_argument("model", metavar="MODEL_OR_OUTDIR",
                   help=".pt2 archive or float .qir (quantized here), or a `qir compile` "
                   "output directory")
    p.add_argument("--inputs", required=True, metavar="DATA.npz",
                   help="sample inputs: arrays keyed by input name with a leading sample "
                   "axis (`qir run`'s convention); calibration data too when quantizing here")
    p.add_argument("--pipeline", default=None,
                   help="pipeline for quantizing a float model (default: int8; for an "
                   "OUTDIR, --sensitivity uses the manifest's pipeline)")
    p.add_argument("--json", action="store_true", help="print JSON (everything) instead of "
                   "the table")
    p.add_argument("--html", default=None, metavar="OUT.html",
                   help="also write a self-contained HTML page with plots")
    p.add_argument("--sensitivity", action="store_true",
                   help="also quantize one layer at a time and rank the layers by the "
                   "output error each causes alone (worst first)")
    p.add_argument("--sort", choices=("order", "sqnr"), default="order",
                   help="table order: as in the model, or worst SQNR first")
    p.add_argument("--worst", type=int, default=3, metavar="N",
                   help="how many of the lowest-SQNR layers to highlight (default 3)")
    p.add_argument("--onnx", nargs="?", const="", default=None, metavar="MODEL.onnx",
                   help="also run the QDQ ONNX export (default: OUTDIR/model.onnx of a "
                   "`--target onnx` OUTDIR) in ONNX Runtime and compare every quantized "
                   "tensor with qir's int8, stored value by stored value")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _read_outdir(path: Path):
    """(float module, quantized module, pipeline) from a `qir compile` output."""
    from qir.cli.artifact import read_manifest, verify
    from qir.cli.common import read_module

    missing = [n for n in ("float.qir", "model.qir") if not (path / n).exists()]
    if missing:
        raise QirError(f"{path}: not a `qir compile` output directory with float and "
                       f"quantized modules (missing {', '.join(missing)}); pass a float "
                       "model (.pt2 or .qir) to quantize it here instead")
    man = read_manifest(str(path))
    verify(str(path), man, "numpy", ("float.qir", "model.qir"))  # modules, no library
    pipeline = man.get("pipeline")
    return read_module(str(path / "float.qir")), read_module(str(path / "model.qir")), \
        pipeline


def _read_float_model(path: Path):
    from qir.cli.common import read_module

    if not path.exists():
        raise QirError(f"{path}: no such file or directory")
    if path.suffix == ".qir":
        module = read_module(str(path))
        quantized = [op for op in module.main.ops if op.name in ("qir.observe",
                     "qir.quantize", "qir.requantize") or any(r.type.is_quantized
                                                              for r in op.results)]
        if quantized:
            raise QirError(f"{path} is already quantized ({quantized[0].name} at "
                           f"{quantized[0].loc}); pass the float model, or a `qir compile` "
                           "output directory that holds both")
        return module
    from frontends import load_model_file

    return load_model_file(path)


def run(args) -> int:
    from passes.debug_report import debug_report, quantize_with_reference, sensitivity
    from passes.report_format import format_table, to_html, to_json
    from qir.cli.common import load_npz
    from qir.cli.diff import use_color
    from qir.cli.run import arguments, split_batches
    from qir.verifier import verify

    path = Path(args.model)
    progress = not args.no_progress and sys.stderr.isatty()
    notes: list[str] = []
    if path.is_dir():
        float_module, quant, pipeline = _read_outdir(path)
        verify(float_module)
        verify(quant)
        pipeline = args.pipeline or pipeline
        samples, _ = split_batches(arguments(float_module.main), load_npz(args.inputs))
    else:
        module = _read_float_model(path)
        verify(module)
        pipeline = args.pipeline or "int8"
        samples, _ = split_batches(arguments(module.main), load_npz(args.inputs))
        float_module, quant, notes = quantize_with_reference(module, samples, pipeline,
                                                             progress=progress)
    report = debug_report(float_module, quant, samples, model=str(path), pipeline=pipeline)
    report.notes = notes
    if args.sensitivity:
        report.sensitivity = sensitivity(float_module, samples, pipeline=pipeline or "int8",
                                         progress=progress)
    if args.html:
        try:
            Path(args.html).write_text(to_html(report, args.worst), encoding="utf-8")
        except OSError as e:
            raise QirError(f"{args.html}: cannot write: {e.strerror or e}") from None
        print(f"qir report: wrote {args.html}", file=sys.stderr)
    onnx_rows = _onnx_rows(args.onnx, path, quant, samples) if args.onnx is not None else None
    if args.json:
        text = to_json(report)
        if onnx_rows is not None:
            import dataclasses
            import json

            data = json.loads(text)
            data["onnx"] = [dict(dataclasses.asdict(r), percent=r.percent) for r in onnx_rows]
            text = json.dumps(data, indent=1) + "\n"
        sys.stdout.write(text)
    else:
        sys.stdout.write(format_table(report, sort=args.sort, worst=args.worst,
                                      color=use_color(args.color)))
        if onnx_rows is not None:
            from backends.onnx.compare import format_diffs

            sys.stdout.write("\n" + format_diffs(onnx_rows))
    return 0


def _onnx_rows(given: str, path: Path, quant, samples):
    """`--onnx`: ONNX Runtime's run of the export compared with qir's int8, tensor by
    tensor (backends/onnx/compare.py)."""
    onnx_path = Path(given) if given else path / "model.onnx"
    if not given and not path.is_dir():
        raise QirError("--onnx without a file compares an OUTDIR's model.onnx: pass the "
                       "exported model (--onnx MODEL.onnx) or a `--target onnx` OUTDIR")
    if not onnx_path.is_file():
        raise QirError(f"{onnx_path}: no such file (--onnx: the model `qir compile --target "
                       "onnx` wrote)")
    try:
        from backends.onnx.compare import compare_with_onnxruntime
    except ImportError:
        raise QirError("--onnx needs onnx and onnxruntime: pip install -e .[onnx]") from None
    return compare_with_onnxruntime(str(onnx_path), quant, samples)
