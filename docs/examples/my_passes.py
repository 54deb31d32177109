"""A custom pass, as docs/passes.md walks through it (tests/passes/test_manager.py runs it).

    qir opt model.qir --load-passes docs/examples/my_passes.py -p "canonicalize,cap-relu6{limit=4}"
"""

from typing import Annotated

from passes import Rewriter, apply_patterns, pattern, register_pass
from qir import Module, Op


@register_pass("cap-relu6")
def cap_relu6(module: Module, *,
              limit: Annotated[float, "new upper bound for relu6 clamps"] = 4.0) -> bool:
    """Rewrite every relu6 (clamp 0..6) into clamp 0..limit."""

    @pattern("qir.clamp")
    def relu6(op: Op, rw: Rewriter) -> bool:
        if (op.attr("min"), op.attr("max")) != (0.0, 6.0) or limit == 6.0:
            return False
        rw.set_attr(op, "max", limit)  # every change goes through the rewriter
        return True

    return apply_patterns(module, [relu6])
