"""Quality on real text, every scheme: held-out perplexity and greedy next-byte
agreement with fp32 of the byte-level Llama trained on the Python standard library's
sources (tests/byte_lm.py: 4.5M parameters, trained once per machine and cached), each
scheme compiled for llvm and scored on 24 held-out windows of 128 bytes by the prefill;
with --generation, the schemes of generation (int8 KV cache, W8A8, fp8) scored through
the generation path (32 bytes prefilled, then a decode step per byte; 8 windows).

    .venv/bin/python -m bench.lm_quality [--generation] [--markdown]
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generation", action="store_true",
                   help="score through prefill and decode steps (tests.byte_lm."
                   "evaluate_generation)")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")
    from tests.byte_lm import evaluate, evaluate_generation, trained_model

    scores = (evaluate_generation if args.generation else evaluate)(trained_model())
    fp32 = scores["torch fp32"]["perplexity"]
    rows = [(k, f"{v['perplexity']:.4f}", f"{100 * (v['perplexity'] / fp32 - 1):+.3f}%",
             f"{v['agreement']:.4f}") for k, v in scores.items()]
    cols = ("scheme", "perplexity", "vs fp32", "greedy agreement")
    if args.markdown:
        print("| " + " | ".join(cols) + " |\n|---|---:|---:|---:|")
        print("\n".join("| " + " | ".join(r) + " |" for r in rows))
    else:
        for r in [cols, *rows]:
            print(f"{r[0]:32s} {r[1]:>12s} {r[2]:>9s} {r[3]:>17s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
