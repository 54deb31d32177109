"""qir module in QDQ form -> ONNX ModelProto.

The int8 pipelines are in QDQ form after `propagate-scales` (just before
`lower-to-integer`: `qdq_snapshot_stage`): every quantized tensor is a `qir.quantize`
whose result only `qir.dequantize` reads, weights and biases are quantized parameters
read through `qir.dequantize`, and every other op computes in float. That is ONNX's QDQ
form one op for one node: quantize -> QuantizeLinear, dequantize -> DequantizeLinear
(scale and zero point exactly qir's, per-channel on the type's axis), a quantized
parameter -> an integer initializer, a float op -> its ONNX op. ONNX Runtime, TensorRT
and OpenVINO recognise DequantizeLinear -> op -> QuantizeLinear and run the op in
integers. A float module (no quantization) exports as plain ONNX.

Opset 21 (int16 QuantizeLinear/DequantizeLinear, Gelu, LayerNormalization) at IR version
10: what ONNX Runtime 1.17 and later load (onnx 1.23 writes IR version 14 by default,
which ONNX Runtime 1.31 rejects). Built with onnx.helper; no hand-written protobuf.
"""

from __future__ import annotations

import numpy as np

from qir.diagnostics import QirError
from qir.ir import Function, Module, Op, Value, describe_op

OPSET = 21
IR_VERSION = 10
# Int8 pipelines are exported as they stand just before this pass: QDQ form.
QDQ_BEFORE = "lower-to-integer"


class OnnxExportError(QirError):
    """A module (or an op of it) that has no ONNX form here."""


def qdq_snapshot_stage() -> str:
    """The pass before which an int8 pipeline's module is exported (see module doc)."""
    return QDQ_BEFORE


def export(module: Module, *, function: str = "main", producer: str = "qir"):
    """`function` of `module` (QDQ or float) as an onnx.ModelProto, checked by
    onnx.checker with shape inference. Raises OnnxExportError naming every op without
    an ONNX form, or the first construct one cannot express."""
    import onnx
    from onnx import helper

    fn = module.function(function)
    missing = sorted({describe_op(op) for op in fn.ops if op.name not in _EXPORTERS})
    if missing:
        shown = "\n  ".join(missing[:20])
        raise OnnxExportError(f"no ONNX export for {len(missing)} op(s) in @{fn.name}:\n  "
                              f"{shown}\n(docs/deploy.md lists the ops exported)")
    g = _Graph(module, fn)
    for op in fn.ops:
        try:
            _EXPORTERS[op.name](g, op)
        except OnnxExportError:
            raise
        except QirError as e:
            raise OnnxExportError(f"{describe_op(op)}: {e}") from None
    inputs = [helper.make_tensor_value_info(a.name, _elem(a), list(a.type.shape))
              for a in fn.args]
    outputs, seen = [], set()
    for v in fn.outputs:
        name = g.name(v)
        if name in seen or name in {a.name for a in fn.args}:  # ONNX: distinct outputs
            alias = g.fresh(f"{v.name}_out")
            g.node("Identity", [name], [alias])
            name = alias
        seen.add(name)
        outputs.append(helper.make_tensor_value_info(name, _elem(v), list(v.type.shape)))
    graph = helper.make_graph(g.nodes, fn.name, inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION, producer_name=producer)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        raise OnnxExportError(f"the exported ONNX model fails onnx.checker: "
                              f"{str(e).splitlines()[0]}") from e
    return model


# --- the graph being built ---------------------------------------------------------------


