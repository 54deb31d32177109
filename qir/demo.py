"""`make demo`: the main job on a built-in example.

Builds a small CNN, saves it as a torch.export archive, imports it (`qir import`), prints
the IR, parses it back and verifies it, runs it in the numpy interpreter against torch,
quantizes it with the int8 pipeline on calibration data, and prints float-vs-int8
quality and model size.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


def build_model():
    import torch
    from torch import nn

    class DemoNet(nn.Module):
        """A small CNN: conv-bn-relu blocks, a residual add, pooling, a classifier."""

        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16),
                                      nn.ReLU())
            self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16),
                                       nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = self.stem(x)
            x = torch.relu(x + self.block(x))
            return self.fc(torch.flatten(self.pool(x), 1))

    torch.manual_seed(0)
    model = DemoNet().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


def _metrics(ref, got):
    import numpy as np

    ref, got = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    sqnr = 10 * np.log10((ref ** 2).sum() / max(((ref - got) ** 2).sum(), 1e-30))
    cos = ref @ got / (np.linalg.norm(ref) * np.linalg.norm(got))
    return sqnr, cos


def main() -> int:
    import numpy as np
    import torch

    import qir
    from backends.numpy import run
    from qir.cli import main as cli

    torch.manual_seed(0)
    model = build_model()
    example = torch.randn(1, 3, 32, 32)
    work = Path(tempfile.mkdtemp(prefix="qir-demo-"))
    archive = work / "demo.pt2"
    torch.export.save(torch.export.export(model, (example,)), archive)
    print(f"== 1. exported a small CNN to {archive}")

    print("== 2. qir import demo.pt2 -o demo.qir")
    if cli(["import", str(archive), "-o", str(work / "demo.qir")]) != 0:
        return 1
    text = (work / "demo.qir").read_text()
    print(text)

    print("== 3. parse it back, verify, print again: identical")
    module = qir.load(work / "demo.qir")
    qir.verify(module)
    assert qir.print_module(module) == text
    print("   round trip ok")

    print("== 4. float interpreter vs torch eager")
    x = torch.randn(1, 3, 32, 32)
    want = model(x).detach().numpy()
    got = run(module, {module.main.args[0].name: x.numpy()})
    out = next(iter(got.values()))
    print(f"   max |diff| = {np.abs(out - want).max():.2e} (max |y| = {np.abs(want).max():.2f})")

    print("== 5. qir opt demo.qir -p int8 --calib calib.npz -o demo.int8.qir")
    calib = torch.randn(32, 1, 3, 32, 32).numpy()
    np.savez(work / "calib.npz", **{module.main.args[0].name: calib})
    start = time.perf_counter()
    rc = cli(["opt", str(work / "demo.qir"), "-p", "int8", "--calib", str(work / "calib.npz"),
              "-o", str(work / "demo.int8.qir"), "--no-progress"])
    if rc != 0:
        return rc
    print(f"   quantized in {time.perf_counter() - start:.1f} s")
    qmodule = qir.load(work / "demo.int8.qir")
    print(qir.print_module(qmodule))

    print("== 6. int8 vs float on held-out inputs")
    worst = (float("inf"), 1.0)
    for seed in range(5):
        torch.manual_seed(100 + seed)
        x = torch.randn(1, 3, 32, 32).numpy()
        ref = next(iter(run(module, {module.main.args[0].name: x}).values()))
        q = next(iter(run(qmodule, {qmodule.main.args[0].name: x}).values()))
        s, c = _metrics(ref, q)
        worst = (min(worst[0], s), min(worst[1], c))
    print(f"   worst output SQNR {worst[0]:.1f} dB, cosine {worst[1]:.5f}")
    fsize = sum(a.nbytes for a in module.params.values())
    qsize = sum(a.nbytes for a in qmodule.params.values())
    print(f"   weights: float {fsize / 1024:.1f} KiB -> int8 {qsize / 1024:.1f} KiB "
          f"({fsize / qsize:.1f}x smaller)")
    print(f"== files in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
