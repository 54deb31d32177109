"""`qir verify FILE`: parse and verify; print warnings; exit 1 on any error."""

from __future__ import annotations

import sys

from qir.cli.common import read_module


def register(sub) -> None:
    p = sub.add_parser("verify", help="parse and verify a .qir file",
                       description="Parse FILE ('-' for stdin) and run the verifier.")
    p.add_argument("file")
    p.set_defaults(func=run)


def run(args) -> int:
    from qir.verifier import verify

    module = read_module(args.file)
    for d in verify(module):
        print(d, file=sys.stderr)
    print(f"{args.file}: ok", file=sys.stderr)
    return 0
