"""Where ONNX Runtime's execution of an exported model differs from qir's: every quantized
tensor the QDQ export names like qir's integer module (`%conv2d_q`: the QuantizeLinear
output in ONNX, the requantize result in qir) is read back from ONNX Runtime and compared,
stored integer by stored integer, with qir's numpy run (`qir report OUTDIR --onnx`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qir.diagnostics import QirError
from qir.ir import Module


@dataclass
class TensorDiff:
    """One quantized tensor over every sample: how many stored values differ and by how
    many steps at most."""

    name: str
    op: str
    loc: str
    size: int
    differing: int
    max_steps: int

    @property
    def percent(self) -> float:
        return 100.0 * self.differing / self.size if self.size else 0.0


def compare_with_onnxruntime(onnx_path: str, module: Module,
                             samples: Sequence[dict[str, np.ndarray]]) -> list[TensorDiff]:
    """Every quantized value of `module` (qir's integer module) that the ONNX model at
    `onnx_path` also produces, in program order."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    from backends.numpy import run

    model = onnx.load(onnx_path)
    produced = {out for node in model.graph.node if node.op_type == "QuantizeLinear"
                for out in node.output}
    outputs = {o.name for o in model.graph.output}
    values = [v for op in module.main.ops for v in op.results
              if v.type.is_quantized and v.name in produced]
    if not values:
        raise QirError(f"{onnx_path}: no quantized tensor of the model is named as in qir's "
                       "module: was it exported by `qir compile --target onnx`?")
    for v in values:
        if v.name not in outputs:
            elem = helper.np_dtype_to_tensor_dtype(np.dtype(v.type.dtype))
            model.graph.output.append(helper.make_tensor_value_info(v.name, elem,
                                                                    list(v.type.shape)))
    try:
        sess = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        raise QirError(f"{onnx_path}: ONNX Runtime cannot load it: "
                       f"{str(e).splitlines()[0]}") from None
    names = [v.name for v in values]
    inputs = [i.name for i in sess.get_inputs()]
    diffs = {v: [0, 0] for v in names}
    for sample in samples:
        got = dict(zip(names, sess.run(names, {n: sample[n] for n in inputs})))
        want: dict[str, np.ndarray] = {}

        def keep(op, results, want=want) -> None:
            for value, array in zip(op.results, results):
                if value.name in diffs:
                    want[value.name] = array

        run(module, sample, hook=keep)
        for name in names:
            delta = np.abs(got[name].astype(np.int64) - want[name].astype(np.int64))
            diffs[name][0] += int(np.count_nonzero(delta))
            diffs[name][1] = max(diffs[name][1], int(delta.max(initial=0)))
    rows = []
    for v in values:
        op = v.owner
        rows.append(TensorDiff(v.name, op.name if op is not None else "", str(op.loc)
                               if op is not None and not op.loc.is_unknown() else "",
                               v.type.numel * len(samples), *diffs[v.name]))
    return rows


def format_diffs(rows: list[TensorDiff]) -> str:
    """The table `qir report --onnx` prints: tensors in program order, the first that
    differs marked."""
    first = next((r.name for r in rows if r.differing), None)
    lines = [f"ONNX Runtime vs qir int8, per quantized tensor ({len(rows)} tensors; "
             + (f"first difference at %{first})" if first else "all equal)"),
             f"  {'tensor':<36} {'qir op':<18} {'differ':>8} {'max steps':>9}  source"]
    for r in rows:
        mark = "*" if r.name == first else " "
        lines.append(f"{mark} {'%' + r.name:<36} {r.op:<18} {r.percent:7.2f}% "
                     f"{r.max_steps:>9}  {r.loc}")
    return "\n".join(lines) + "\n"
