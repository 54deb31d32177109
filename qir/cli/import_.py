"""`qir import MODEL -o OUT.qir`: a torch.export archive (or, trusted, a pickled module)
into qir text + weights."""

from __future__ import annotations

from qir.cli.common import write_module


def register(sub) -> None:
    p = sub.add_parser("import", help="import a PyTorch model file into qir",
                       description="Read a torch.export archive (.pt2/.pt written by "
                       "torch.export.save) and write the float qir module.")
    p.add_argument("model")
    p.add_argument("-o", "--output", default=None, help="output .qir file ('-': stdout)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow a pickled nn.Module (executes code from the file!)")
    p.add_argument("--input-shape", action="append", default=None, metavar="SHAPE",
                   help="input shape for tracing a pickled module, e.g. 1,3,32,32 "
                   "(repeat per input)")
    p.set_defaults(func=run)


def parse_shape(text: str) -> tuple[int, ...]:
    from qir.diagnostics import QirError

    try:
        return tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise QirError(f"--input-shape {text!r}: expected comma-separated integers like "
                       "1,3,32,32") from None


def run(args) -> int:
    from qir.verifier import verify
    from frontends import load_model_file

    shapes = [parse_shape(s) for s in args.input_shape] if args.input_shape else None
    module = load_model_file(args.model, trust_pickle=args.trust_pickle, input_shapes=shapes)
    verify(module)
    write_module(module, args.output)
    return 0
