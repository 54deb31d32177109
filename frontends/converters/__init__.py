"""The built-in converters, one module per op family. Importing a module registers its
converters; `load_all()` imports them all (lazily, on first lookup)."""

from __future__ import annotations

import importlib

_MODULES = ("arith", "activations", "nn", "reduce", "shape", "scatter", "misc", "modules",
            "qat")
_loaded = False


def load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in _MODULES:
        importlib.import_module(f"frontends.converters.{name}")