class _Graph:
    def __init__(self, module: Module, fn: Function):
        self.module = module
        self.fn = fn
        self.nodes: list = []
        self.initializers: list = []
        self.names: dict[Value, str] = {}
        self.used: set[str] = {a.name for a in fn.args}
        for a in fn.args:
            self.names[a] = a.name

    def name(self, v: Value) -> str:
        if v not in self.names:
            self.names[v] = self.fresh(v.name)
        return self.names[v]

    def fresh(self, stem: str) -> str:
        name, i = stem, 0
        while name in self.used:
            i += 1
            name = f"{stem}_{i}"
        self.used.add(name)
        return name

    def node(self, op_type: str, inputs: list[str], outputs: list[str], **attrs) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, outputs,
                                           name=self.fresh(f"{op_type}:{outputs[0]}"),
                                           **attrs))

    def const(self, array: np.ndarray, stem: str) -> str:
        from onnx import numpy_helper

        name = self.fresh(stem)
        array = np.asarray(array)  # (np.ascontiguousarray would make a scalar 1-d)
        self.initializers.append(numpy_helper.from_array(
            array if array.flags.c_contiguous else array.copy(), name))
        return name

    def ints(self, values, stem: str) -> str:
        return self.const(np.asarray(values, np.int64), stem)


def _elem(v: Value) -> int:
    from onnx import helper

    return helper.np_dtype_to_tensor_dtype(_storage_dtype(v))


_STORAGE = {"i8": np.int8, "u8": np.uint8, "i16": np.int16, "u16": np.uint16,
            "i32": np.int32}


def _storage_dtype(v: Value) -> np.dtype:
    """The numpy dtype `v` is stored as in ONNX (a quantized tensor: its storage)."""
    t = v.type
    if t.is_quantized:
        q = t.quant
        if q.is_fp8 or q.storage not in _STORAGE:
            raise OnnxExportError(f"%{v.name}: {q.storage} storage has no ONNX QDQ form "
                                  "here (QuantizeLinear takes int8, uint8, int16, uint16, "
                                  "int32)")
        return np.dtype(_STORAGE[q.storage])
    if t.elem in ("bf16", "f16", "f8e4m3", "f8e5m2"):
        raise OnnxExportError(f"%{v.name}: {t.elem} tensors are not exported (float32 "
                              "modules only)")
    return t.dtype


# --- op exporters --------------------------------------------------------------------------

_EXPORTERS = {}


def exporter(*names: str):
    def register(fn):
        for n in names:
            _EXPORTERS[n] = fn
        return fn
    return register


def _ins(g: _Graph, op: Op) -> list[str]:
    return [g.name(v) for v in op.operands]


def _out(g: _Graph, op: Op, i: int = 0) -> str:
    return g.name(op.results[i])


def _activation(g: _Graph, op: Op, computed: str) -> None:
    """The op's fused clamp (clamp_min/clamp_max from fuse-activations) after `computed`,
    into the op's result."""
    lo, hi = op.attr("clamp_min"), op.attr("clamp_max")
    if lo is None and hi is None:
        g.node("Identity", [computed], [_out(g, op)])
    elif lo == 0.0 and hi is None:
        g.node("Relu", [computed], [_out(g, op)])
    else:
        _clip(g, computed, lo, hi, _out(g, op))


def _clip(g: _Graph, x: str, lo: float | None, hi: float | None, out: str) -> None:
    """Clip(x, lo, hi) into `out`; a missing bound is an empty input."""
    bounds = [g.const(np.float32(b), "clip") if b is not None else "" for b in (lo, hi)]
    g.node("Clip", [x, *bounds], [out])


def _clamped(op: Op) -> bool:
    return op.attr("clamp_min") is not None or op.attr("clamp_max") is not None


def _target(g: _Graph, op: Op) -> str:
    """Where the op's own computation goes: its result, or a temporary the fused clamp
    reads."""
    return g.fresh(f"{op.results[0].name}_pre") if _clamped(op) else _out(g, op)


