"""`qir generate OUTDIR --prompt-ids IDS.npy --max-new-tokens N [--sample --seed S
--temperature T --top-k K] [--backend numpy]`: generate tokens with a causal LM compiled
by `qir compile HF_DIR` (frontends/causal_lm.py), printing the tokens and tokens/s.

A generation OUTDIR holds two standard OUTDIRs, `prefill/` and `decode/` (each runs
alone with `qir run` / `qir bench`), and `generation.json` (the model's layer, head and
cache sizes). The loop keeps the KV cache, [layers, 1, kv heads, S - 1, head dim] for
keys and for values, in numpy:
1. prefill: the prompt's first min(n, P) tokens, padded on the right to P (the causal
   mask keeps padding out of every real token's attention); its keys and values fill
   cache slots 0..; the logits of the last real token give the first new token;
2. a longer prompt's remaining tokens, then each new token, go through decode one at a
   time: position = slots filled, the mask opens those slots, the new keys and values
   go into the next slot.
Greedy decoding takes the argmax (the first on ties, as torch); `--sample` draws from
softmax(logits / T), restricted to the top K when given, with numpy's PCG64 seeded by
`--seed`. Generation stops after N new tokens, at the end-of-sequence token
(`--eos`, default the model's), or when the cache is full (S tokens). Each function runs
once before the timed generation (loading a library and its first call are not the
model's speed).

`qir compile HF_DIR -o OUTDIR [--w4a16 | --w8a16 | --nf4 | --dynamic | --int8
[--smoothquant] | --fp8 [--fp8-format e5m2]] [--kv-int8] [--calib C.npz] [--max-seq S]
[--prefill-len P]` (`compile_causal_lm`) writes such an OUTDIR from a local transformers
model directory. Calibration data for a causal LM is an .npz with `input_ids` [N, T]:
every full run of P tokens of each row is one prefill batch, and decode steps made from
the rows calibrate @decode (frontends.causal_lm.decode_batches).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qir.diagnostics import QirError

GENERATION_FILE = "generation.json"
GENERATION_FORMAT = "qir-generation/1"


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate tokens with a causal LM compiled by "
                       "qir compile HF_DIR", description=__doc__.split("\n\n")[0])
    p.add_argument("outdir", help="an OUTDIR written by qir compile HF_DIR")
    p.add_argument("--prompt-ids", required=True, help=".npy of token ids (1-d, integers)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy argmax")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0, help="with --sample: the K likeliest "
                   "tokens only (0: all)")
    p.add_argument("--seed", type=int, default=0, help="with --sample: the random seed")
    p.add_argument("--eos", type=int, default=None, help="stop at this token (default: "
                   "the model's end-of-sequence token; -1: never)")
    p.add_argument("--backend", choices=("numpy",), default=None, help="run the IR in the "
                   "numpy interpreter instead of the compiled libraries")
    p.add_argument("--json", action="store_true", help="print tokens and timings as JSON")
    p.set_defaults(func=run)


@dataclass
class Generation:
    """Tokens generated, and where the time went."""

    tokens: list[int]
    prompt_tokens: int
    prefill_s: float
    decode_s: float = 0.0
    decode_steps: int = 0
    stopped: str = "max-new-tokens"
    step_s: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        """Decode speed: tokens from decode steps per second of decoding."""
        return self.decode_steps / self.decode_s if self.decode_s > 0 else float("nan")


class _Cache:
    """The KV cache between calls (spec.empty_cache's layout) and the slots filled."""

    def __init__(self, spec):
        self.keys, self.values, self.filled = spec.empty_cache(), spec.empty_cache(), 0

    def store(self, keys: np.ndarray, values: np.ndarray, n: int) -> None:
        """Append the first n tokens of a call's keys and values (tokens: axis -2)."""
        end = self.filled + n
        self.keys[..., self.filled:end, :] = keys[..., :n, :]
        self.values[..., self.filled:end, :] = values[..., :n, :]
        self.filled = end


class Generator:
    """The generation loop over a prefill and a decode function (inputs dict -> outputs
    dict, as qir.cli.artifact.Runner.run), for the sizes in `spec`
    (frontends.causal_lm.CausalLMSpec)."""

    def __init__(self, prefill: Callable[[dict], dict], decode: Callable[[dict], dict], spec):
        self.prefill_fn, self.decode_fn, self.spec = prefill, decode, spec

    def warmup(self) -> None:
        """Run each function once (a library's first call sets up its VM), so that the
        timings of `generate` are the model's."""
        from frontends.causal_lm import decode_mask, prefill_mask

        spec, p = self.spec, self.spec.prefill_len
        cache = spec.empty_cache()
        self.prefill_fn({"input_ids": np.zeros((1, p), np.int64), "mask": prefill_mask(p),
                         "position_ids": np.arange(p, dtype=np.int64)[None]})
        self.decode_fn({"input_ids": np.zeros((1, 1), np.int64),
                        "mask": decode_mask(0, spec.max_seq),
                        "position_ids": np.zeros((1, 1), np.int64), "past_keys": cache,
                        "past_values": cache})

    def _prompt(self, prompt, what: str = "prompt") -> np.ndarray:
        spec = self.spec
        ids = np.asarray(prompt).reshape(-1)
        if ids.size == 0 or ids.dtype.kind not in "iu":
            raise QirError(f"the {what} must be a non-empty array of integer token ids")
        if ids.min() < 0 or ids.max() >= spec.vocab:
            raise QirError(f"{what} token ids must be in [0, {spec.vocab}), got "
                           f"{int(ids.min())}..{int(ids.max())}")
        if ids.size >= spec.max_seq:
            raise QirError(f"the {what} has {ids.size} tokens; this build holds at most "
                           f"{spec.max_seq} in all (recompile with a larger --max-seq)")
        return ids

    def _prefill(self, ids: np.ndarray) -> tuple[np.ndarray, _Cache]:
        """Prefill the first min(n, P) tokens: their logits [n, V] and the cache."""
        from frontends.causal_lm import prefill_mask

        p = self.spec.prefill_len
        first = ids[:p]
        padded = np.zeros((1, p), np.int64)
        padded[0, :first.size] = first
        out = self.prefill_fn({"input_ids": padded, "mask": prefill_mask(p),
                               "position_ids": np.arange(p, dtype=np.int64)[None]})
        logits, keys, values = out.values()  # (in order: passes may rename outputs)
        cache = _Cache(self.spec)
        cache.store(keys, values, first.size)
        return logits[0, :first.size], cache

    def _step(self, cache: _Cache, token: int) -> np.ndarray:
        """One decode step: the token's logits [V]; its keys and values join the cache."""
        from frontends.causal_lm import decode_mask

        out = self.decode_fn({
            "input_ids": np.array([[token]], np.int64),
            "mask": decode_mask(cache.filled, self.spec.max_seq),
            "position_ids": np.array([[cache.filled]], np.int64),
            "past_keys": cache.keys, "past_values": cache.values})
        logits, keys, values = out.values()
        cache.store(keys, values, 1)
        return logits[0, 0]

    def logits(self, ids) -> np.ndarray:
        """Teacher-forced logits [n, V] of tokens ids[0..n-1] through the generation path
        (prefill, then one decode step per token: the cache as generation keeps it), for
        scoring text, e.g. the quality of an int8 KV cache."""
        ids = self._prompt(ids, "text")
        first, cache = self._prefill(ids)
        rest = [self._step(cache, int(t)) for t in ids[first.shape[0]:]]
        return np.concatenate([first, np.stack(rest)]) if rest else first

    def generate(self, prompt, max_new_tokens: int, *, sample: bool = False,
                 temperature: float = 1.0, top_k: int = 0, seed: int = 0,
                 eos: int | None = None) -> Generation:
        ids = self._prompt(prompt)
        if max_new_tokens < 1:
            raise QirError("--max-new-tokens must be at least 1")
        if sample and temperature <= 0:
            raise QirError("--temperature must be positive")
        rng = np.random.default_rng(seed)
        start = time.perf_counter()
        logits, cache = self._prefill(ids)
        logits = logits[-1]
        for token in ids[self.spec.prefill_len:]:  # the rest of a long prompt
            logits = self._step(cache, int(token))
        result = Generation([], int(ids.size), time.perf_counter() - start)
        while True:
            token = self._pick(logits, sample, temperature, top_k, rng)
            result.tokens.append(token)
            if eos is not None and token == eos:
                result.stopped = "eos"
                break
            if len(result.tokens) >= max_new_tokens:
                break
            if cache.filled >= self.spec.max_seq - 1:
                result.stopped = "cache full"
                break
            t0 = time.perf_counter()
            logits = self._step(cache, token)
            result.step_s.append(time.perf_counter() - t0)
        result.decode_steps = len(result.step_s)
        result.decode_s = float(sum(result.step_s))
        return result

    @staticmethod
    def _pick(logits: np.ndarray, sample: bool, temperature: float, top_k: int, rng) -> int:
        logits = np.asarray(logits, np.float64)
        if not sample:
            return int(np.argmax(logits))
        z = logits / temperature
        if top_k > 0:
            cut = np.sort(z)[-min(top_k, z.size)]
            z = np.where(z >= cut, z, -np.inf)
        prob = np.exp(z - z.max())
        return int(rng.choice(z.size, p=prob / prob.sum()))


def open_generation(outdir: str, backend: str | None = None) -> Generator:
    """The Generator of a generation OUTDIR (its two artifacts verified and loaded)."""
    from frontends.causal_lm import CausalLMSpec
    from qir.cli.artifact import runner

    path = Path(outdir) / GENERATION_FILE
    if not path.is_file():
        raise QirError(f"{outdir}: no {GENERATION_FILE}: not compiled from a causal LM "
                       "(qir compile HF_DIR -o OUTDIR)")
    try:
        info = json.loads(path.read_text())
        if info.get("format") != GENERATION_FORMAT:
            raise QirError(f"{path}: format {info.get('format')!r}, expected "
                           f"{GENERATION_FORMAT!r}: recompile")
        spec = CausalLMSpec.from_json(info["spec"])
    except (ValueError, KeyError, TypeError) as e:
        raise QirError(f"{path}: malformed ({type(e).__name__}: {e}): recompile") from None
    prefill = runner(str(Path(outdir) / "prefill"), backend)
    decode = runner(str(Path(outdir) / "decode"), backend)
    return Generator(prefill.run, decode.run, spec)


def run(args) -> int:
    from qir.io import read_npy

    gen = open_generation(args.outdir, args.backend)
    prompt = read_npy(args.prompt_ids, "prompt ids")
    gen.warmup()
    eos = gen.spec.eos_token_id if args.eos is None else (None if args.eos < 0 else args.eos)
    result = gen.generate(prompt, args.max_new_tokens, sample=args.sample,
                          temperature=args.temperature, top_k=args.top_k, seed=args.seed,
                          eos=eos)
    if args.json:
        print(json.dumps({"tokens": result.tokens, "prompt_tokens": result.prompt_tokens,
                          "prefill_ms": result.prefill_s * 1e3,
                          "decode_tokens_per_s": result.tokens_per_s,
                          "stopped": result.stopped}))
        return 0
    print(" ".join(map(str, result.tokens)))
    print(f"prompt {result.prompt_tokens} tokens, prefill {result.prefill_s * 1e3:.1f} ms; "
          f"{len(result.tokens)} new tokens, decode {result.tokens_per_s:.1f} tokens/s "
          f"({result.decode_steps} steps); stopped: {result.stopped}", file=sys.stderr)
    return 0


def calibration_rows(path: str) -> np.ndarray:
    """The token rows [N, T] of a calibration .npz holding `input_ids` [N, T] (or [T])."""
    from qir.io import read_npz

    arrays = read_npz(path, "calibration data")
    if "input_ids" not in arrays:
        raise QirError(f"{path}: calibration data for a causal LM needs an array "
                       f"'input_ids' [samples, tokens]; it has {sorted(arrays)}")
    ids = arrays["input_ids"]
    if ids.dtype.kind not in "iu" or ids.ndim not in (1, 2) or ids.size == 0:
        raise QirError(f"{path}: 'input_ids' must be integer token ids [samples, tokens], "
                       f"got {ids.dtype}{list(ids.shape)}")
    return ids.reshape(1, -1) if ids.ndim == 1 else ids


def compile_causal_lm(args) -> int:
    """`qir compile HF_DIR ...`: export (frontends/causal_lm.py), one pipeline run over
    both functions, then a standard OUTDIR per function and generation.json; OUTDIR
    appears whole or not at all."""
    from backends.tvm import build
    from frontends.causal_lm import (
        decode_batches,
        export_causal_lm,
        function_module,
        hf_model,
        prefill_batches,
    )
    from passes import PassContext, PassManager, parse_pipeline
    from qir.cli.compile import manifest, scheme_pipeline, staged_outdir
    from qir.io import fix_mode, save

    if args.target not in ("llvm", "numpy"):
        raise QirError(f"a causal LM compiles for --target llvm (or numpy), not {args.target}")
    if args.output is None:
        raise QirError("give an output directory with -o OUTDIR")
    out = Path(args.output)
    if out.exists() and not args.force:
        raise QirError(f"{out} already exists; choose another -o or pass --force")
    pipeline = args.pipeline if args.pipeline is not None else scheme_pipeline(args)
    if args.kv_int8:
        pipeline = f"kv-int8,{pipeline}"
    steps = parse_pipeline(pipeline)
    names = {s.name for s in steps}
    ctx = PassContext(progress=not args.no_progress and sys.stderr.isatty())
    needs = sorted(names & {"calibrate", "kv-int8", "smoothquant", "mixed-precision"})
    if needs and not args.calib:
        raise QirError(f"{', '.join(needs)} calibrate on token ids: pass --calib C.npz "
                       "(an array input_ids [samples, tokens])")
    model = hf_model(args.model)
    module, spec = export_causal_lm(model, args.max_seq, args.prefill_len)
    if args.calib:
        rows = calibration_rows(args.calib)
        ctx.calibration_data = prefill_batches(rows, args.prefill_len)
        if names & {"calibrate", "kv-int8"}:  # @decode's observers, and the cache's range
            ctx.function_data["decode"] = decode_batches(model, spec, rows)
    if "kv-int8" in names:
        spec = dataclasses.replace(spec, kv_cache="i8")
    pm = PassManager(steps, verify_each=not args.no_verify_each, ctx=ctx,
                     dump_dir=args.dump_ir or args.dump_dir, timing=args.timing)
    pm.run(module)
    parts = {"prefill": function_module(module, "main"),
             "decode": function_module(module, "decode")}
    sizes = {}
    config = Path(args.model) / "config.json"
    with staged_outdir(out) as tmp:
        for name, part in parts.items():
            sub = tmp / name
            sub.mkdir()
            save(part, sub / "model.qir")
            if args.target == "llvm":
                build(part, "llvm").export_library(str(sub / "model.so"))
                sizes[name] = (sub / "model.so").stat().st_size
            fix_mode(sub, directory=True)
            info = manifest(part, args, pm.pipeline_string, sub, config)
            (sub / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")
        (tmp / GENERATION_FILE).write_text(json.dumps({
            "format": GENERATION_FORMAT, "spec": spec.to_json(),
            "pipeline": pm.pipeline_string, "library_bytes": sizes}, indent=2) + "\n")
        fix_mode(tmp, directory=True)
    for note in ctx.notes:
        print(f"note: {note}", file=sys.stderr)
    size = ", ".join(f"{k}/model.so {v / 2**20:.1f} MiB" for k, v in sizes.items())
    print(f"wrote {out} ({args.target}, causal LM {spec.model_type}, {spec.layers} layers, "
          f"prefill {spec.prefill_len}, max {spec.max_seq} tokens, {spec.kv_cache} cache"
          f"{'; ' + size if size else ''})",
          file=sys.stderr)
    return 0
