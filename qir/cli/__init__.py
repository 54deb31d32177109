"""The `qir` command line. Each subcommand lives in its own module and registers an
argparse sub-parser; heavy packages (torch, frontends, passes, backends) are imported
lazily inside the commands that need them."""

from __future__ import annotations

import argparse
import sys

from qir.diagnostics import QirError, QirSyntaxError

# (module, description) of each subcommand, in the order `qir --help` lists them.
_COMMANDS = ["verify", "opt", "passes_cmd", "import_", "run", "compile", "generate", "bench",
             "diff", "report_cmd", "explain", "show"]


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from qir import __version__

    parser = argparse.ArgumentParser(
        prog="qir", description="qir: a quantization compiler for PyTorch models")
    parser.add_argument("--version", action="version", version=f"qir {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show Python tracebacks for internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(f"qir.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args) or 0
    except QirSyntaxError as e:  # already "file:line:col: error: ..." with a caret
        print(e, file=sys.stderr)
        return 1
    except QirError as e:
        print(f"qir {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("qir: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # a bug in qir, not a user mistake
        if args.debug:
            raise
        print(f"qir {args.command}: internal error: {type(e).__name__}: {e}\n"
              "  this is a bug in qir; rerun with `qir --debug ...` for the traceback and "
              "report it", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
