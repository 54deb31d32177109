"""`qir diff A.qir B.qir [--stat] [--color=auto|always|never]`: a structural diff of two
modules (ops matched by value name and location, not lines of text). Exit status as
every qir command's (README): 0 when they are the same, 2 when they differ, 1 on a
user error (unreadable file, parse error) — unlike diff(1), 1 always means an error."""

from __future__ import annotations

import os
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "diff", help="structural diff of two .qir files",
        description="Compare two modules op by op: ops are matched by value name and "
        "location (falling back to op name + location + operands, so renamed values still "
        "match), then listed as added (+), removed (-) or changed (~) with what changed: "
        "op name, operands, attributes, result types, and quantization with the relative "
        "change of every scale. Grouped by source location. Value names alone are not a "
        "difference. Exit status: 0 same, 2 different, 1 error (a file missing or unreadable).")
    p.add_argument("a", help="the old module (.qir)")
    p.add_argument("b", help="the new module (.qir)")
    p.add_argument("--stat", action="store_true",
                   help="only a summary: added / removed / changed per op kind")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour the output (auto: when stdout is a terminal and NO_COLOR "
                   "is unset)")
    p.set_defaults(func=run)


def use_color(choice: str, stream=None) -> bool:
    """--color=auto|always|never; auto colours a terminal unless NO_COLOR is set."""
    stream = stream or sys.stdout
    if choice == "always":
        return True
    if choice == "never":
        return False
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


def _read(path: str):
    from qir.diagnostics import QirError
    from qir.parser import parse

    if path == "-":
        return parse(sys.stdin.read(), "<stdin>")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise QirError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise QirError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    return parse(text, path)


def run(args) -> int:
    from qir.diagnostics import QirError, QirSyntaxError
    from qir.diff import diff_modules, format_diff, format_stat

    try:
        a, b = _read(args.a), _read(args.b)
    except QirSyntaxError as e:
        print(e, file=sys.stderr)
        return 1
    except QirError as e:
        print(f"qir diff: error: {e}", file=sys.stderr)
        return 1
    d = diff_modules(a, b, args.a, args.b)
    if d.empty:
        return 0
    if args.stat:
        sys.stdout.write(format_stat(d))
    else:
        sys.stdout.write(format_diff(d, color=use_color(args.color)))
    sys.stdout.flush()
    return 2
