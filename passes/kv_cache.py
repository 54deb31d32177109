"""kv-int8: a causal LM's KV cache (frontends/causal_lm.py) crosses calls as int8, one
symmetric scale per layer and kv head: a quarter of the float cache's bytes, kept
between decode steps and copied into every call.

In every function, the outputs named `keys` and `values` ([L, 1, Hkv, T, D] float)
become `reshape` to [L * Hkv, T, D] and `quantize` per channel on axis 0 (storage
-127..127, zero point 0); the arguments `past_keys` and `past_values` become int8
[L * Hkv, S - 1, D] of the same types, `dequantize`d and reshaped back where they enter.
Scale = max |x| / 127 of that layer's head over every function's calibration data
(prefill runs; decode runs too when given), shared by the output that writes the cache
and the argument that reads it. Calibration batches of the functions whose arguments
change are converted (their float caches quantized), so later passes calibrate on what
the function will see.

Run it first, on the float module: the scheme's passes then see float tensors between
the dequantize and the quantize, whatever they do with them.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from qir.builder import Builder
from qir.diagnostics import QirError
from qir.ir import Function, Module, Value
from qir.types import QuantType, TensorType

from passes.capture import calibration_batches, collect
from passes.manager import PassContext
from passes.quant_math import quantize_array
from passes.registry import register_pass

PAIRS = (("keys", "past_keys"), ("values", "past_values"))  # output, argument


def _named(values: list[Value], name: str) -> Value | None:
    return next((v for v in values if v.name == name), None)


def _check(v: Value, fn: Function, what: str) -> tuple[int, ...]:
    shape = v.type.shape
    if not v.type.is_float or len(shape) != 5 or shape[1] != 1:
        raise QirError(f"kv-int8: @{fn.name} {what} '{v.name}' is {v.type}; a KV cache "
                       "is float [layers, 1, kv heads, tokens, head dim] "
                       "(frontends/causal_lm.py)")
    return shape


def cache_type(scales: np.ndarray) -> QuantType:
    """The int8 cache's element type for per-(layer x head) scales."""
    return QuantType("i8", "f32", tuple(float(s) for s in scales), (0,) * scales.size,
                     -127, 127, axis=0)


def _ranges(module: Module, ctx: PassContext) -> dict[str, np.ndarray]:
    """max |x| per (layer, head) of each cache output over every function's data."""
    calibration_batches(ctx, "kv-int8")
    amax: dict[str, np.ndarray] = {}
    for fn in module.functions.values():
        batches = ctx.batches(fn.name)
        outs = [v for v in (_named(fn.outputs, o) for o, _ in PAIRS) if v is not None]
        if not batches or not outs:
            continue
        for v in outs:
            _check(v, fn, "output")
        got = collect(module, batches, outs,
                      lambda _v, a: np.abs(a).max(axis=(1, 3, 4)), function=fn.name)
        for v in outs:
            seen = np.max(got[id(v)], axis=0)
            amax[v.name] = seen if v.name not in amax else np.maximum(amax[v.name], seen)
    return amax


@register_pass("kv-int8")
def kv_int8(module: Module, ctx: PassContext, *,
            margin: Annotated[float, "scale = margin * max |x| / 127: room for values "
                              "beyond the calibrated range (they saturate)"] = 1.0) -> bool:
    """Store a causal LM's KV cache (outputs keys/values, arguments past_keys/
    past_values) as int8 with one scale per layer and kv head."""
    if margin < 1.0:
        raise QirError(f"kv-int8: margin must be at least 1, got {margin:g}")
    if not any(_named(fn.outputs, o) is not None for fn in module.functions.values()
               for o, _ in PAIRS):
        return False
    amax = _ranges(module, ctx)
    types = {}
    for out, _ in PAIRS:
        if out not in amax:
            raise QirError(f"kv-int8: no function with calibration data returns '{out}'")
        a = amax[out].reshape(-1).astype(np.float64) * margin
        types[out] = cache_type(np.where(a > 0, a / 127.0, 1.0).astype(np.float32))
    for fn in module.functions.values():
        for out, arg_name in PAIRS:
            v = _named(fn.outputs, out)
            if v is not None:
                _quantize_output(fn, v, types[out])
            arg = _named(fn.args, arg_name)
            if arg is not None:
                _dequantize_arg(fn, arg, types[out])
                _convert_batches(ctx, fn.name, arg_name, types[out])
    ctx.notes.append("kv-int8: keys and values cross calls as int8, scales per layer and "
                     f"head (largest: keys {float(amax['keys'].max()):.4g}, values "
                     f"{float(amax['values'].max()):.4g})")
    return True


def _convert_batches(ctx: PassContext, function: str, arg: str, q: QuantType) -> None:
    """Quantize the float cache `arg` of @function's calibration batches (new dicts:
    the caller's stay as they were)."""
    batches = ctx.batches(function)
    if not batches:
        return
    converted = []
    for b in batches:
        if arg not in b:
            raise QirError(f"kv-int8: a calibration batch of @{function} has no '{arg}'")
        x = np.asarray(b[arg], np.float32)
        converted.append({**b, arg: quantize_array(x.reshape(-1, *x.shape[3:]), q)})
    if function == "main":
        ctx.calibration_data = converted
    else:
        ctx.function_data[function] = converted


def _quantize_output(fn: Function, v: Value, q: QuantType) -> None:
    layers, _, heads, tokens, dim = _check(v, fn, "output")
    name = v.name
    fn.rename(v, f"{name}_f32")
    anchor = v.owner if v.owner is not None else fn.ops[-1]
    b = Builder(fn, after=anchor, loc=anchor.loc)
    r = b.value("qir.reshape", [v], {"shape": [layers * heads, tokens, dim]},
                names=[f"{name}_flat"])
    b = Builder(fn, after=r.owner, loc=anchor.loc)
    qv = b.value("qir.quantize", [r], {"prov": "kv-int8: max |x| per layer and head / 127"},
                 result_types=[r.type.with_elem(q)], names=[f"{name}_i8"])
    fn.replace_output(v, qv)
    fn.rename(qv, name)


def _dequantize_arg(fn: Function, arg: Value, q: QuantType) -> None:
    shape = _check(arg, fn, "argument")
    layers, _, heads, tokens, dim = shape
    uses = list(arg.uses)
    arg.type = TensorType((layers * heads, tokens, dim), q)
    b = Builder(fn, before=fn.ops[0])
    dq = b.value("qir.dequantize", [arg], names=[f"{arg.name}_dq"])
    r = b.value("qir.reshape", [dq], {"shape": list(shape)}, names=[f"{arg.name}_f32"])
    for use in uses:
        use.op.set_operand(use.index, r)