def _qparams(g: _Graph, v: Value) -> tuple[list[str], dict]:
    """(scale, zero point) initializers and the axis attribute of `v`'s quantized type."""
    q = v.type.quant
    dtype = _storage_dtype(v)
    if q.block_size is not None:
        raise OnnxExportError(f"%{v.name}: per-group (block) quantization is not exported")
    if q.is_per_tensor:
        scale = np.float32(q.scales[0])
        zp = np.asarray(q.zero_points[0], dtype)
        attrs = {}
    else:
        scale = np.asarray(q.scales, np.float32)
        zp = np.asarray(q.zero_points, dtype)
        attrs = {"axis": int(q.axis)}
    return [g.const(np.asarray(scale, np.float32), f"{v.name}.scale"),
            g.const(zp, f"{v.name}.zero_point")], attrs


@exporter("qir.param")
def _param(g: _Graph, op: Op) -> None:
    v = op.result
    name = op.attr("name")
    if name not in g.module.params:
        raise OnnxExportError(f"{describe_op(op)}: parameter {name!r} has no array")
    array = np.asarray(g.module.params[name])
    g.names[v] = g.const(array.astype(_storage_dtype(v), copy=False), v.name)


@exporter("qir.constant")
def _constant(g: _Graph, op: Op) -> None:
    v = op.result
    g.names[v] = g.const(np.asarray(op.attr("value")).astype(_storage_dtype(v), copy=False)
                         .reshape(v.type.shape), v.name)


@exporter("qir.quantize")
def _quantize(g: _Graph, op: Op) -> None:
    params, attrs = _qparams(g, op.result)
    g.node("QuantizeLinear", [g.name(op.operands[0]), *params], [_out(g, op)], **attrs)


@exporter("qir.dequantize")
def _dequantize(g: _Graph, op: Op) -> None:
    params, attrs = _qparams(g, op.operands[0])
    g.node("DequantizeLinear", [g.name(op.operands[0]), *params], [_out(g, op)], **attrs)


@exporter("qir.conv2d", "qir.conv1d")
def _conv2d(g: _Graph, op: Op) -> None:
    out = _target(g, op)
    g.node("Conv", _ins(g, op), [out], strides=list(op.attr("stride")),
           pads=list(op.attr("padding")), dilations=list(op.attr("dilation")), group=int(op.attr("groups")))
    if _clamped(op):
        _activation(g, op, out)


@exporter("qir.linear")
def _linear(g: _Graph, op: Op) -> None:
    """x @ W^T + b as MatMul against the transposed weight: a dequantized parameter is
    exported transposed, with its DequantizeLinear on axis 1, so that the
    DequantizeLinear -> MatMul pattern stays for the runtime to fuse. An input of rank
    above 2 is reshaped to rows first and back after: ONNX Runtime 1.32 fails to load
    the 3-D MatMul + Add of a QDQ model (its MatMulAddFusion inserts a QuantizeLinear
    whose zero point type it changed to uint8)."""
    x, w = op.operands[0], op.operands[1]
    wt = _transposed_weight(g, w)
    out = _target(g, op)
    flat = x.type.rank > 2  # as 2-D rows: see below
    src = g.name(x)
    if flat:
        src = g.fresh(f"{op.result.name}_rows")
        rows = g.ints([-1, x.type.shape[-1]], "shape")
        dq = x.owner if x.owner is not None and x.owner.name == "qir.dequantize" else None
        if dq is not None and dq.operands[0].type.quant.is_per_tensor:
            # reshape the stored integers, then dequantize: ONNX Runtime would move the
            # DequantizeLinear past the Reshape itself (QDQ propagation), and with
            # opset 21 it builds that pair wrongly (its QuantizeLinear keeps
            # output_dtype=int8 after its S8-to-U8 pass makes the zero point uint8)
            q = dq.operands[0]
            stored = g.fresh(f"{op.result.name}_rows_q")
            g.node("Reshape", [g.name(q), rows], [stored])
            params, attrs = _qparams(g, q)
            g.node("DequantizeLinear", [stored, *params], [src], **attrs)
        else:
            g.node("Reshape", [g.name(x), rows], [src])
    res = g.fresh(f"{op.result.name}_2d") if flat else out
    if len(op.operands) > 2:
        mm = g.fresh(f"{op.result.name}_mm")
        g.node("MatMul", [src, wt], [mm])
        g.node("Add", [mm, g.name(op.operands[2])], [res])
    else:
        g.node("MatMul", [src, wt], [res])
    if flat:
        g.node("Reshape", [res, g.ints(op.result.type.shape, "shape")], [out])
    if _clamped(op):
        _activation(g, op, out)


