"""`qir passes [--pipeline NAME]`: list passes with their options, or expand a pipeline."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("passes", help="list the available passes and pipelines")
    p.add_argument("--pipeline", default=None, metavar="NAME|STR",
                   help="print the expanded pass list of a pipeline, e.g. int8")
    p.add_argument("--load-passes", action="append", default=[], metavar="FILE.py")
    p.set_defaults(func=run)


def run(args) -> int:
    from passes import PIPELINES, all_passes, load_pass_file, parse_pipeline

    for path in args.load_passes:
        load_pass_file(path)
    out = sys.stdout
    if args.pipeline is not None:
        out.write(",".join(str(s) for s in parse_pipeline(args.pipeline)) + "\n")
        return 0
    for name, info in all_passes().items():
        out.write(f"{name}: {info.summary}\n")
        for opt in info.options.values():
            default = opt.default if not isinstance(opt.default, bool) else \
                str(opt.default).lower()
            out.write(f"    {opt.name}: {opt.type_name()} = {default!s}"
                      + (f"  — {opt.doc}" if opt.doc else "") + "\n")
    out.write("\npipelines:\n")
    for name, text in sorted(PIPELINES.items()):
        out.write(f"  {name}: {text}\n")
    return 0
