"""`qir show FILE.qir [--format dot|svg|png] [-o OUT]`: draw the graph: ops, values on
the edges with their types and quantization (per-channel lists summarised).

dot text needs nothing else. svg and png run Graphviz's `dot`; when it is not installed,
`qir show` writes the dot text instead (to OUT with a .dot suffix, or stdout), says so on
stderr with how to install Graphviz, and exits with status 1, so scripts notice that no
image was made."""

from __future__ import annotations

import sys
from pathlib import Path

from qir.cli.common import read_module


def register(sub) -> None:
    p = sub.add_parser("show", help="draw a module's graph (Graphviz dot, svg, png)",
                       description=__doc__.split("\n\n")[0].split(": ", 1)[1] + " "
                       + __doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("file", help=".qir file ('-': stdin)")
    p.add_argument("--format", choices=("dot", "svg", "png"), default=None,
                   help="output format (default: from OUT's suffix, else dot)")
    p.add_argument("-o", "--output", default=None, help="output file (default: stdout)")
    p.add_argument("--function", default=None, help="draw only this function")
    p.add_argument("--no-params", action="store_true",
                   help="leave out parameter and constant nodes")
    p.set_defaults(func=run)


def run(args) -> int:
    from qir.diagnostics import QirError
    from qir.graphviz import INSTALL_HINT, have_dot, render, to_dot

    fmt = args.format
    if fmt is None:
        suffix = Path(args.output).suffix.lstrip(".") if args.output else ""
        fmt = suffix if suffix in ("svg", "png") else "dot"
    module = read_module(args.file)
    text = to_dot(module, args.function, params=not args.no_params)
    if fmt == "dot":
        _write(text.encode(), args.output)
        return 0
    if not have_dot():
        target = str(Path(args.output).with_suffix(".dot")) if args.output else None
        _write(text.encode(), target)
        where = target or "stdout"
        print(f"qir show: note: Graphviz's `dot` program is not installed, so no {fmt} was "
              f"made; wrote the graph as dot text to {where} instead. To get {fmt}: "
              f"{INSTALL_HINT}", file=sys.stderr)
        return 1
    if fmt == "png" and not args.output and sys.stdout.isatty():
        raise QirError("png is binary: write it to a file with -o OUT.png")
    _write(render(text, fmt), args.output)
    return 0


def _write(data: bytes, path: str | None) -> None:
    from qir.diagnostics import QirError

    if path in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        Path(path).write_bytes(data)
    except OSError as e:
        raise QirError(f"{path}: cannot write: {e.strerror or e}") from None
