"""Causal language models for generation: a Hugging Face causal LM (Llama, Qwen2, GPT-2
and other architectures that keep their keys and values in transformers' Cache) as one
qir module with two functions that share the weights, with a static-size KV cache:

    @main    (prefill)  input_ids [1, P] i64, mask [1, 1, P, P] f32, position_ids [1, P] i64
                        -> logits [1, P, V], keys [L, 1, Hkv, P, D], values [L, 1, Hkv, P, D]
    @decode             input_ids [1, 1], mask [1, 1, 1, S], position_ids [1, 1],
                        past_keys [L, 1, Hkv, S - 1, D], past_values (the same)
                        -> logits [1, 1, V], keys [L, 1, Hkv, 1, D], values (the same)

P is the prefill length, S the longest sequence (prompt and generated tokens). The masks
are additive (0 where a query may attend, float32's lowest value where not): prefill's
is causal, so a prompt shorter than P is padded on the right and the padding is never
attended to; decode's opens the cache slots filled so far and the new token's own (the
last). Keys are kept after rotary embedding, as transformers does, so a slot's position
never changes. The generation loop (qir/cli/generate.py) owns the cache: it copies
prefill's keys and values into slots 0..n-1 and each decode step's into the next slot.

`@main` is the prefill because calibration (GPTQ's Hessians) runs `@main`: prompts are
what calibration data looks like. Both functions name their parameters by the torch
state_dict, so the weights are stored once and quantized once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from qir.diagnostics import QirError
from qir.ir import Module

NEG = float(np.finfo(np.float32).min)


@dataclass(frozen=True)
class CausalLMSpec:
    """What the generation loop needs to know about the two functions."""

    model_type: str
    vocab: int
    layers: int
    kv_heads: int
    head_dim: int
    max_seq: int  # S: prompt plus generated tokens
    prefill_len: int  # P
    eos_token_id: int | None
    kv_cache: str = "f32"  # "i8": the cache crosses calls as int8 (passes/kv_cache.py)

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> CausalLMSpec:
        fields = CausalLMSpec.__dataclass_fields__
        return CausalLMSpec(**{k: d[k] for k in fields if k in d or k != "kv_cache"})

    def empty_cache(self) -> np.ndarray:
        """Zeros in the layout decode's past_keys / past_values take: float32
        [L, 1, Hkv, S - 1, D], or int8 [L * Hkv, S - 1, D] for an int8 cache (one
        scale per layer and head on axis 0). Either way slots are the second-to-last
        axis: `cache[..., i:j, :] = out[..., :j - i, :]` stores new keys."""
        if self.kv_cache == "i8":
            return np.zeros((self.layers * self.kv_heads, self.max_seq - 1, self.head_dim),
                            np.int8)
        return np.zeros((self.layers, 1, self.kv_heads, self.max_seq - 1, self.head_dim),
                        np.float32)


def prefill_mask(p: int) -> np.ndarray:
    """The causal additive mask [1, 1, P, P]."""
    return np.triu(np.full((p, p), NEG, np.float32), 1)[None, None]


def decode_mask(filled: int, max_seq: int) -> np.ndarray:
    """[1, 1, 1, S]: cache slots 0..filled-1 and the new token (slot S-1) open."""
    mask = np.full((1, 1, 1, max_seq), NEG, np.float32)
    mask[..., :filled] = 0.0
    mask[..., -1] = 0.0
    return mask


def prefill_batches(rows, p: int) -> list[dict[str, np.ndarray]]:
    """@main's inputs for token rows (each a 1-d array): every row cut into runs of P
    tokens, a last shorter run padded on the right."""
    mask, positions = prefill_mask(p), np.arange(p, dtype=np.int64)[None]
    batches = []
    for row in rows:
        for start in range(0, max(len(row) - p, 0) + 1, p):
            padded = np.zeros((1, p), np.int64)
            run = row[start:start + p]
            padded[0, :len(run)] = run
            batches.append({"input_ids": padded, "mask": mask, "position_ids": positions})
    return batches


def decode_batches(model: torch.nn.Module, spec: CausalLMSpec, rows, per_row: int = 4,
                   limit: int = 64) -> list[dict[str, np.ndarray]]:
    """@decode's inputs for token rows, as generation feeds it: for `per_row` positions
    t spread over each row (up to S - 1 tokens), the float cache of tokens 0..t-1 (from
    one torch forward of the row), token t at position t. At most `limit` batches."""
    batches = []
    for row in rows:
        n = min(len(row), spec.max_seq - 1)
        if n < 2 or len(batches) >= limit:
            continue
        with torch.no_grad():
            _, keys, values = _Step(model, spec.layers, past=False)(
                torch.as_tensor(np.asarray(row[:n], np.int64))[None], None,
                torch.arange(n)[None])
        for t in sorted({int(round(x)) for x in np.linspace(1, n - 1, per_row)}):
            past = [np.zeros((spec.layers, 1, spec.kv_heads, spec.max_seq - 1, spec.head_dim),
                             np.float32) for _ in range(2)]
            past[0][..., :t, :] = keys[..., :t, :].numpy()
            past[1][..., :t, :] = values[..., :t, :].numpy()
            batches.append({"input_ids": np.asarray(row[t:t + 1], np.int64)[None],
                            "mask": decode_mask(t, spec.max_seq),
                            "position_ids": np.array([[t]], np.int64),
                            "past_keys": past[0], "past_values": past[1]})
    return batches[:limit]


def hf_model(path: str | Path):
    """A transformers causal LM from a local directory: its weights when the directory
    holds them (config.json plus model.safetensors or pytorch_model.bin), else built
    from config.json with random weights (seed 0). Nothing is downloaded."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise QirError(f"{path}: not a Hugging Face model directory (no config.json)")
    transformers = import_transformers()
    try:
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
        weights = any((path / f).exists() for f in (
            "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"))
        if weights:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                path, local_files_only=True, dtype=torch.float32)
        else:
            torch.manual_seed(0)
            model = transformers.AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError, KeyError) as e:
        raise QirError(f"{path}: transformers cannot load this model: {e}") from None
    return model.float().eval()


