"""fuse-activations: relu / relu6 / clamp after conv, linear, matmul or add becomes the
producer's fused clamp (`clamp_min`/`clamp_max`), so quantization sees one op whose
output range already excludes what the activation cuts off."""

from __future__ import annotations

from qir.ir import Module, Op

from passes.registry import register_pass
from passes.rewrite import Rewriter, apply_patterns, pattern
from passes.utils import single_user

PRODUCERS = ("qir.conv1d", "qir.conv2d", "qir.linear", "qir.matmul", "qir.add")


def _bounds(op: Op) -> tuple[float | None, float | None]:
    if op.name == "qir.relu":
        return 0.0, None
    return op.attr("min"), op.attr("max")


def _tighten(old, new, pick):
    if old is None:
        return new
    if new is None:
        return old
    return pick(old, new)


def _fuse(act: Op, rw: Rewriter) -> bool:
    src = act.operands[0]
    producer = src.owner
    if producer is None or producer.name not in PRODUCERS or single_user(src) is not act:
        return False
    if not src.type.is_float:
        return False
    lo, hi = _bounds(act)
    lo = _tighten(producer.attr("clamp_min"), lo, max)
    hi = _tighten(producer.attr("clamp_max"), hi, min)
    if lo is not None and hi is not None and lo > hi:
        return False
    rw.set_attr(producer, "clamp_min", lo)
    rw.set_attr(producer, "clamp_max", hi)
    rw.replace_op(act, [src])
    return True


@register_pass("fuse-activations")
def fuse_activations(module: Module) -> bool:
    """Fuse relu/relu6/clamp into the conv/linear/matmul/add that produces their input."""
    return apply_patterns(module, [pattern("qir.relu")(_fuse), pattern("qir.clamp")(_fuse)])
