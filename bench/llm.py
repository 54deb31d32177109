"""Every scheme on a Llama-architecture decoder: one forward of 1x128 tokens per system,
qir's schemes side by side with the matching mode of onnxruntime and torch, all measured
in this process in alternating rounds (bench.run's `measure_interleaved`), 2 threads.

    .venv/bin/python -m bench.llm [--repeat 30] [--rounds 3] [--markdown]

The model: transformers' LlamaForCausalLM from a config (4 layers, hidden 256, 8 query
heads sharing 4 KV heads, RoPE, RMSNorm, SiLU MLP, byte vocabulary), random weights;
logits out. Systems:
- qir: float (`optimize`), `--int8`, `--dynamic`, `--w8a16`, `--w4a16`, `--fp8`
  (calibrated on 8 random sequences), each compiled for llvm;
- torch fp32 eager and torch's quantize_dynamic (int8 linears);
- onnxruntime on the torch.onnx (dynamo) export: fp32, quantize_dynamic int8, and int4
  weights through MatMulNBits (its MatMulNBitsQuantizer, blocks of 32).
Each qir row's last column is its ratio to the matching mode (docs/performance.md): fp32
for float, dynamic int8 for `--int8` and `--dynamic`, MatMulNBits for `--w4a16` and
`--w8a16`, torch fp32 for `--fp8` (onnxruntime's CPU has no fp8).
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
import traceback
from pathlib import Path


from bench.run import (Result, _ort_session, library_bytes, measure_interleaved,
                       quiet_on_threads)

SEQ = 128
SCHEMES = {"float": "optimize", "int8": "int8", "dynamic": "int8-dynamic",
           "w8a16": "w8a16", "w4a16": "w4a16", "fp8": "fp8-e4m3"}
MATCHING = {"qir float": "onnxruntime fp32", "qir int8": "onnxruntime int8 dynamic",
            "qir dynamic": "onnxruntime int8 dynamic", "qir w8a16": "onnxruntime int4 MatMulNBits",
            "qir w4a16": "onnxruntime int4 MatMulNBits", "qir fp8": "torch fp32 eager"}


def build_model(layers: int = 4, hidden: int = 256):
    """LlamaForCausalLM from a config, random weights (seed 0), as ids -> logits."""
    import torch

    from tests.real_models import torchvision_models

    torchvision_models()  # transformers imports torchvision when it is installed
    import transformers

    cfg = transformers.LlamaConfig(vocab_size=256, hidden_size=hidden,
                                   intermediate_size=688 * hidden // 256,
                                   num_hidden_layers=layers, num_attention_heads=8,
                                   num_key_value_heads=4, max_position_embeddings=2 * SEQ,
                                   use_cache=False)
    torch.manual_seed(0)
    llama = transformers.LlamaForCausalLM(cfg).eval()

    class Logits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids):
            return self.model(input_ids=input_ids).logits

    return Logits(llama).eval()


def qir_results(model, ids, calib) -> list[Result]:
    import frontends
    from backends.tvm import build
    from passes import PassContext, PassManager

    out = []
    for scheme, pipeline in SCHEMES.items():
        label = f"qir {scheme}"
        try:
            start = time.perf_counter()
            module = frontends.from_torch(model, (ids,))
            name = module.main.args[0].name
            batches = [{name: c} for c in calib]
            PassManager(pipeline, ctx=PassContext(calibration_data=batches, progress=False)
                        ).run(module)
            compiled = build(module, "llvm")
            compile_s = time.perf_counter() - start
            out.append(Result(label, None, compile_s, library_bytes(compiled),
                              fn=functools.partial(compiled.run, {name: ids.numpy()})))
        except Exception as e:  # noqa: BLE001  (one scheme failing must not hide the rest)
            out.append(Result(label, note=f"failed: {type(e).__name__}: {e}"[:160]))
            traceback.print_exc(file=sys.stderr)
    return out


def torch_results(model, ids) -> list[Result]:
    import torch

    dyn = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)

    def run(m):
        with torch.no_grad():
            return m(ids)

    return [Result("torch fp32 eager", fn=functools.partial(run, model)),
            Result("torch int8 dynamic", note="quantize_dynamic",
                   fn=functools.partial(run, dyn))]


def ort_results(model, ids, work: Path) -> list[Result]:
    try:
        import onnxruntime  # noqa: F401
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError:
        return [Result("onnxruntime fp32", note="onnxruntime not installed (.[bench])")]
    import logging

    import onnx
    import torch

    for name in ("onnxruntime.quantization.matmul_nbits_quantizer", "onnxscript", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.ERROR)  # their notes per node
    fp32 = work / "llama.onnx"
    start = time.perf_counter()
    with torch.no_grad():
        torch.onnx.export(model, (ids,), str(fp32), input_names=["input_ids"], dynamo=True,
                          opset_version=18, external_data=False)
    export_s = time.perf_counter() - start
    feed = {"input_ids": ids.numpy()}
    out = []
    sess = _ort_session(fp32)
    out.append(Result("onnxruntime fp32", None, export_s, fp32.stat().st_size,
                      fn=lambda: sess.run(None, feed)))
    dyn = work / "llama.int8.onnx"
    start = time.perf_counter()
    quantize_dynamic(str(fp32), str(dyn), weight_type=QuantType.QInt8)
    dsess = _ort_session(dyn)
    out.append(Result("onnxruntime int8 dynamic", None, time.perf_counter() - start,
                      dyn.stat().st_size, "quantize_dynamic",
                      fn=lambda: dsess.run(None, feed)))
    nbits = work / "llama.int4.onnx"
    start = time.perf_counter()
    quant = MatMulNBitsQuantizer(onnx.load(str(fp32)), block_size=32, is_symmetric=True)
    quant.process()
    quant.model.save_model_to_file(str(nbits), False)
    nsess = _ort_session(nbits)
    out.append(Result("onnxruntime int4 MatMulNBits", None, time.perf_counter() - start,
                      nbits.stat().st_size, "MatMulNBitsQuantizer, blocks of 32",
                      fn=lambda: nsess.run(None, feed)))
    return out


def table(results: list[Result], markdown: bool) -> str:
    by = {r.system: r for r in results}
    cols = ["system", "median ms", "p10 ms", "x matching", "compile s", "size KiB", "note"]

    def fmt(x, spec):
        return format(x, spec) if x is not None else "-"

    lines = (["| " + " | ".join(cols) + " |", "|---|" + "---:|" * (len(cols) - 2) + "---|"]
             if markdown else
             [f"{cols[0]:<30} " + " ".join(f"{c:>11}" for c in cols[1:-1]) + "  note"])
    for r in results:
        peer = by.get(MATCHING.get(r.system, ""))
        ratio = (r.median_ms / peer.median_ms if peer is not None and r.median_ms
                 and peer.median_ms else None)
        note = r.note + (f" (vs {peer.system})" if ratio is not None else "")
        cells = [fmt(r.median_ms, ".2f"), fmt(r.p10_ms, ".2f"), fmt(ratio, ".2f"),
                 fmt(r.compile_s, ".1f"),
                 fmt(r.size_bytes / 1024 if r.size_bytes is not None else None, ".0f")]
        lines.append(f"| {r.system} | " + " | ".join(cells) + f" | {note} |" if markdown else
                     f"{r.system:<30} " + " ".join(f"{c:>11}" for c in cells) + f"  {note}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    quiet_on_threads()
    import torch

    model = build_model(args.layers)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 256, (1, SEQ), generator=gen)
    calib = [torch.randint(0, 256, (1, SEQ), generator=gen).numpy() for _ in range(8)]
    results = torch_results(model, ids)
    with tempfile.TemporaryDirectory(prefix="qir-llm-") as tmp:
        try:
            results += ort_results(model, ids, Path(tmp))
        except Exception as e:  # noqa: BLE001
            results.append(Result("onnxruntime", note=f"failed: {type(e).__name__}: {e}"[:160]))
            traceback.print_exc(file=sys.stderr)
        results += qir_results(model, ids, calib)
        measure_interleaved(results, args.repeat, args.warmup, args.rounds)
    print(table(results, args.markdown), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
