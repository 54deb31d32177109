"""Fixtures for the debugging commands' tests: zoo models quantized once per session,
with their stage dumps, float module, sample inputs and export archive on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import frontends
import qir
from passes import PassContext, PassManager
from tests.zoo import ZOO, calibration_batches


@dataclass
class Quantized:
    dir: Path
    imported: Path       # the float module as imported
    model: Path          # after the pipeline
    stages: Path         # --dump-dir
    data: Path           # sample inputs, qir run's convention (leading sample axis)
    module: qir.Module
    samples: list[dict[str, np.ndarray]]


def samples_of(module, name: str, n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    return [{a.name: t.numpy() for a, t in zip(module.main.args, b)}
            for b in calibration_batches(name, n, seed)]


def save_samples(samples: list[dict[str, np.ndarray]], path: Path) -> None:
    np.savez(path, **{k: np.stack([s[k] for s in samples]) for k in samples[0]})


@pytest.fixture(scope="session")
def quantized_zoo(tmp_path_factory):
    """quantized_zoo(name, pipeline="int8", samples=8) -> Quantized (cached)."""
    cache: dict = {}

    def make(name: str, pipeline: str = "int8", samples: int = 8) -> Quantized:
        key = (name, pipeline, samples)
        if key not in cache:
            d = tmp_path_factory.mktemp(name)
            entry = ZOO[name]
            module = frontends.from_torch(entry.build(), entry.example_inputs(0))
            qir.save(module, d / "import.qir")
            batch = samples_of(module, name, samples)
            save_samples(batch, d / "data.npz")
            ctx = PassContext(calibration_data=batch, progress=False)
            PassManager(pipeline, ctx=ctx, dump_dir=d / "stages").run(module)
            qir.save(module, d / "model.qir")
            cache[key] = Quantized(d, d / "import.qir", d / "model.qir", d / "stages",
                                   d / "data.npz", module, batch)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def exported_zoo(tmp_path_factory):
    """exported_zoo(name) -> (model.pt2, data.npz) (cached)."""
    cache: dict = {}

    def make(name: str, samples: int = 8) -> tuple[Path, Path]:
        if (name, samples) not in cache:
            from tests.debug.export_zoo import export

            d = tmp_path_factory.mktemp(f"{name}-pt2")
            export(name, str(d / "model.pt2"), str(d / "data.npz"), samples)
            cache[(name, samples)] = (d / "model.pt2", d / "data.npz")
        return cache[(name, samples)]

    return make
