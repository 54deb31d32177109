"""The ONNX backend: export a quantized qir module as a QDQ ONNX model (QuantizeLinear /
DequantizeLinear around float ops, carrying qir's scales and zero points exactly) for
ONNX Runtime, TensorRT and OpenVINO, and run it in ONNX Runtime. Needs the optional
`onnx` and `onnxruntime` packages (`pip install -e .[onnx]`). See docs/deploy.md."""

from backends.onnx.qdq import IR_VERSION, OPSET, OnnxExportError, export, qdq_snapshot_stage
from backends.onnx.runtime import OnnxModel

__all__ = [
           "IR_VERSION",
           "OPSET",
           "OnnxExportError",
           "OnnxModel",
           "export",
           "qdq_snapshot_stage",
]
