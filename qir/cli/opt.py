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


def calibration_batches(fn, path: str) -> list[dict]:
    """Split a calibration .npz (leading sample axis) into one input dict per sample."""
    from qir.cli.run import split_batches

    batches, stacked = split_batches(fn, load_npz(path, "calibration data"))
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
    pm.run(module)
    write_module(module, args.output)
    return 0
