"""`qir opt FILE -p PIPELINE [-o OUT]`: parse → verify → run passes → print."""

from __future__ import annotations

from qir.cli.common import load_npz, read_module, write_module


def register(sub) -> None:
    p = sub.add_parser("opt", help="run a pass pipeline over a .qir file",
                       description="Parse FILE ('-' for stdin), verify it, run the pipeline "
                       "(comma-separated pass names, options in braces: a,b{key=value}), "
                       "and print the result (or write it to -o OUT, with OUT.npz beside).")
    p.add_argument("file")
    p.add_argument("-p", "--pipeline", default="", help="pass pipeline (default: none)")
    p.add_argument("-o", "--output", default=None, help="output file ('-': stdout)")
    add_pipeline_arguments(p)
    p.set_defaults(func=run)


def add_pipeline_arguments(p) -> None:
    """Instrument and calibration flags shared by `opt` and `compile`."""
    p.add_argument("--calib", default=None, metavar="CALIB.npz",
                   help="calibration inputs: arrays keyed by input name, with one extra "
                   "leading axis over whole inputs (N samples)")
    p.add_argument("--load-passes", action="append", default=[], metavar="FILE.py",
                   help="import a Python file that registers passes (@register_pass)")
    p.add_argument("--print-after-all", action="store_true", help="print the IR after "
                   "every pass (to stderr)")
    p.add_argument("--print-after", action="append", default=[], metavar="PASS",
                   help="print the IR after the named pass (repeatable)")
    p.add_argument("--dump-dir", default=None, metavar="DIR", help="write NN-pass.qir "
                   "after every pass (00-import.qir is the input)")
    p.add_argument("--timing", action="store_true", help="report time per pass")
    p.add_argument("--no-verify-each", action="store_true",
                   help="do not verify after every pass")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--report", action="store_true", help="after the pipeline, print per "
                   "quantized tensor its scale, zero point, range and SQNR against float "
                   "(on up to 4 calibration samples)")


def calibration_batches(fn, path: str) -> list[dict]:
    """Split a calibration .npz (leading sample axis) into one input dict per sample."""
    from qir.cli.run import arguments, split_batches

    batches, stacked = split_batches(arguments(fn), load_npz(path, "calibration data"))
    return batches


def make_pass_manager(args, module, pipeline: str):
    import sys

    from passes import PassContext, PassManager, load_pass_file

    for path in args.load_passes:
        load_pass_file(path)
    ctx = PassContext(progress=not args.no_progress and sys.stderr.isatty())
    if args.calib:
        ctx.calibration_data = calibration_batches(module.main, args.calib)
    return PassManager(pipeline, verify_each=not args.no_verify_each,
                       print_after_all=args.print_after_all,
                       print_after=tuple(args.print_after), dump_dir=args.dump_dir,
                       timing=args.timing, ctx=ctx)


def run(args) -> int:
    from qir.verifier import verify

    module = read_module(args.file)
    verify(module)
    pm = make_pass_manager(args, module, args.pipeline)
    reference = watch_float_reference(pm, module) if args.report else None
    pm.run(module)
    write_module(module, args.output)
    if args.report:
        print_report(reference["module"], module, pm.ctx)
    return 0


def watch_float_reference(pm, module) -> dict:
    """The float module the report compares against: the module as it is just before
    observers go in (after batchnorm folding and activation fusion), so that its value
    names are the ones the quantized values are named after."""
    ref = {"module": copy_module(module)}

    def snapshot(step, m) -> None:
        if step.name == "insert-observers" and not ref.get("taken"):
            ref["module"], ref["taken"] = copy_module(m), True

    pm.before_pass.append(snapshot)
    return ref


def copy_module(module):
    """An independent copy (text round trip; parameter arrays are shared read-only)."""
    from qir.parser import parse
    from qir.printer import print_module

    copy = parse(print_module(module))
    copy.params = dict(module.params)
    return copy


def print_report(float_module, module, ctx) -> None:
    import sys

    from qir.diagnostics import QirError
    from passes.report import format_report, quantization_report

    if not ctx.calibration_data:
        raise QirError("--report needs sample inputs: pass --calib CALIB.npz")
    rows = quantization_report(float_module, module, ctx.calibration_data[:4])
    sys.stderr.write(format_report(rows))
    for note in ctx.notes:
        sys.stderr.write(f"note: {note}\n")
