"""Shared pytest configuration for the qir test suite."""

import os as _os

# numpy's OpenBLAS threads fight torch's OpenMP threads on small machines: with both
# active, small numpy matmuls run ~60x slower. One BLAS thread per test worker.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


# ---- FileCheck-style tests (tests/filecheck/**/*.qir) -------------------------------------
# The collector lives in tests/filecheck_plugin.py (see its docstring and
# tests/filecheck/README.md). It is registered as a plugin (not imported into this
# module) so its hooks never clash with hooks defined below.
import sys as _sys
from pathlib import Path as _Path

_TESTS_DIR = str(_Path(__file__).resolve().parent)
if _TESTS_DIR not in _sys.path:  # e.g. under --import-mode=importlib
    _sys.path.insert(0, _TESTS_DIR)

pytest_plugins = ["filecheck_plugin"]
# ---- end FileCheck ---------------------------------------------------------------------------
