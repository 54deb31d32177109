"""`make demo`: the main job on a built-in example.

Builds a small CNN, saves it as a torch.export archive, imports it (`qir import`), checks
that its IR prints, parses and verifies, compiles it with `qir compile --int8 --target
llvm`, and prints float-vs-int8 quality, model size before/after, and latency against
torch fp32 eager.
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


def _median_ms(fn, repeat: int = 50, warmup: int = 5) -> float:
    import statistics

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> int:
    import numpy as np
    import torch

    import qir
    from backends.numpy import run
    from qir.cli import main as cli

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = build_model()
    example = torch.randn(1, 3, 32, 32)
    work = Path(tempfile.mkdtemp(prefix="qir-demo-"))
    archive = work / "demo.pt2"
    torch.export.save(torch.export.export(model, (example,)), archive)
    print(f"== 1. exported a small CNN with torch.export to {archive}")

    print("== 2. qir import demo.pt2 -o demo.qir   (then parse back + verify)")
    if cli(["import", str(archive), "-o", str(work / "demo.qir")]) != 0:
        return 1
    text = (work / "demo.qir").read_text()
    module = qir.load(work / "demo.qir")
    qir.verify(module)
    assert qir.print_module(module) == text, "print(parse(text)) must equal text"
    print("\n".join(text.splitlines()[:6]) + f"\n  ... ({len(text.splitlines())} lines)")
    name = module.main.args[0].name

    print("== 3. qir compile demo.pt2 --int8 --target llvm --calib calib.npz -o out/")
    calib = torch.randn(32, 1, 3, 32, 32).numpy()
    np.savez(work / "calib.npz", **{name: calib})
    out = work / "out"
    start = time.perf_counter()
    rc = cli(["compile", str(archive), "--int8", "--target", "llvm", "--calib",
              str(work / "calib.npz"), "-o", str(out), "--no-progress"])
    if rc != 0:
        return rc
    print(f"   compiled in {time.perf_counter() - start:.1f} s: "
          + ", ".join(sorted(p.name for p in out.iterdir())))
    qmodule = qir.load(out / "model.qir")
    from collections import Counter

    kinds = Counter(op.name for op in qmodule.main.ops if op.name != "qir.param")
    print("   ops: " + ", ".join(f"{n} x{c}" for n, c in sorted(kinds.items())))

    from backends.tvm import load as load_library

    compiled = load_library(str(out / "model.so"))

    print("== 4. int8 (llvm) against torch fp32 eager, 16 held-out inputs")
    worst, agree, exact = (float("inf"), 1.0), 0, True
    for seed in range(16):
        torch.manual_seed(100 + seed)
        x = torch.randn(1, 3, 32, 32)
        ref = model(x).detach().numpy()
        got = next(iter(compiled.run({name: x.numpy()}).values()))
        interp = next(iter(run(qmodule, {name: x.numpy()}).values()))
        exact &= bool(np.array_equal(got, interp))
        s, c = _metrics(ref, got)
        worst = (min(worst[0], s), min(worst[1], c))
        agree += int(ref.argmax() == got.argmax())
    print(f"   worst output SQNR {worst[0]:.1f} dB, cosine {worst[1]:.5f}, top-1 agreement "
          f"{agree}/16; llvm == numpy interpreter bit for bit: {exact}")

    fsize = sum(a.nbytes for a in module.params.values())
    qsize = sum(a.nbytes for a in qmodule.params.values())
    print(f"== 5. weights: float {fsize / 1024:.1f} KiB -> int8 {qsize / 1024:.1f} KiB "
          f"({fsize / qsize:.1f}x smaller); model.so {(out / 'model.so').stat().st_size / 1024:.0f} KiB")

    x = torch.randn(1, 3, 32, 32)
    feed = {name: x.numpy()}
    with torch.no_grad():
        t_torch = _median_ms(lambda: model(x))
    t_qir = _median_ms(lambda: compiled.run(feed))
    print(f"== 6. latency (median, 2 threads): torch fp32 eager {t_torch:.3f} ms, "
          f"qir int8 llvm {t_qir:.3f} ms  ({t_qir / t_torch:.2f}x torch)")
    print(f"== files in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
