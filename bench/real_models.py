"""Real architectures for benchmarks and checks: torchvision's models, built with random
weights (nothing is downloaded), importable with the CPU build of torch.

PyPI's torchvision wheel is built against CUDA torch: beside the CPU torch this project
pins, `import torchvision` fails loading its C operators (`torchvision::nms does not
exist`), but `torchvision.models` is pure Python. `torchvision_models()` imports that
package without running torchvision's __init__ when the normal import fails. Install the
wheel without its dependencies (it would otherwise pull a CUDA torch):

    .venv/bin/pip install --no-deps torchvision==0.28.0
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import numpy as np

INSTALL = ".venv/bin/pip install --no-deps torchvision==0.28.0"
MODELS = ("resnet18", "mobilenet_v2")
IMAGE = (3, 224, 224)


def torchvision_models():
    """The `torchvision.models` module (see the module docstring)."""
    try:
        import torchvision.models as models

        return models
    except ImportError as e:
        if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None:
            raise ImportError(f"torchvision is not installed: {INSTALL}") from e
    except RuntimeError:  # its C extension: drop the half-imported package
        pass
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    spec = importlib.util.find_spec("torchvision")
    sys.modules["torchvision"] = importlib.util.module_from_spec(spec)  # __init__ not run
    return importlib.import_module("torchvision.models")


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
