"""Write a zoo model as a torch.export archive plus sample inputs, for command-line
walkthroughs (docs/debugging.md) and the tests of the debugging commands:

    python -m tests.debug.export_zoo resnet_style -o model.pt2 --data data.npz --samples 16
    python -m tests.debug.export_zoo resnet_style --data held_out.npz --seed 1000

The data file follows `qir run`'s convention: arrays keyed by input name, with one extra
leading axis over whole inputs (seeds 0, 1, 2, ...).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def export(name: str, model_path: str | None, data_path: str | None = None,
           samples: int = 16, seed: int = 0) -> None:
    import torch

    from tests.zoo import ZOO, calibration_batches

    entry = ZOO[name]
    if model_path:
        model = entry.build()
        torch.export.save(torch.export.export(model, entry.example_inputs(0)), model_path)
    if data_path:
        batches = calibration_batches(name, samples, seed)
        arrays = {n: np.stack([b[i].numpy() for b in batches])
                  for i, n in enumerate(entry.input_names)}
        np.savez(data_path, **arrays)


def main(argv: list[str] | None = None) -> int:
    from tests.zoo import ZOO

    p = argparse.ArgumentParser(prog="python -m tests.debug.export_zoo",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("name", choices=sorted(ZOO))
    p.add_argument("-o", "--output", default=None, help="the .pt2 archive to write")
    p.add_argument("--data", default=None, help="also write sample inputs to this .npz")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    export(args.name, args.output, args.data, args.samples, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
