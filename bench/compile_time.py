"""Compile time of a ResNet-18-sized model (11.7 M parameters, 1.8 GMAC at 224x224), or
torchvision's ResNet-50 (25.6 M, 4.1 GMAC): import, int8 pipeline (calibration included)
and the TVM llvm build, each timed.

    .venv/bin/python -m bench.compile_time                  # 224 x 224, 4 calibration batches
    .venv/bin/python -m bench.compile_time --size 112 --calib 2 --run
    .venv/bin/python -m bench.compile_time --model resnet50 --run

The model is torchvision's ResNet-18 layer for layer (BasicBlocks [2, 2, 2, 2], 64..512
channels, batch norm, residual adds, max pool, global average pool, 1000-way linear),
written out here so that nothing is downloaded; weights are random (seeded), batch
norms non-trivial. `--run` also times one inference against torch fp32 eager.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

THREADS = 2


def resnet18():
    import torch
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False),
                                      nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
            layers, cin = [], 64
            for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
                cin = cout
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(512, 1000)

        def forward(self, x):
            x = self.layers(self.stem(x))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    torch.manual_seed(0)
    model = ResNet18()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return model.eval().requires_grad_(False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=224, help="input height and width")
    p.add_argument("--calib", type=int, default=4, help="calibration batches")
    p.add_argument("--run", action="store_true", help="also time one inference")
    p.add_argument("--model", choices=("resnet18", "resnet50"), default="resnet18",
                   help="resnet18 (written out here) or torchvision's resnet50 (random "
                        "weights)")
    args = p.parse_args(argv)
    os.environ.setdefault("TVM_NUM_THREADS", str(THREADS))
    import torch

    import frontends
    from backends.tvm import build
    from passes import PassContext, PassManager

    torch.set_num_threads(THREADS)
    if args.model == "resnet50":
        from bench.real_models import build as torchvision_model

        model = torchvision_model("resnet50").requires_grad_(False)
    else:
        model = resnet18()
    params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, args.size, args.size, generator=gen)
    calib = [{"x": torch.randn(1, 3, args.size, args.size, generator=gen).numpy()}
             for _ in range(args.calib)]
    times = {}
    start = time.perf_counter()
    module = frontends.from_torch(model, (x,))
    times["import"] = time.perf_counter() - start
    name = module.main.args[0].name
    calib = [{name: b["x"]} for b in calib]
    start = time.perf_counter()
    PassManager("int8", ctx=PassContext(calibration_data=calib, progress=False)).run(module)
    times["int8 pipeline (calibration included)"] = time.perf_counter() - start
    start = time.perf_counter()
    compiled = build(module, "llvm")
    times["TVM llvm build"] = time.perf_counter() - start
    print(f"{'ResNet-50' if args.model == 'resnet50' else 'ResNet-18'} "
          f"({params / 1e6:.1f} M parameters), input 1x3x{args.size}x{args.size}, "
          f"{args.calib} calibration batches")
    for k, v in times.items():
        print(f"  {k:<40} {v:7.1f} s")
    print(f"  {'total':<40} {sum(times.values()):7.1f} s")
    if args.run:
        from bench.run import median_ms

        feed = {name: x.numpy()}
        qir_ms = median_ms(lambda: compiled.run(feed), 10, 2)
        with torch.no_grad():
            torch_ms = median_ms(lambda: model(x), 10, 2)
        print(f"  qir int8 llvm {qir_ms:.2f} ms, torch fp32 eager {torch_ms:.2f} ms "
              f"({qir_ms / torch_ms:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