def _transposed_weight(g: _Graph, w: Value) -> str:
    owner = w.owner
    if owner is not None and owner.name == "qir.dequantize":
        src = owner.operands[0]
        param = src.owner
        if param is not None and param.name == "qir.param" and src.type.rank == 2:
            array = np.asarray(g.module.params[param.attr("name")]).T
            stored = g.const(array.astype(_storage_dtype(src), copy=False),
                             f"{src.name}.T")
            params, attrs = _qparams(g, src)
            if "axis" in attrs:
                attrs["axis"] = 1 - attrs["axis"]
            out = g.fresh(f"{w.name}.T")
            g.node("DequantizeLinear", [stored, *params], [out], **attrs)
            return out
    out = g.fresh(f"{w.name}.T")
    g.node("Transpose", [g.name(w)], [out], perm=[1, 0])
    return out


@exporter("qir.matmul")
def _matmul(g: _Graph, op: Op) -> None:
    out = _target(g, op)
    g.node("MatMul", _ins(g, op), [out])
    if _clamped(op):
        _activation(g, op, out)


_UNARY = {"qir.relu": "Relu", "qir.sigmoid": "Sigmoid", "qir.tanh": "Tanh", "qir.exp": "Exp",
          "qir.sqrt": "Sqrt", "qir.neg": "Neg", "qir.hardswish": "HardSwish",
          "qir.abs": "Abs", "qir.erf": "Erf", "qir.log": "Log", "qir.sin": "Sin",
          "qir.cos": "Cos", "qir.logical_not": "Not"}
_BINARY = {"qir.add": "Add", "qir.sub": "Sub", "qir.mul": "Mul", "qir.div": "Div",
           "qir.pow": "Pow", "qir.maximum": "Max", "qir.minimum": "Min", "qir.eq": "Equal",
           "qir.lt": "Less", "qir.gt": "Greater", "qir.le": "LessOrEqual",
           "qir.ge": "GreaterOrEqual", "qir.logical_and": "And", "qir.logical_or": "Or"}


@exporter(*_BINARY)
def _binary(g: _Graph, op: Op) -> None:
    fused = op.name == "qir.add" and _clamped(op)  # add carries fuse-activations' clamp
    out = _target(g, op) if fused else _out(g, op)
    g.node(_BINARY[op.name], _ins(g, op), [out])
    if fused:
        _activation(g, op, out)


@exporter("qir.ne")
def _ne(g: _Graph, op: Op) -> None:
    eq = g.fresh(f"{op.result.name}_eq")
    g.node("Equal", _ins(g, op), [eq])
    g.node("Not", [eq], [_out(g, op)])


@exporter("qir.broadcast_to")
def _broadcast_to(g: _Graph, op: Op) -> None:
    g.node("Expand", [g.name(op.operands[0]), g.ints(op.result.type.shape, "shape")],
           [_out(g, op)])


@exporter("qir.cumsum")
def _cumsum(g: _Graph, op: Op) -> None:
    g.node("CumSum", [g.name(op.operands[0]), g.const(np.int64(op.attr("axis")), "axis")],
           [_out(g, op)])