def import_transformers():
    """The transformers module. transformers imports torchvision when it is installed,
    and PyPI's torchvision (built against CUDA torch) fails loading its C operators
    beside the CPU torch: then torchvision is left as its pure-Python half (its
    __init__ not run; `torchvision.models` still imports), see `stub_torchvision`."""
    stub_torchvision()
    import transformers

    return transformers


def stub_torchvision() -> None:
    """Make `import torchvision.*` work beside the CPU torch: when importing torchvision
    fails (`torchvision::nms does not exist`), drop the half import and register the
    package without running its __init__. Nothing to do when it imports, or is absent."""
    import importlib.util
    import sys

    if importlib.util.find_spec("torchvision") is None or "torchvision" in sys.modules:
        return
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):
        for name in [m for m in sys.modules if m == "torchvision"
                     or m.startswith("torchvision.")]:
            del sys.modules[name]
        spec = importlib.util.find_spec("torchvision")
        sys.modules["torchvision"] = importlib.util.module_from_spec(spec)


class _Step(torch.nn.Module):
    """One call of the model on T new tokens, with `past` cached tokens before them."""

    def __init__(self, model, layers: int, past: bool):
        super().__init__()
        self.model, self.layers, self.past = model, layers, past

    def forward(self, input_ids, mask, position_ids, *past):
        from transformers import DynamicCache

        cache = DynamicCache()
        if self.past:
            for i in range(self.layers):
                cache.update(past[0][i], past[1][i], i)
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                         past_key_values=cache, use_cache=True)
        t = input_ids.shape[1]
        keys = torch.stack([cache.layers[i].keys[:, :, -t:] for i in range(self.layers)])
        values = torch.stack([cache.layers[i].values[:, :, -t:] for i in range(self.layers)])
        return out.logits, keys, values


