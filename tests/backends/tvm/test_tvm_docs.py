"""docs/backends.md's worked example: a new op lowered to Relax, built and run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
from tvm_helpers import case, check_cases, rand

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "docs" / "examples" / "my_lowering.py"


def load_example():
    name = "qir_docs_my_lowering"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_worked_example_lowers_builds_and_matches_numpy():
    load_example()
    x = rand(3, 7, scale=4.0)
    check_cases([case("mylib.softsign", x), case("mylib.softsign", x.astype(np.float16))],
                rtol=1e-3)


def test_docs_quote_the_example():
    doc = (ROOT / "docs" / "backends.md").read_text()
    body = EXAMPLE.read_text().split('"""', 2)[2].strip()
    assert body in doc, "docs/backends.md must quote docs/examples/my_lowering.py verbatim"
