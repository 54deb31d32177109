"""Calibrating a causal LM's two functions (frontends/causal_lm.py): @decode's observers
calibrate on decode steps (PassContext.function_data), SmoothQuant shares one smoothing
between prefill and decode, and kv-int8 (passes/kv_cache.py) stores the KV cache as
int8 with one scale per layer and kv head."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qir import QirError


@pytest.fixture(scope="module")
def lm():
    import torch

    from frontends.causal_lm import (
        decode_batches,
        export_causal_lm,
        import_transformers,
        prefill_batches,
    )

    transformers = import_transformers()
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)).eval()
    module, spec = export_causal_lm(model, max_seq=24, prefill_len=8)
    rows = list(np.random.default_rng(0).integers(0, 128, (3, 20)))
    return model, module, spec, prefill_batches(rows, 8), decode_batches(model, spec, rows)


def context(lm, decode=True):
    from passes import PassContext

    _, _, _, main_data, decode_data = lm
    return PassContext(calibration_data=main_data, progress=False,
                       function_data={"decode": decode_data} if decode else {})


def test_decode_batches_hold_the_float_cache_of_the_tokens_before():
    """Each decode batch is the step at position t: the torch keys of tokens 0..t-1 in
    slots 0..t-1, zeros after, token t, its mask opening those slots and the last."""
    import torch

    from frontends.causal_lm import decode_batches, import_transformers

    transformers = import_transformers()
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)).eval()
    from frontends.causal_lm import CausalLMSpec

    spec = CausalLMSpec("llama", 64, 1, 1, 16, 16, 4, None)
    row = np.arange(3, 23)
    batches = decode_batches(model, spec, [row], per_row=3)
    assert [int(b["position_ids"][0, 0]) for b in batches] == [1, 8, 14]  # up to S - 2
    b = batches[1]
    assert b["input_ids"].tolist() == [[row[8]]]
    with torch.no_grad():
        cache = model(torch.tensor(row[:8])[None], use_cache=True).past_key_values
    np.testing.assert_allclose(b["past_keys"][0, :, :, :8], cache.layers[0].keys.numpy(),
                               rtol=1e-5, atol=1e-6)
    assert not b["past_keys"][..., 8:, :].any()
    assert (b["mask"][0, 0, 0] == 0).tolist() == [True] * 8 + [False] * 7 + [True]


def test_calibrate_runs_decode_on_its_own_data(lm):
    from passes import PassManager
    from qir.cli.opt import copy_module

    _, module, _, _, _ = lm
    module = copy_module(module)
    ctx = context(lm)
    PassManager("decompose-attention,insert-observers,calibrate", ctx=ctx).run(module)
    for fn in module.functions.values():
        observers = list(fn.walk("qir.observe"))
        assert observers and all(o.attr("max") > o.attr("min") for o in observers)
    assert any("of @decode" in n for n in ctx.notes)
    # the attention over the cache sees the cache's range, not the prefill's alone
    module = copy_module(lm[1])
    with pytest.raises(QirError, match=r"@decode has \d+ observers and no calibration data"):
        PassManager("insert-observers,calibrate", ctx=context(lm, decode=False)).run(module)


def test_smoothquant_smooths_prefill_and_decode_alike(lm):
    from passes import PassManager
    from qir.cli.opt import copy_module

    module = copy_module(lm[1])
    PassManager("smoothquant{threshold=1}", ctx=context(lm, decode=False)).run(module)
    from passes.utils import constant_array

    smoothed = {}
    for fn in module.functions.values():
        for op in fn.walk("qir.linear"):
            if op.operands[1].name.endswith(".smooth"):
                smoothed.setdefault(op.loc.module_path, []).append(
                    constant_array(op.operands[1]))
    assert len(smoothed) >= 4
    for path, arrays in smoothed.items():
        assert len(arrays) == 2, path  # one per function, the same smoothing
        np.testing.assert_array_equal(np.asarray(arrays[0]), np.asarray(arrays[1]))


def test_kv_int8_scales_per_layer_and_head(lm):
    from backends.numpy import run
    from passes import PassManager
    from qir.cli.opt import copy_module

    _, exported, spec, main_data, decode_data = lm
    module = copy_module(exported)
    ctx = context(lm)
    PassManager("kv-int8", ctx=ctx).run(module)
    decode = module.function("decode")
    past = next(a for a in decode.args if a.name == "past_keys")
    q = past.type.elem
    assert past.type.shape == (spec.layers * spec.kv_heads, spec.max_seq - 1, spec.head_dim)
    assert (q.storage, q.axis, q.storage_min, set(q.zero_points)) == ("i8", 0, -127, {0})
    # scale = max |keys| per (layer, head) over prefill and decode runs / 127
    amax = np.zeros((spec.layers, spec.kv_heads))
    for name, data in (("main", main_data), ("decode", decode_data)):
        for b in data:
            keys = list(run(exported, b, function=name).values())[1]
            amax = np.maximum(amax, np.abs(keys).max(axis=(1, 3, 4)))
    np.testing.assert_allclose(q.scales, (amax / 127).reshape(-1), rtol=1e-6)
    for fn in module.functions.values():  # outputs keep their names and become int8
        keys = next(v for v in fn.outputs if v.name == "keys")
        assert keys.type.elem.scales == q.scales and keys.type.shape[0] == 4
    # decode's calibration batches now hold the int8 cache; the caller's are untouched
    assert ctx.function_data["decode"][0]["past_keys"].dtype == np.int8
    assert decode_data[0]["past_keys"].dtype == np.float32
    # an int8 cache reads back close to the float one
    b = decode_data[-1]
    want = run(exported, b, function="decode")
    got = run(module, ctx.function_data["decode"][-1], function="decode")
    lg, lw = next(iter(got.values())), next(iter(want.values()))
    assert np.abs(lg - lw).max() < 0.02 * np.abs(lw).max()


def test_kv_int8_leaves_other_models_alone_and_refuses_bad_margins(lm):
    import frontends
    from passes import PassContext, PassManager
    from qir.cli.opt import copy_module
    from tests.zoo import ZOO

    entry = ZOO["mlp"]
    module = frontends.from_torch(entry.build(), entry.example_inputs(0))
    assert not PassManager("kv-int8", ctx=PassContext(progress=False)).run(module) \
        .function("main").args[0].type.is_quantized
    with pytest.raises(QirError, match="margin must be at least 1"):
        PassManager("kv-int8{margin=0.5}", ctx=context(lm)).run(copy_module(lm[1]))


def test_generation_with_an_int8_cache_follows_the_float_cache(lm):
    from backends.tvm import build
    from frontends.causal_lm import function_module
    from passes import PassManager
    from qir.cli.generate import Generator
    from qir.cli.opt import copy_module

    _, exported, spec, _, _ = lm
    builds = {}
    for kv in (False, True):
        module = copy_module(exported)
        if kv:
            PassManager("kv-int8", ctx=context(lm)).run(module)
        builds[kv] = Generator(build(function_module(module, "main"), "llvm").run,
                               build(function_module(module, "decode"), "llvm").run,
                               dataclasses.replace(spec, kv_cache="i8" if kv else "f32"))
    text = np.random.default_rng(5).integers(0, 128, 20)
    f32, i8 = builds[False].logits(text), builds[True].logits(text)
    assert f32.shape == i8.shape == (20, 128)
    np.testing.assert_array_equal(f32[:8], i8[:8])  # the prefill reads no cache
    assert np.abs(i8 - f32).max() < 0.05 * np.abs(f32).max()
    assert (i8.argmax(-1) == f32.argmax(-1)).mean() >= 0.9
