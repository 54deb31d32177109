"""`qir opt FILE -p PIPELINE [-o OUT]`: parse → verify → run passes → print."""

from __future__ import annotations

from qir.cli.common import read_module, write_module
from qir.diagnostics import QirError


def register(sub) -> None:
    p = sub.add_parser("opt", help="run a pass pipeline over a .qir file",
                       description="Parse FILE ('-' for stdin), verify it, run the pipeline "
                       "(comma-separated pass names, options in braces: a,b{key=value}), "
                       "and print the result (or write it to -o OUT, with OUT.npz beside).")
    p.add_argument("file")
    p.add_argument("-p", "--pipeline", default="", help="pass pipeline (default: none)")
    p.add_argument("-o", "--output", default=None, help="output file ('-': stdout)")
    p.set_defaults(func=run)


def run(args) -> int:
    from qir.verifier import verify

    module = read_module(args.file)
    verify(module)
    if args.pipeline.strip():
        raise QirError(f"unknown pass in pipeline '{args.pipeline}': no passes are "
                       "registered yet")
    write_module(module, args.output)
    return 0
