"""Deployment of the codec's transforms outside PyTorch (ONNX for TensorRT/ONNX Runtime); see docs/deployment.md.

The entropy side (z/w/y coding, h_s/i_s in float64 on the CPU) stays in CompressAI/``RoiCodec`` whatever runs the
transforms, so streams stay decodable by every decoder.  Importing this package needs only torch; exporting needs
``onnx`` (torch's TorchScript-based exporter), checking needs ``onnxruntime``.
"""
from .onnx_export import AnalysisGraph, SynthesisGraph, export_onnx

__all__ = ["AnalysisGraph", "SynthesisGraph", "export_onnx"]
