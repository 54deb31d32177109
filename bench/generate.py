"""Generation at batch 1: prefill latency and decode tokens/s of a Llama-architecture
causal LM built from a config, for qir's schemes against torch and onnxruntime, all
measured in this process in alternating rounds (bench.run's `measure_interleaved`), 2
threads.

    .venv/bin/python -m bench.generate [--layers 12] [--hidden 768] [--repeat 30]
                                       [--rounds 3] [--markdown]

The model: transformers' LlamaForCausalLM, random weights (seed 0); by default 12 layers,
hidden 768, 12 query heads on 4 KV heads, SiLU MLP 2048, vocabulary 32000: 124M
parameters. Every system computes the same two steps (frontends/causal_lm.py): a
prefill of P = 64 prompt tokens, and one decode step with 64 tokens cached (KV cache of
S = 256 slots). Systems:
- qir: float, `--w8a16`, `--w4a16` (groups of 128, round to nearest: GPTQ changes the
  weights, not the speed), `--w4a16 --kv-int8`, `--nf4` (groups of 64), `--dynamic`,
  `--int8 --smoothquant`,
  `--fp8`, each compiled for llvm, calibrated (where the scheme calibrates) on random
  token rows as `qir compile HF_DIR --calib` does;
- torch fp32 eager: transformers' own decoding (its DynamicCache holding the 64 cached
  tokens, cropped back after each step); its prefill is the model on 64 tokens;
- onnxruntime on the same prefill and decode steps exported by torch.onnx (dynamo):
  fp32, quantize_dynamic int8, and int4 MatMulNBits (blocks of 32).
Decode tokens/s is 1000 / the median decode-step ms. Before timing, the qir float build's
greedy tokens are checked against torch's (the first 8 new tokens).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from bench.run import (Result, _ort_session, library_bytes, measure_interleaved,
                       quiet_on_threads)

PREFILL = 64
MAX_SEQ = 256
SCHEMES = {"float": "optimize", "w8a16": "w8a16", "w4a16": "w4a16",
           "w4a16 + int8 KV cache": "kv-int8,w4a16", "nf4": "nf4", "dynamic": "int8-dynamic",
           "int8 SmoothQuant (W8A8)": "int8-smooth", "fp8 e4m3": "fp8-e4m3"}
CALIB_ROWS = 4  # random token rows of 2 * PREFILL: prefill and decode calibration


def build_model(layers: int, hidden: int):
    import torch

    from frontends.causal_lm import import_transformers

    transformers = import_transformers()

    cfg = transformers.LlamaConfig(vocab_size=32000, hidden_size=hidden,
                                   intermediate_size=hidden * 8 // 3 // 256 * 256,
                                   num_hidden_layers=layers, num_attention_heads=hidden // 64,
                                   num_key_value_heads=max(1, hidden // 192),
                                   max_position_embeddings=MAX_SEQ)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def step_inputs(spec, rng) -> tuple[dict, dict]:
    """(prefill inputs, decode inputs with PREFILL tokens cached)."""
    from frontends.causal_lm import decode_mask, prefill_mask

    ids = rng.integers(0, spec.vocab, (1, PREFILL)).astype(np.int64)
    cache = (spec.layers, 1, spec.kv_heads, spec.max_seq - 1, spec.head_dim)
    keys = rng.standard_normal(cache).astype(np.float32)
    prefill = {"input_ids": ids, "mask": prefill_mask(PREFILL),
               "position_ids": np.arange(PREFILL, dtype=np.int64)[None]}
    decode = {"input_ids": ids[:, :1], "mask": decode_mask(PREFILL, spec.max_seq),
              "position_ids": np.array([[PREFILL]], np.int64), "past_keys": keys,
              "past_values": keys.copy()}
    return prefill, decode


def qir_results(model, spec, module_for, prefill_in, decode_in, check,
                schemes: dict[str, str] = SCHEMES) -> list[Result]:
    from backends.tvm import build
    from frontends.causal_lm import decode_batches, function_module, prefill_batches
    from passes import PassContext, PassManager
    from qir.cli.generate import Generator

    rows = list(np.random.default_rng(4).integers(0, spec.vocab, (CALIB_ROWS, 2 * PREFILL)))
    main_data, decode_data = prefill_batches(rows, PREFILL), decode_batches(model, spec, rows)
    out = []
    for scheme, pipeline in schemes.items():
        try:
            start = time.perf_counter()
            module = module_for()
            PassManager(pipeline, ctx=PassContext(
                calibration_data=main_data, function_data={"decode": decode_data},
                progress=False)).run(module)
            pre = build(function_module(module, "main"), "llvm")
            dec = build(function_module(module, "decode"), "llvm")
            compile_s = time.perf_counter() - start
            size = library_bytes(dec)
            if scheme == "float":
                check(Generator(pre.run, dec.run, spec))
            out.append(Result(f"qir {scheme} prefill", None, compile_s, size,
                              fn=lambda pre=pre: pre.run(prefill_in)))
            feed = decode_in
            if pipeline.startswith("kv-int8,"):  # the cache as int8 (values do not matter)
                cache = np.random.default_rng(5).integers(
                    -127, 128, (spec.layers * spec.kv_heads, *decode_in["past_keys"].shape[3:]),
                    dtype=np.int8)
                feed = {**decode_in, "past_keys": cache, "past_values": cache.copy()}
            out.append(Result(f"qir {scheme} decode", None, None, None,
                              fn=lambda dec=dec, feed=feed: dec.run(feed)))
        except Exception as e:  # noqa: BLE001  (one scheme failing must not hide the rest)
            out.append(Result(f"qir {scheme} prefill",
                              note=f"failed: {type(e).__name__}: {e}"[:160]))
            traceback.print_exc(file=sys.stderr)
    return out


def torch_results(model) -> list[Result]:
    import torch
    from transformers import DynamicCache

    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, model.config.vocab_size, (1, PREFILL), generator=gen)
    with torch.no_grad():
        cache = DynamicCache()
        model(input_ids=ids, past_key_values=cache, use_cache=True)
    token = ids[:, :1]

    def prefill():
        with torch.no_grad():
            return model(input_ids=ids, use_cache=False)

    def decode():
        with torch.no_grad():
            out = model(input_ids=token, past_key_values=cache, use_cache=True,
                        position_ids=torch.tensor([[PREFILL]]))
        cache.crop(-1)  # back to the PREFILL cached tokens
        return out

    size = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    return [Result("torch fp32 eager prefill", None, None, size, fn=prefill),
            Result("torch fp32 eager decode", None, None, None, fn=decode)]


def ort_results(model, spec, prefill_in, decode_in, work: Path) -> list[Result]:
    try:
        import onnxruntime  # noqa: F401
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError:
        return [Result("onnxruntime fp32 prefill", note="onnxruntime not installed (.[bench])")]
    import logging

    import onnx
    import torch

    from frontends.causal_lm import _Step

    for name in ("onnxruntime.quantization.matmul_nbits_quantizer", "onnxscript", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.ERROR)
    out = []
    for step, feed in (("prefill", prefill_in), ("decode", decode_in)):
        wrapper = _Step(model, spec.layers, past=step == "decode").eval()
        args = tuple(torch.tensor(v) for v in feed.values())
        fp32 = work / f"{step}.onnx"
        start = time.perf_counter()
        with torch.no_grad():
            torch.onnx.export(wrapper, args, str(fp32), input_names=list(feed), dynamo=True,
                              opset_version=18, external_data=False)
        export_s = time.perf_counter() - start
        variants = [("fp32", fp32, export_s, "")]
        dyn = work / f"{step}.int8.onnx"
        start = time.perf_counter()
        quantize_dynamic(str(fp32), str(dyn), weight_type=QuantType.QInt8)
        variants.append(("int8 dynamic", dyn, time.perf_counter() - start, "quantize_dynamic"))
        nbits = work / f"{step}.int4.onnx"
        start = time.perf_counter()
        quant = MatMulNBitsQuantizer(onnx.load(str(fp32)), block_size=32, is_symmetric=True)
        quant.process()
        quant.model.save_model_to_file(str(nbits), False)
        variants.append(("int4 MatMulNBits", nbits, time.perf_counter() - start,
                         "MatMulNBits, blocks of 32"))
        for label, path, seconds, note in variants:
            sess = _ort_session(path)
            names = [i.name for i in sess.get_inputs()]
            run_feed = dict(zip(names, feed.values()))
            out.append(Result(f"onnxruntime {label} {step}", None, seconds,
                              path.stat().st_size if step == "prefill" else None, note,
                              fn=lambda s=sess, f=run_feed: s.run(None, f)))
    return out


def table(results: list[Result], markdown: bool) -> str:
    systems = list(dict.fromkeys(r.system.rsplit(" ", 1)[0] for r in results))
    by = {r.system: r for r in results}
    torch_decode = by.get("torch fp32 eager decode")
    base = torch_decode.median_ms if torch_decode and torch_decode.median_ms else None
    cols = ["system", "prefill ms", "decode ms", "tokens/s", "x torch tokens/s",
            "compile s", "size MiB", "note"]
    rows = []
    for s in systems:
        pre, dec = by.get(f"{s} prefill"), by.get(f"{s} decode")

        def fmt(v, spec):
            return "-" if v is None else format(v, spec)

        tps = 1000 / dec.median_ms if dec and dec.median_ms else None
        rows.append([s, fmt(pre.median_ms if pre else None, ".2f"),
                     fmt(dec.median_ms if dec else None, ".2f"), fmt(tps, ".1f"),
                     fmt(base / dec.median_ms if base and dec and dec.median_ms else None,
                         ".2f"),
                     fmt(pre.compile_s if pre else None, ".1f"),
                     fmt(pre.size_bytes / 2**20 if pre and pre.size_bytes else None, ".1f"),
                     (pre.note if pre else "") or (dec.note if dec else "")])
    if markdown:
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    width = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    return "\n".join("  ".join(v.ljust(w) if i in (0, 7) else v.rjust(w)
                               for i, (v, w) in enumerate(zip(r, width)))
                     for r in [cols] + rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-onnxruntime", action="store_true")
    p.add_argument("--schemes", default=None, help="qir schemes to run, comma-separated "
                   f"(default: all of {', '.join(SCHEMES)})")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    quiet_on_threads()
    import torch

    from frontends.causal_lm import export_causal_lm
    from qir.cli.opt import copy_module

    model = build_model(args.layers, args.hidden)
    params = sum(p.numel() for p in model.parameters())
    print(f"LlamaForCausalLM: {params / 1e6:.0f}M parameters, {args.layers} layers, "
          f"hidden {args.hidden}; prefill {PREFILL} tokens, decode with {PREFILL} cached "
          f"(cache {MAX_SEQ})", flush=True)
    module, spec = export_causal_lm(model, MAX_SEQ, PREFILL)

    def module_for():  # each scheme quantizes its own copy
        return copy_module(module)

    prefill_in, decode_in = step_inputs(spec, np.random.default_rng(1))
    prompt = np.random.default_rng(3).integers(0, spec.vocab, 16)

    def check(gen) -> None:
        with torch.no_grad():
            want = model.generate(torch.tensor(prompt)[None], max_new_tokens=8,
                                  min_new_tokens=8, do_sample=False, pad_token_id=0)
        got = gen.generate(prompt, 8).tokens
        same = got == want[0, len(prompt):].tolist()
        print(f"qir float greedy tokens {'equal' if same else 'DIFFER FROM'} torch's",
              flush=True)

    results = torch_results(model)
    with tempfile.TemporaryDirectory(prefix="qir-gen-") as tmp:
        if not args.no_onnxruntime:
            try:
                results += ort_results(model, spec, prefill_in, decode_in, Path(tmp))
            except Exception as e:  # noqa: BLE001
                results.append(Result("onnxruntime prefill",
                                      note=f"failed: {type(e).__name__}: {e}"[:160]))
                traceback.print_exc(file=sys.stderr)
        chosen = SCHEMES if args.schemes is None else {
            k: SCHEMES[k] for k in (s.strip() for s in args.schemes.split(","))}
        results += qir_results(model, spec, module_for, prefill_in, decode_in, check, chosen)
        measure_interleaved(results, args.repeat, args.warmup, args.rounds)
    print(table(results, args.markdown), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
