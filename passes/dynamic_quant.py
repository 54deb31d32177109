"""dynamic-quant: linear layers with int8 weights and activations quantized at run time.

Every float `qir.linear` with a constant weight becomes `qir.dynamic_qlinear`: the weight
is quantized now (int8 symmetric per output channel in [-127, 127], the rule of
`quantize`), the activation when the op runs, from its own max |x| — over the whole
tensor, or per token (each row over the last axis). No calibration data is needed, and
an activation outlier only coarsens its own tensor (or its own token), which is why
dynamic quantization holds up on transformers where static per-tensor int8 does not
(PyTorch's `quantize_dynamic`, ONNX Runtime's `MatMulInteger` + `DynamicQuantizeLinear`).
A fused activation (fuse-activations) is kept as a `qir.clamp` after the op. Exact
semantics: docs/semantics.md, "Dynamic quantization".
"""

from __future__ import annotations

from typing import Annotated, Literal

from qir.builder import Builder
from qir.ir import Module
from qir.types import TensorType

from passes.capture import finish
from passes.manager import PassContext
from passes.registry import register_pass
from passes.utils import constant_array, param_name


@register_pass("dynamic-quant")
def dynamic_quant(
    module: Module, ctx: PassContext, *,
    granularity: Annotated[Literal["per-tensor", "per-token"],
                           "activation scale per tensor or per token (row)"] = "per-tensor",
    weights: Annotated[Literal["per-channel", "per-tensor"], "weight granularity"] =
        "per-channel",
) -> bool:
    """Replace float linears by qir.dynamic_qlinear: int8 weights now, int8 activations
    quantized at run time from their own range."""
    from passes.quant_math import quantize_array
    from passes.quantize import _weight_type

    count = 0
    for fn in module.functions.values():
        for op in fn.walk("qir.linear"):
            x = op.operands[0]
            w = constant_array(op.operands[1])
            if x.type.elem != "f32" or w is None or w.dtype.kind != "f":
                continue
            bias = op.operands[2] if len(op.operands) > 2 else None
            if bias is not None and bias.type.elem != "f32":
                continue
            wtype = _weight_type(w, weights == "per-channel")
            data = quantize_array(w, wtype)
            old = op.operands[1]
            pname = fn.module.add_param(f"{param_name(old) or old.name}.q", data)
            b = Builder(fn, before=op, loc=op.loc)
            wq = b.value("qir.param", [], {"name": pname},
                         result_types=[TensorType(data.shape, wtype)], names=[pname])
            y = b.value("qir.dynamic_qlinear", [x, wq] + ([bias] if bias is not None else []),
                        {"granularity": granularity}, names=[f"{op.result.name}_dyn"])
            lo, hi = op.attr("clamp_min"), op.attr("clamp_max")
            if lo is not None or hi is not None:
                y = b.value("qir.clamp", [y], {"min": lo, "max": hi})
            name = op.result.name
            fn.replace_all_uses(op.result, y)
            fn.erase(op)
            fn.rename(y, name)
            count += 1
    if count:
        ctx.notes.append(f"dynamic-quant: {count} linears, int8 weights ({weights}), "
                         f"activations quantized at run time ({granularity})")
        finish(module)
    return bool(count)
