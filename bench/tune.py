"""What `--tune N` buys: each zoo model's int8 llvm build without tuning, tuned (cold
cache), and built again (warm cache), with build times and latencies from one run.

    .venv/bin/python -m bench.tune                               # 8 trials, bert and resnet
    .venv/bin/python -m bench.tune --models gpt_style --trials 32

The cache is a temporary directory, so the first tuned build always searches. Latency
ratios are against the untuned build and torch fp32 eager, measured in the same process.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

THREADS = 2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="bert_style,resnet_style")
    p.add_argument("--trials", type=int, default=8, help="meta-schedule trials per kernel")
    p.add_argument("--repeat", type=int, default=50)
    args = p.parse_args(argv)
    os.environ.setdefault("TVM_NUM_THREADS", str(THREADS))
    import torch

    import frontends
    from backends.tvm import Tuning, build
    from bench.run import median_ms
    from passes import PassContext, PassManager
    from tests.zoo import ZOO, calibration_batches

    torch.set_num_threads(THREADS)
    for name in args.models.split(","):
        entry = ZOO[name]
        model, inputs = entry.build(), entry.example_inputs(0)
        module = frontends.from_torch(model, inputs)
        names = [a.name for a in module.main.args]
        batches = [dict(zip(names, [t.numpy() for t in b]))
                   for b in calibration_batches(name, 8)]
        PassManager("int8", ctx=PassContext(calibration_data=batches, progress=False)) \
            .run(module)
        feed = dict(zip(names, [t.numpy() for t in inputs]))
        rows = []
        with tempfile.TemporaryDirectory(prefix="qir-tune-bench-") as cache:
            for label, tuning in (("default build", None),
                                  ("tuned, cold cache", Tuning(args.trials, cache)),
                                  ("tuned, warm cache", Tuning(args.trials, cache))):
                start = time.perf_counter()
                compiled = build(module, "llvm", tune=tuning)
                build_s = time.perf_counter() - start
                rows.append((label, build_s, median_ms(lambda: compiled.run(feed),
                                                       args.repeat, 5), tuning))
        with torch.no_grad():
            torch_ms = median_ms(lambda: model(*inputs), args.repeat, 5)
        base = rows[0][2]
        print(f"== {name}: {args.trials} trials per kernel, torch fp32 eager "
              f"{torch_ms:.3f} ms")
        for label, build_s, ms, tuning in rows:
            print(f"  {label:<20} build {build_s:7.1f} s   {ms:7.3f} ms  "
                  f"x{ms / base:.2f} of default  x{ms / torch_ms:.2f} of torch fp32")
            if tuning is not None and label.endswith("cold cache"):
                print(f"  {'':<20} {tuning.summary()} (search: {tuning.search})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
