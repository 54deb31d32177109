"""`qir explain FILE.qir %value`: a value's type, its quantization, and where its scale
came from (the provenance the passes recorded, followed back through data movement)."""

from __future__ import annotations

import sys

from qir.cli.common import read_module


def register(sub) -> None:
    p = sub.add_parser("explain", help="where a quantized value's scale came from",
                       description="Print the type and quantization of %%VALUE in FILE and "
                       "the chain of provenance: the observer and calibration method with "
                       "its range, or the rule that set the scale (bias = s_in·s_w, shared "
                       "through data movement, aligned for a concat, int16 for outlier "
                       "channels).")
    p.add_argument("file", help=".qir file ('-': stdin)")
    p.add_argument("value", help="value name, e.g. %%conv2d_q (the %% is optional)")
    p.set_defaults(func=run)


def run(args) -> int:
    from qir.provenance import explain

    module = read_module(args.file)
    sys.stdout.write(explain(module, args.value, args.file if args.file != "-" else
                             "<stdin>"))
    return 0
