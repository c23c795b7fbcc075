"""Optional OpenVINO backend for the encoder's transforms on the CPU (``use_openvino(RoiCodec.load(...))``).

``benchmarks/transform_backends.py`` measured OpenVINO's bf16 analysis graph faster than torch's bf16 autocast on
this CPU (see docs/deployment.md); its synthesis was slower than torch's, so the decoder stays on torch.  The
encoder's output is any valid ``y``/``z``/``w``: the stream stays decodable by every decoder, as with torch's bf16
analysis.  The analysis graph is exported (``export_onnx``) and compiled once per frame size and feature shapes, on
the first frame of that size (seconds).  Needs the ``openvino`` package (not a dependency of this project).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .onnx_export import export_onnx


class OpenVinoAnalysis:
    """Callable ``(x, mask_alpha, embedding, features, valid) -> (y, z, w)`` running ``analysis.onnx`` in OpenVINO."""

    def __init__(self, codec, precision_hint: str = "bf16", threads: int | None = None):
        import openvino as ov  # optional: ImportError tells the caller

        self.core = ov.Core()
        self.codec = codec
        self.precision_hint = precision_hint
        self.threads = threads
        self.folder = Path(tempfile.mkdtemp(prefix="roi_codec_openvino_"))
        self._requests: dict[tuple, object] = {}

    def _request(self, valid: tuple[int, int], shapes: dict[str, tuple[int, ...]]):
        key = (valid, tuple(sorted(shapes.items())))
        request = self._requests.get(key)
        if request is None:
            h, w = valid
            paths = export_onnx(self.codec, self.folder / f"{h}x{w}_{len(self._requests)}", h, w)
            model = self.core.read_model(str(paths["analysis"]))
            model.reshape({name: list(shape) for name, shape in shapes.items()})
            config = {"INFERENCE_PRECISION_HINT": self.precision_hint, "PERFORMANCE_HINT": "LATENCY",
                      "INFERENCE_NUM_THREADS": int(self.threads or torch.get_num_threads())}
            request = self.core.compile_model(model, "CPU", config).create_infer_request()
            self._requests[key] = request
        return request

    def __call__(self, x: Tensor, mask_alpha: Tensor, embedding: Tensor, features: Sequence[Tensor], valid) -> tuple[Tensor, Tensor, Tensor]:
        inputs = {"x": x, "mask_alpha": mask_alpha, "embedding": embedding, "f8": features[0], "f16": features[1], "f32": features[2]}
        arrays = {k: np.ascontiguousarray(v.detach().float().cpu().numpy()) for k, v in inputs.items()}
        request = self._request(tuple(int(v) for v in valid), {k: tuple(a.shape) for k, a in arrays.items()})
        result = request.infer(arrays)
        return tuple(torch.from_numpy(np.array(result[output])) for output in request.model_outputs)


def use_openvino(codec, threads: int | None = None):
    """Hand ``codec``'s analysis to OpenVINO (CPU, bf16 or fp32 as its ``analysis_precision``); returns ``codec``."""
    if codec.device.type != "cpu" or codec.analysis_dtype == torch.float16:
        raise ValueError("the OpenVINO analysis backend runs on the CPU in bf16 or fp32")
    hint = "bf16" if codec.analysis_dtype == torch.bfloat16 else "f32"
    codec.set_analysis_backend("openvino", OpenVinoAnalysis(codec, hint, threads))  # ImportError without openvino
    return codec
