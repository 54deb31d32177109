"""Passes over qir modules: the pass manager, pattern rewriting, and the built-in passes.

Each built-in pass lives in its own module and registers itself by name; see
docs/passes.md. Users register their own with `@register_pass("name")`.
"""

from passes.manager import PassContext, PassFailed, PassManager
from passes.registry import (PIPELINES, PassInfo, PipelineError, all_passes, get_pass,
                             parse_pipeline, register_pass)
from passes.rewrite import Pattern, Rewriter, apply_patterns, pattern

__all__ = ["PIPELINES", "PassContext", "PassFailed", "PassInfo", "PassManager", "Pattern",
           "PipelineError", "Rewriter", "all_passes", "apply_patterns", "get_pass",
           "parse_pipeline", "pattern", "register_pass", "load_pass_file"]


def load_pass_file(path: str) -> None:
    """Import a user's Python file so its @register_pass passes become available."""
    import importlib.util
    import sys
    from pathlib import Path

    from qir.diagnostics import QirError

    p = Path(path)
    if not p.is_file():
        raise QirError(f"--load-passes {path}: no such file")
    name = f"qir_user_passes_{abs(hash(str(p.resolve())))}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except QirError:
        del sys.modules[name]
        raise
    except Exception as e:  # the user's file is broken: say where
        del sys.modules[name]
        import traceback

        tb = traceback.extract_tb(e.__traceback__)
        frame = next((f for f in reversed(tb) if f.filename == str(p)), tb[-1])
        raise QirError(f"{frame.filename}:{frame.lineno}: error while loading passes: "
                       f"{type(e).__name__}: {e}") from None
