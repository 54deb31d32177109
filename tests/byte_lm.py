"""A small Llama-architecture byte-level language model trained on real text present on
every machine: the Python standard library's own source files. For the LLM quality
test (tests/methods/test_lm_quality.py) and bench/lm_quality.py.

    from tests.byte_lm import trained_model, corpus
    model = trained_model()            # trained once, then cached
    train, held_out = corpus()         # uint8 arrays of bytes

The corpus: the stdlib modules listed in MODULES (sources of this Python), bytes
concatenated in that order; every fifth module is held out (never trained on). The
model: LlamaForCausalLM, 256-byte vocabulary, 6 layers, hidden 256, 8 query heads on 4
KV heads, SiLU MLP 688 (4.5M parameters), trained with AdamW for STEPS steps of 8
random windows of 129 bytes, seeded, on 2 threads: about a minute on a 2-core CPU.
The trained weights are cached under $QIR_CACHE_DIR (default ~/.cache/qir), keyed by a
hash of the corpus and the recipe, so a machine trains once.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
from pathlib import Path

import numpy as np
import torch

MODULES = ("argparse", "ast", "calendar", "collections/__init__", "configparser",
           "contextlib", "csv", "dataclasses", "datetime", "decimal", "difflib",
           "email/message", "enum", "fractions", "functools", "gettext", "heapq",
           "inspect", "ipaddress", "json/decoder", "json/encoder", "logging/__init__",
           "mailbox", "optparse", "pathlib", "pickle", "pprint", "queue", "random",
           "shutil", "smtplib", "statistics", "string", "subprocess", "tarfile",
           "tempfile", "textwrap", "threading", "typing", "uuid", "zipfile")
STEPS = 300
BATCH, WINDOW = 8, 128
SEED = 0


def corpus() -> tuple[np.ndarray, np.ndarray]:
    """(training bytes, held-out bytes) as uint8 arrays."""
    root = Path(sysconfig.get_paths()["stdlib"])
    train, held = [], []
    for i, name in enumerate(MODULES):
        data = (root / f"{name}.py").read_bytes()
        (held if i % 5 == 4 else train).append(data)
    return (np.frombuffer(b"".join(train), np.uint8).copy(),
            np.frombuffer(b"".join(held), np.uint8).copy())


def config():
    from frontends.causal_lm import import_transformers

    transformers = import_transformers()
    return transformers.LlamaConfig(vocab_size=256, hidden_size=256, intermediate_size=688,
                                    num_hidden_layers=6, num_attention_heads=8,
                                    num_key_value_heads=4, max_position_embeddings=256,
                                    tie_word_embeddings=False)


def _cache_path(train: np.ndarray) -> Path:
    recipe = f"{MODULES}{STEPS}{BATCH}{WINDOW}{SEED}{config().to_json_string()}"
    key = hashlib.sha256(train.tobytes() + recipe.encode()).hexdigest()[:16]
    base = Path(os.environ.get("QIR_CACHE_DIR", Path.home() / ".cache" / "qir"))
    return base / f"byte-lm-{key}.pt"


def trained_model():
    """The trained model (eval mode), from the cache or trained now. Processes that
    want it at once (pytest-xdist workers) take turns on a lock file: one trains, the
    others then load its weights."""
    import fcntl

    import transformers

    train, _ = corpus()
    path = _cache_path(train)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = transformers.LlamaForCausalLM(config())
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            _train(train, path)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def _train(train: np.ndarray, path: Path) -> None:
    """Train the recipe's model on `train` (seeded, 2 threads) and save it to `path`."""
    import transformers

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(SEED)
        model = transformers.LlamaForCausalLM(config())
        rng = np.random.default_rng(SEED)
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=STEPS,
                                                    pct_start=0.1)
        data = torch.from_numpy(train.astype(np.int64))
        model.train()
        for _ in range(STEPS):
            starts = rng.integers(0, len(train) - WINDOW - 1, BATCH)
            batch = torch.stack([data[s:s + WINDOW + 1] for s in starts])
            loss = model(input_ids=batch, labels=batch).loss  # shifted inside
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
    finally:
        torch.set_num_threads(threads)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)


def held_out_windows(p: int, count: int) -> np.ndarray:
    """`count` evenly spaced windows of p + 1 held-out bytes: [count, p + 1]."""
    _, held = corpus()
    starts = np.linspace(0, len(held) - p - 2, count).astype(np.int64)
    return np.stack([held[s:s + p + 1] for s in starts]).astype(np.int64)


def perplexity(logits_fn, windows: np.ndarray) -> tuple[float, np.ndarray]:
    """(exp of the mean next-byte negative log-likelihood, greedy predictions) over the
    windows; logits_fn(ids [1, P]) -> logits [1, P, 256]."""
    nll, preds = [], []
    for w in windows:
        logits = np.asarray(logits_fn(w[None, :-1]), np.float64)[0]
        z = logits - logits.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        nll.append(-logp[np.arange(len(w) - 1), w[1:]])
        preds.append(logits.argmax(axis=-1))
    return float(np.exp(np.concatenate(nll).mean())), np.stack(preds)


