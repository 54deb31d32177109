"""torchvision's ResNet-18 and MobileNetV2 for the benchmarks (random weights, 224x224
inputs), through tests/real_models.py's loader (torchvision's models under the CPU torch:
`make setup` installs them)."""

from __future__ import annotations

import numpy as np

from tests.real_models import torchvision_models

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
