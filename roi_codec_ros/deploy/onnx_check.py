"""Run the exported graphs in ONNX Runtime and compare with PyTorch (``onnxruntime`` needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from roi_codec_ros.codec import RoiCodec

from .onnx_export import AnalysisGraph, SynthesisGraph, example_inputs, transforms_copy


def session(path: str | Path, threads: int = 0):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(sess, inputs: dict[str, torch.Tensor]) -> list[np.ndarray]:
    return sess.run(None, {k: v.detach().cpu().float().numpy() for k, v in inputs.items()})


def compare_with_torch(codec: RoiCodec, paths: dict[str, Path], height: int, width: int, feature_sizes=None) -> dict[str, dict]:
    """Max absolute and range-relative differences of every output, on example inputs."""
    model = transforms_copy(codec)
    analysis_inputs, synthesis_inputs = example_inputs(model, height, width, feature_sizes)
    result = {}
    with torch.inference_mode():
        reference = {
            "analysis": AnalysisGraph(model, height, width)(*analysis_inputs.values()),
            "synthesis": (SynthesisGraph(model)(*synthesis_inputs.values()),),
        }
    for name, inputs in (("analysis", analysis_inputs), ("synthesis", synthesis_inputs)):
        outputs = run(session(paths[name]), inputs)
        for i, (got, want) in enumerate(zip(outputs, reference[name])):
            want = want.float().numpy()
            if got.shape != want.shape:
                raise AssertionError(f"{name} output {i}: shape {got.shape} != torch {want.shape}")
            diff = float(np.abs(got - want).max())
            result[f"{name}[{i}]"] = {"max_abs": diff, "max_rel": diff / max(float(np.abs(want).max()), 1e-12)}
    return result
