"""Running an exported model in ONNX Runtime (the optional `onnxruntime` package)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from qir.diagnostics import QirError


class OnnxModel:
    """An ONNX file run by ONNX Runtime on the CPU. `run(inputs)` takes a dict keyed by
    input name and returns the outputs keyed by `output_keys` (default: the ONNX output
    names), in order, as backends.numpy.run keys them when given the module's keys."""

    def __init__(self, path: str, output_keys: list[str] | None = None, *,
                 threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise QirError("running an ONNX model needs onnxruntime: pip install -e .[onnx]"
                           ) from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001
            raise QirError(f"{path}: ONNX Runtime cannot load it: "
                           f"{str(e).splitlines()[0]}") from None
        self.inputs = [(i.name, i.shape, i.type) for i in self.session.get_inputs()]
        names = [o.name for o in self.session.get_outputs()]
        self.output_keys = list(output_keys) if output_keys is not None else names
        if len(self.output_keys) != len(names):
            raise QirError(f"{path}: {len(names)} outputs, expected {len(self.output_keys)}")

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [n for n, _, _ in self.inputs]
        missing = [n for n in names if n not in inputs]
        if missing:
            raise QirError(f"missing inputs {missing} (the ONNX model takes "
                           f"{', '.join(names)})")
        outs = self.session.run(None, {n: np.asarray(inputs[n]) for n in names})
        return dict(zip(self.output_keys, outs))
