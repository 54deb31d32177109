"""Generation with causal LMs (frontends/causal_lm.py, qir/cli/generate.py): the float
build generates exactly the tokens of torch's greedy decoding (Llama, Qwen2, GPT-2, on
llvm and in the interpreter), prompts longer than the prefill, `qir compile HF_DIR` and
`qir generate` end to end with GPTQ int4 weights, sampling, and the errors a user meets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qir import QirError
from qir.cli import main

PROMPT = np.array([5, 17, 99, 3, 200, 42, 7], np.int64)


def tiny(kind: str, hidden: int = 64, heads: int = 4):
    from frontends.causal_lm import import_transformers

    transformers = import_transformers()

    torch.manual_seed(0)
    if kind == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=256, n_embd=64, n_layer=2, n_head=4, n_positions=128)).eval()
    cls = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
           "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM)}[kind]
    return cls[1](cls[0](vocab_size=256, hidden_size=hidden, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=heads,
                         num_key_value_heads=heads // 2, max_position_embeddings=128)).eval()


def torch_greedy(model, prompt, n: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(torch.tensor(prompt)[None], max_new_tokens=n, min_new_tokens=n,
                             do_sample=False, pad_token_id=0)
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2", "llama-head64"])
def test_float_build_generates_torch_greedy_tokens(kind):
    """(llama-head64: head dim 64, where RoPE's cat(freqs, freqs) once read half its
    input unwritten in the llvm build: backends/tvm/cpu.py `_reads_declared`.)"""
    from backends.numpy import run
    from backends.tvm import build
    from frontends.causal_lm import export_causal_lm, function_module
    from qir.cli.generate import Generator

    model = tiny("llama", 128, 2) if kind == "llama-head64" else tiny(kind)
    module, spec = export_causal_lm(model, max_seq=48, prefill_len=16)
    assert (spec.layers, spec.head_dim, spec.max_seq) == (2, 64 if "64" in kind else 16, 48)
    assert set(module.functions) == {"main", "decode"}
    prefill, decode = function_module(module, "main"), function_module(module, "decode")
    llvm = Generator(build(prefill, "llvm").run, build(decode, "llvm").run, spec)
    want = torch_greedy(model, PROMPT, 16)
    assert llvm.generate(PROMPT, 16).tokens == want
    if kind == "llama":  # the interpreter too; and a prompt longer than the prefill
        interp = Generator(lambda i: run(prefill, i), lambda i: run(decode, i), spec)
        assert interp.generate(PROMPT, 16).tokens == want
        long = (np.arange(30) * 7 + 1) % 256
        got = llvm.generate(long, 8)
        assert got.tokens == torch_greedy(model, long, 8) and got.prompt_tokens == 30


def test_rope_frequencies_are_computed_whole_before_they_are_read():
    """With head dim 64, the llvm build of RoPE's emb = cat(freqs, freqs) computed freqs
    under the concat's vector loop for the second half alone (TVM's fused kernel
    declares one of the two reads), and the first half read memory never written: NaN
    keys or wrong tokens, depending on what the memory held. backends/tvm/cpu.py
    (`_reads_declared`) now keeps such a value whole; checked on the schedule, since
    reading unwritten memory can pass by luck."""
    from backends.tvm import llvm_target, to_relax
    from backends.tvm.compiler import fuse, schedule_llvm
    from frontends.causal_lm import export_causal_lm, function_module

    module, _ = export_causal_lm(tiny("llama", 128, 2), max_seq=48, prefill_len=16)
    target = llvm_target()
    with target:
        mod = to_relax(function_module(module, "main"))
    mod, _ = schedule_llvm(fuse(mod, target)[0], target, None)
    kernels = [mod[g].script() for g in mod.functions
               if "concatenate" in g.name_hint and "multiply" in g.name_hint]
    assert kernels
    for text in kernels:
        for block in text.split("with T.sblock(")[1:]:
            if block.startswith('"T_multiply"'):
                assert "T.where" not in block.split("with T.sblock(")[0], text


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    model = tiny("llama")
    model.save_pretrained(tmp / "llama")
    rng = np.random.default_rng(0)
    np.savez(tmp / "calib.npz", input_ids=rng.integers(0, 256, (4, 40)))
    np.save(tmp / "prompt.npy", PROMPT)
    return tmp, model


def test_compile_and_generate_w4a16_gptq_end_to_end(llama_dir, capsys):
    tmp, model = llama_dir
    out = tmp / "w4"
    assert main(["compile", str(tmp / "llama"), "--w4a16", "--group-size", "32", "--calib",
                 str(tmp / "calib.npz"), "--max-seq", "40", "--prefill-len", "8", "-o",
                 str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "GPTQ" in err and "decode/model.so" in err
    assert sorted(p.name for p in out.iterdir()) == ["decode", "generation.json", "prefill"]
    info = json.loads((out / "generation.json").read_text())
    assert "gptq=true" in info["pipeline"] and "group-size=32" in info["pipeline"]
    assert info["spec"]["prefill_len"] == 8 and info["spec"]["max_seq"] == 40
    for part in ("prefill", "decode"):  # standard OUTDIRs
        assert {"model.so", "model.qir", "manifest.json"} <= {p.name for p in (out / part)
                                                             .iterdir()}
    assert main(["generate", str(out), "--prompt-ids", str(tmp / "prompt.npy"),
                 "--max-new-tokens", "12", "--json", "--eos", "-1"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert len(got["tokens"]) == 12 and got["decode_tokens_per_s"] > 0
    # int4 weights are computed bit for bit alike in the interpreter: the same tokens
    assert main(["generate", str(out), "--prompt-ids", str(tmp / "prompt.npy"),
                 "--max-new-tokens", "12", "--json", "--eos", "-1", "--backend",
                 "numpy"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == got["tokens"]
    # close to the float model: greedy decoding follows it for the first tokens (this
    # random model's logits are flat, so sequences part after a few)
    assert got["tokens"][:3] == torch_greedy(model, PROMPT, 3)
    # text output: the tokens, then the speed on stderr
    assert main(["generate", str(out), "--prompt-ids", str(tmp / "prompt.npy"),
                 "--max-new-tokens", "3", "--eos", "-1"]) == 0
    cap = capsys.readouterr()
    assert len(cap.out.split()) == 3 and "tokens/s" in cap.err


@pytest.mark.parametrize("flags", [["--int8", "--kv-int8"], ["--int8", "--smoothquant"],
                                   ["--fp8", "--fp8-format", "e5m2", "--kv-int8"]])
def test_schemes_that_calibrate_activations_generate(llama_dir, capsys, flags):
    """W8A8 (with SmoothQuant), fp8 and the int8 KV cache: @decode calibrates on decode
    steps made from --calib; llvm and the interpreter generate the same tokens."""
    from qir.io import load

    tmp, model = llama_dir
    out = tmp / "_".join(f.strip("-") for f in flags)
    assert main(["compile", str(tmp / "llama"), *flags, "--calib", str(tmp / "calib.npz"),
                 "--max-seq", "40", "--prefill-len", "8", "-o", str(out),
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    kv = "--kv-int8" in flags
    assert "of @decode" in err and ("i8 cache" if kv else "f32 cache") in err
    info = json.loads((out / "generation.json").read_text())
    assert info["spec"]["kv_cache"] == ("i8" if kv else "f32")
    assert info["pipeline"].startswith("kv-int8,") == kv
    past = load(out / "decode" / "model.qir").main.args[3]
    assert past.name == "past_keys" and past.type.is_quantized == kv
    tokens = []
    for backend in ([], ["--backend", "numpy"]):
        assert main(["generate", str(out), "--prompt-ids", str(tmp / "prompt.npy"),
                     "--max-new-tokens", "10", "--json", "--eos", "-1", *backend]) == 0
        tokens.append(json.loads(capsys.readouterr().out)["tokens"])
    assert tokens[0] == tokens[1] and len(tokens[0]) == 10
    assert tokens[0][:3] == torch_greedy(model, PROMPT, 3)


def test_sampling_is_seeded(llama_dir, capsys):
    from backends.tvm import build
    from frontends.causal_lm import export_causal_lm, function_module
    from qir.cli.generate import Generator

    _, model = llama_dir
    module, spec = export_causal_lm(model, max_seq=40, prefill_len=8)
    gen = Generator(build(function_module(module, "main"), "llvm").run,
                    build(function_module(module, "decode"), "llvm").run, spec)
    a = gen.generate(PROMPT, 10, sample=True, seed=1, top_k=20).tokens
    assert a == gen.generate(PROMPT, 10, sample=True, seed=1, top_k=20).tokens
    others = [gen.generate(PROMPT, 10, sample=True, seed=s).tokens for s in (2, 3)]
    assert any(o != a for o in others)
    full = gen.generate(np.arange(1, 38), 10)  # 37 prompt tokens: room for 3 in 40
    assert full.stopped == "cache full" and len(full.tokens) == 3
    with pytest.raises(QirError, match="token ids must be in"):
        gen.generate(np.array([1, 999]), 2)
    with pytest.raises(QirError, match="at most 40"):
        gen.generate(np.zeros(40, np.int64), 2)


def test_compile_errors_name_the_problem(llama_dir, tmp_path, capsys):
    tmp, _ = llama_dir
    (tmp_path / "empty").mkdir()
    assert main(["compile", str(tmp_path / "empty"), "-o", str(tmp_path / "o")]) == 1
    assert "no config.json" in capsys.readouterr().err
    assert main(["compile", str(tmp / "llama"), "--int8", "-o", str(tmp_path / "o")]) == 1
    assert "pass --calib C.npz" in capsys.readouterr().err
    assert main(["compile", str(tmp / "llama"), "--w4a16", "--fp8-format", "e5m2", "-o",
                 str(tmp_path / "o")]) == 1
    assert "--fp8-format applies to --fp8" in capsys.readouterr().err
    assert main(["compile", str(tmp / "llama"), "--max-seq", "500", "-o",
                 str(tmp_path / "o")]) == 1
    assert "beyond the model's 128 positions" in capsys.readouterr().err
    np.savez(tmp_path / "bad.npz", tokens=np.zeros((2, 8), np.int64))
    assert main(["compile", str(tmp / "llama"), "--w4a16", "--calib", str(tmp_path / "bad.npz"),
                 "-o", str(tmp_path / "o")]) == 1
    assert "needs an array 'input_ids'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main(["generate", str(tmp_path / "empty"), "--prompt-ids",
                 str(tmp / "prompt.npy")]) == 1
    assert "no generation.json" in capsys.readouterr().err


def test_config_only_directory_builds_random_weights(tmp_path, capsys):
    tiny("qwen2").config.save_pretrained(tmp_path / "cfg")
    out = tmp_path / "o"
    assert main(["compile", str(tmp_path / "cfg"), "--target", "numpy", "--max-seq", "24",
                 "--prefill-len", "4", "-o", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    np.save(tmp_path / "p.npy", np.array([1, 2, 3]))
    assert main(["generate", str(out), "--prompt-ids", str(tmp_path / "p.npy"),
                 "--max-new-tokens", "4", "--json", "--eos", "-1"]) == 0
    assert len(json.loads(capsys.readouterr().out)["tokens"]) == 4