def export_causal_lm(model: torch.nn.Module, max_seq: int | None = None,
                     prefill_len: int = 64) -> tuple[Module, CausalLMSpec]:
    """(module with @main = prefill and @decode, spec) for a transformers causal LM;
    `max_seq` defaults to 256, or the model's positions when fewer."""
    from frontends import from_torch

    config = model.config
    layers = int(config.num_hidden_layers)
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions",
                                                                        None)
    if max_seq is None:
        max_seq = min(256, int(limit)) if limit is not None else 256
    if limit is not None and max_seq > int(limit):
        raise QirError(f"--max-seq {max_seq} is beyond the model's {limit} positions")
    if not 2 <= prefill_len < max_seq:
        raise QirError(f"the prefill length ({prefill_len}) must be at least 2 and below "
                       f"the longest sequence ({max_seq})")
    p = prefill_len
    ids = torch.zeros((1, p), dtype=torch.long)
    positions = torch.arange(p)[None]
    prefill = _Step(model, layers, past=False).eval()
    with torch.no_grad():
        try:
            _, keys, _ = prefill(ids, torch.tensor(prefill_mask(p)), positions)
        except (AttributeError, TypeError) as e:
            raise QirError(f"{type(model).__name__}: cannot run it with a transformers "
                           f"DynamicCache and a 4-d mask ({e}); generation supports causal "
                           "LMs that keep their keys and values in transformers' Cache "
                           "(Llama, Qwen2, GPT-2, ...)") from None
    kv_heads, head_dim = int(keys.shape[2]), int(keys.shape[4])
    module = export_prefill(model, p)
    past = torch.zeros((layers, 1, kv_heads, max_seq - 1, head_dim))
    decode = from_torch(_Step(model, layers, past=True).eval(),
                        (ids[:, :1], torch.tensor(decode_mask(0, max_seq)), positions[:, :1],
                         past, past.clone()))
    _merge(module, decode, "decode")
    for fn in module.functions.values():
        _rename(fn, list(zip(fn.args, ("input_ids", "mask", "position_ids", "past_keys",
                                       "past_values")))
                + list(zip(fn.outputs, ("logits", "keys", "values"))))
    eos = getattr(config, "eos_token_id", None)
    spec = CausalLMSpec(str(getattr(config, "model_type", type(model).__name__)),
                        int(config.vocab_size), layers, kv_heads, head_dim, max_seq, p,
                        eos if isinstance(eos, int) else None)
    return module, spec


def export_prefill(model: torch.nn.Module, prefill_len: int) -> Module:
    """The prefill alone, as @main (input_ids, mask, position_ids -> logits, keys,
    values): what scoring text needs (teacher-forced logits of P tokens)."""
    from frontends import from_torch

    p = prefill_len
    module = from_torch(_Step(model, int(model.config.num_hidden_layers), past=False).eval(),
                        (torch.zeros((1, p), dtype=torch.long),
                         torch.tensor(prefill_mask(p)), torch.arange(p)[None]))
    _rename(module.main, list(zip(module.main.args, ("input_ids", "mask", "position_ids")))
            + list(zip(module.main.outputs, ("logits", "keys", "values"))))
    return module


def _rename(fn, pairs) -> None:
    """Give each value its name, moving any other value of that name aside."""
    wanted = {name for _, name in pairs}
    for v in fn.values():
        if v.name in wanted and all(v is not mine for mine, _ in pairs):
            v.name = f"{v.name}_"
    for v, name in pairs:
        v.name = name


def _merge(into: Module, other: Module, name: str) -> None:
    """Add `other`'s only function to `into` as @name; parameters of the same name must
    hold the same values (the same state_dict), others are renamed apart."""
    fn = other.main
    renamed = {}
    for pname, array in other.params.items():
        mine = into.params.get(pname)
        if mine is None:
            into.params[pname] = array
        elif mine.shape != array.shape or mine.dtype != array.dtype \
                or not np.array_equal(mine, array):
            renamed[pname] = into.add_param(pname, array)
    for op in fn.ops:
        if op.name == "qir.param" and op.attr("name") in renamed:
            op.attrs["name"] = renamed[op.attr("name")]
    del other.functions[fn.name]
    fn.name = name
    into.add_function(fn)


def function_module(module: Module, name: str) -> Module:
    """A module of `module`'s function @name alone, as @main, with the parameters it
    uses: a standard single-entry artifact (the function is moved, not copied)."""
    fn = module.function(name)
    single = Module()
    del module.functions[fn.name]
    fn.name = "main"
    single.add_function(fn)
    used = {op.attr("name") for op in fn.ops if op.name == "qir.param"}
    single.params = {k: v for k, v in module.params.items() if k in used}
    return single