@exporter("qir.requantize")
def _requantize(g: _Graph, op: Op) -> None:
    """Between two quantized types: DequantizeLinear then QuantizeLinear (a float
    rescale, where qir's requantize multiplies in fixed point: within one step)."""
    x, y = op.operands[0], op.result
    if not (x.type.is_quantized and y.type.is_quantized):
        raise OnnxExportError(f"{describe_op(op)}: a requantize of raw integers (lowered "
                              "IR) has no QDQ form: export the module before "
                              f"{QDQ_BEFORE}")
    real = g.fresh(f"{y.name}_real")
    params, attrs = _qparams(g, x)
    g.node("DequantizeLinear", [g.name(x), *params], [real], **attrs)
    q = y.type.quant
    lo, hi = op.attr("clamp_min"), op.attr("clamp_max")
    if (lo is not None and lo > q.qmin) or (hi is not None and hi < q.qmax):
        if not q.is_per_tensor:
            raise OnnxExportError(f"{describe_op(op)}: a clamped per-channel requantize "
                                  "has no QDQ form here")
        clipped = g.fresh(f"{y.name}_clipped")
        _clip(g, real, *[(b - q.zero_point) * q.scale if b is not None else None
                         for b in (lo, hi)], clipped)
        real = clipped
    params, attrs = _qparams(g, y)
    g.node("QuantizeLinear", [real, *params], [_out(g, op)], **attrs)


@exporter(*_UNARY)
def _unary(g: _Graph, op: Op) -> None:
    g.node(_UNARY[op.name], _ins(g, op), [_out(g, op)])


@exporter("qir.hardsigmoid")
def _hardsigmoid(g: _Graph, op: Op) -> None:
    g.node("HardSigmoid", _ins(g, op), [_out(g, op)], alpha=1.0 / 6.0, beta=0.5)


@exporter("qir.rsqrt")
def _rsqrt(g: _Graph, op: Op) -> None:
    root = g.fresh(f"{op.result.name}_sqrt")
    g.node("Sqrt", _ins(g, op), [root])
    g.node("Reciprocal", [root], [_out(g, op)])


@exporter("qir.silu")
def _silu(g: _Graph, op: Op) -> None:
    s = g.fresh(f"{op.result.name}_sigmoid")
    g.node("Sigmoid", _ins(g, op), [s])
    g.node("Mul", [g.name(op.operands[0]), s], [_out(g, op)])


@exporter("qir.gelu")
def _gelu(g: _Graph, op: Op) -> None:
    g.node("Gelu", _ins(g, op), [_out(g, op)], approximate=str(op.attr("approximate")))


@exporter("qir.clamp")
def _clamp(g: _Graph, op: Op) -> None:
    _clip(g, g.name(op.operands[0]), op.attr("min"), op.attr("max"), _out(g, op))


@exporter("qir.softmax")
def _softmax(g: _Graph, op: Op) -> None:
    g.node("Softmax", _ins(g, op), [_out(g, op)], axis=int(op.attr("axis")))


@exporter("qir.layer_norm")
def _layer_norm(g: _Graph, op: Op) -> None:
    x = op.operands[0]
    n = int(op.attr("normalized_ndim"))
    inputs = _ins(g, op)
    norm_shape = x.type.shape[-n:]
    if len(inputs) < 2:
        inputs.append(g.const(np.ones(norm_shape, np.float32), f"{op.result.name}.weight"))
    g.node("LayerNormalization", inputs, [_out(g, op)], axis=-n,
           epsilon=float(op.attr("eps")))


_REDUCE = {"qir.reduce_mean": "ReduceMean", "qir.reduce_sum": "ReduceSum",
           "qir.reduce_max": "ReduceMax"}


@exporter(*_REDUCE)
def _reduce(g: _Graph, op: Op) -> None:
    kind = _REDUCE[op.name]
    axes = list(op.attr("axes")) or list(range(op.operands[0].type.rank))
    g.node(kind, [g.name(op.operands[0]), g.ints(axes, "axes")], [_out(g, op)],
           keepdims=int(bool(op.attr("keepdims"))))


@exporter("qir.reshape")
def _reshape(g: _Graph, op: Op) -> None:
    g.node("Reshape", [g.name(op.operands[0]), g.ints(op.result.type.shape, "shape")],
           [_out(g, op)])