SCHEMES = {"float": "optimize",
           "w8a16": "w8a16",
           "w4a16 g128 (round to nearest)": "w4a16",
           "w4a16 g128 GPTQ": "canonicalize,fold-batchnorm,fuse-activations,"
                              "weight-only{bits=4,group-size=128,gptq=true},canonicalize",
           "w4a16 g128 AWQ": "canonicalize,fold-batchnorm,fuse-activations,"
                             "weight-only{bits=4,group-size=128,awq=true},canonicalize",
           "w4a16 g32 GPTQ": "canonicalize,fold-batchnorm,fuse-activations,"
                             "weight-only{bits=4,group-size=32,gptq=true},canonicalize",
           "dynamic int8": "int8-dynamic",
           "int8 (W8A8)": "int8",
           "int8 SmoothQuant (W8A8)": "int8-smooth",
           "fp8 e4m3": "fp8-e4m3",
           "nf4 g64 GPTQ": "canonicalize,fold-batchnorm,fuse-activations,"
                           "weight-only{bits=4,group-size=64,format=nf4,gptq=true},canonicalize"}


def fp32_reference(model, windows: np.ndarray) -> tuple[float, np.ndarray]:
    """torch fp32's (perplexity, greedy predictions) on the windows (`perplexity`)."""
    def torch_logits(ids):
        with torch.no_grad():
            return model(input_ids=torch.from_numpy(ids)).logits.numpy()

    return perplexity(torch_logits, windows)


def training_rows(length: int, count: int) -> list[np.ndarray]:
    """`count` windows of `length` training bytes at seeded random starts, as int64
    token rows: the calibration data."""
    train, _ = corpus()
    starts = np.random.default_rng(1).integers(0, len(train) - length, count)
    return [train[s:s + length].astype(np.int64) for s in starts]


def evaluate(model, schemes: dict[str, str] = SCHEMES, p: int = 128, windows: int = 24,
             calib: int = 16) -> dict[str, dict]:
    """Per scheme: held-out perplexity and greedy agreement with torch fp32 (the share
    of positions whose argmax byte is fp32's), each built for llvm from the prefill
    (frontends.causal_lm.export_prefill); GPTQ calibrates on `calib` training windows."""
    from backends.tvm import build
    from frontends.causal_lm import export_prefill, prefill_batches, prefill_mask
    from passes import PassContext, PassManager
    from qir.cli.opt import copy_module

    held = held_out_windows(p, windows)
    mask, positions = prefill_mask(p), np.arange(p, dtype=np.int64)[None]
    fp32_ppl, fp32_pred = fp32_reference(model, held)
    out = {"torch fp32": {"perplexity": fp32_ppl, "agreement": 1.0}}
    batches = prefill_batches(training_rows(p, calib), p)
    exported = export_prefill(model, p)
    for label, pipeline in schemes.items():
        module = copy_module(exported)  # each scheme quantizes its own copy
        PassManager(pipeline, ctx=PassContext(calibration_data=batches, progress=False)
                    ).run(module)
        compiled = build(module, "llvm")
        ppl, pred = perplexity(lambda ids: next(iter(compiled.run(  # logits: the first
            {"input_ids": ids, "mask": mask, "position_ids": positions}).values())), held)
        out[label] = {"perplexity": ppl, "agreement": float((pred == fp32_pred).mean())}
    return out


GENERATION_SCHEMES = {"float": ("optimize", False),
                      "float, int8 KV cache": ("optimize", True),
                      "w4a16 g128 GPTQ, int8 KV cache": (SCHEMES["w4a16 g128 GPTQ"], True),
                      "int8 SmoothQuant (W8A8)": ("int8-smooth", False),
                      "int8 SmoothQuant, int8 KV cache": ("int8-smooth", True),
                      "fp8 e4m3": ("fp8-e4m3", False)}


def evaluate_generation(model, schemes: dict[str, tuple[str, bool]] = GENERATION_SCHEMES,
                        prefill: int = 32, length: int = 128, windows: int = 8,
                        calib: int = 16) -> dict[str, dict]:
    """Per scheme (pipeline, int8 KV cache?): held-out perplexity and greedy agreement
    with torch fp32, scored through the generation path: each window's first `prefill`
    bytes prefilled, every later byte one decode step reading the cache (Generator.logits),
    both functions compiled for llvm and calibrated as `qir compile HF_DIR --calib` does."""
    import dataclasses

    from backends.tvm import build
    from frontends.causal_lm import (
        decode_batches,
        export_causal_lm,
        function_module,
        prefill_batches,
    )
    from passes import PassContext, PassManager
    from qir.cli.generate import Generator
    from qir.cli.opt import copy_module

    held = held_out_windows(length, windows)  # `length` bytes in, each scored on the next
    fp32_ppl, fp32_pred = fp32_reference(model, held)
    out = {"torch fp32": {"perplexity": fp32_ppl, "agreement": 1.0}}
    rows = training_rows(length, calib)
    exported, spec = export_causal_lm(model, max_seq=length + 1, prefill_len=prefill)
    main_data, decode_data = prefill_batches(rows, prefill), decode_batches(model, spec, rows)
    for label, (pipeline, kv) in schemes.items():
        module = copy_module(exported)
        ctx = PassContext(calibration_data=main_data, function_data={"decode": decode_data},
                          progress=False)
        PassManager(f"kv-int8,{pipeline}" if kv else pipeline, ctx=ctx).run(module)
        gen = Generator(build(function_module(module, "main"), "llvm").run,
                        build(function_module(module, "decode"), "llvm").run,
                        dataclasses.replace(spec, kv_cache="i8" if kv else "f32"))
        ppl, pred = perplexity(lambda ids: gen.logits(ids[0])[None], held)
        out[label] = {"perplexity": ppl, "agreement": float((pred == fp32_pred).mean())}
    return out