@exporter("qir.permute")
def _permute(g: _Graph, op: Op) -> None:
    g.node("Transpose", _ins(g, op), [_out(g, op)], perm=[int(p) for p in op.attr("perm")])


@exporter("qir.concat")
def _concat(g: _Graph, op: Op) -> None:
    g.node("Concat", _ins(g, op), [_out(g, op)], axis=int(op.attr("axis")))


@exporter("qir.split")
def _split(g: _Graph, op: Op) -> None:
    g.node("Split", [g.name(op.operands[0]), g.ints(op.attr("sizes"), "split")],
           [g.name(r) for r in op.results], axis=int(op.attr("axis")))


@exporter("qir.slice")
def _slice(g: _Graph, op: Op) -> None:
    dim = op.operands[0].type.shape[int(op.attr("axis"))]
    end = min(int(op.attr("end")), dim)
    g.node("Slice", [g.name(op.operands[0]), g.ints([op.attr("start")], "starts"),
                     g.ints([end], "ends"), g.ints([op.attr("axis")], "axes"),
                     g.ints([op.attr("step")], "steps")], [_out(g, op)])


@exporter("qir.gather")
def _gather(g: _Graph, op: Op) -> None:
    g.node("Gather", _ins(g, op), [_out(g, op)], axis=int(op.attr("axis")))


@exporter("qir.embedding")
def _embedding(g: _Graph, op: Op) -> None:
    g.node("Gather", _ins(g, op), [_out(g, op)], axis=0)


@exporter("qir.where")
def _where(g: _Graph, op: Op) -> None:
    g.node("Where", _ins(g, op), [_out(g, op)])


@exporter("qir.cast")
def _cast(g: _Graph, op: Op) -> None:
    g.node("Cast", _ins(g, op), [_out(g, op)], to=_elem(op.result))


@exporter("qir.pad")
def _pad(g: _Graph, op: Op) -> None:
    x = op.operands[0]
    g.node("Pad", [g.name(x), g.ints(op.attr("pads"), "pads"),
                   g.const(np.asarray(op.attr("value"), _storage_dtype(x)), "pad_value")],
           [_out(g, op)], mode="constant")


@exporter("qir.max_pool2d")
def _max_pool(g: _Graph, op: Op) -> None:
    kernel = list(op.attr("kernel"))
    g.node("MaxPool", _ins(g, op), [_out(g, op)], kernel_shape=kernel,
           strides=list(op.attr("stride")) or kernel, pads=list(op.attr("padding")) * 2,
           dilations=list(op.attr("dilation")), ceil_mode=int(bool(op.attr("ceil_mode"))))


@exporter("qir.avg_pool2d")
def _avg_pool(g: _Graph, op: Op) -> None:
    if op.attr("divisor_override") is not None:
        raise OnnxExportError(f"{describe_op(op)}: divisor_override has no ONNX AveragePool "
                              "form")
    kernel = list(op.attr("kernel"))
    g.node("AveragePool", _ins(g, op), [_out(g, op)], kernel_shape=kernel,
           strides=list(op.attr("stride")) or kernel, pads=list(op.attr("padding")) * 2,
           ceil_mode=int(bool(op.attr("ceil_mode"))),
           count_include_pad=int(bool(op.attr("count_include_pad"))))


@exporter("qir.adaptive_avg_pool2d")
def _adaptive_avg_pool(g: _Graph, op: Op) -> None:
    h, w = op.operands[0].type.shape[-2:]
    oh, ow = op.attr("output_size")
    if (oh, ow) == (1, 1):
        g.node("GlobalAveragePool", _ins(g, op), [_out(g, op)])
        return
    if h % oh or w % ow:
        raise OnnxExportError(f"{describe_op(op)}: adaptive pooling from {h}x{w} to "
                              f"{oh}x{ow} has uneven windows, which ONNX AveragePool lacks")
    g.node("AveragePool", _ins(g, op), [_out(g, op)], kernel_shape=[h // oh, w // ow],
           strides=[h // oh, w // ow])
