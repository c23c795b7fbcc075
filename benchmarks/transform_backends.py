"""g_a / g_s on the CPU: torch (old and today's paths) vs ONNX Runtime and OpenVINO on the exported graphs (prints).

    python benchmarks/transform_backends.py [--model PATH] [--size 375x1242] [--threads 2] [--repeats 10]

Issue 13 asks for OpenVINO as an optional CPU backend only if it beats the torch path after the free wins.  This
times, in one process and alternating run by run on the same inputs:

- analysis (g_a + h_a/i_a, what ``analysis.onnx`` computes): torch fp32 (old), torch bf16 autocast (today's
  default on a bf16 CPU), ONNX Runtime fp32, OpenVINO f32 hint, OpenVINO bf16 hint (its default on such a CPU);
- synthesis (g_s): torch fp32 contiguous (old), torch fp32 channels-last (today's exact decoder), torch bf16
  channels-last (``precision="fast"``), ONNX Runtime fp32, OpenVINO f32 and bf16;

and prints medians, ratios to the old torch path, and what each changes: the share of round(y) symbols that differ
from torch fp32 (analysis) and the PSNR of the pixels against the exact decoder (synthesis).  ONNX Runtime and
OpenVINO are optional: a backend whose package is missing is skipped.  Graphs are exported to a temporary folder.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from roi_codec_ros.codec import RoiCodec
from roi_codec_ros.codec.conditioning import weighted_roi_mask
from roi_codec_ros.deploy.onnx_export import AnalysisGraph, SynthesisGraph, export_onnx, transforms_copy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from codec_latency import default_image, make_frame  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def to_pixels(x_hat: np.ndarray, h: int, w: int) -> np.ndarray:
    return (np.clip(x_hat[0, :, :h, :w], 0, 1) * 255.0).round().astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--size", default="375x1242")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.lower().split("x"))
    codec = RoiCodec.load(args.model, analysis_precision="fp32")
    model_old = transforms_copy(codec)  # contiguous everything (the old synthesis layout)
    model_new = transforms_copy(codec)
    for part in (model_new.g_a_convs, model_new.fusion_proj, model_new.g_s_convs):
        part.to(memory_format=torch.channels_last)
    model_old.g_a_convs.to(memory_format=torch.channels_last)  # the old encoder already had this
    model_old.fusion_proj.to(memory_format=torch.channels_last)

    # real inputs: a frame, an ROI, no detector (zero features), rate 0.5
    frame = make_frame(default_image(), h, w)
    mask = np.zeros((h, w), np.float32)
    mask[h // 3 :, w // 4 : 3 * w // 4] = 1.0
    ph, pw = (-(-h // 64) * 64, -(-w // 64) * 64)
    x = codec._to_tensor(frame, (ph, pw)) / 255.0
    m = weighted_roi_mask(codec._to_tensor(mask[..., None], (ph, pw)), torch.tensor([codec.ranges.u_alpha(8.0)]))
    embedding = codec.model.rate_embedding(torch.tensor([0.5]))
    features = codec.model.zero_features(1, h, w, "cpu")
    analysis_inputs = {"x": x, "mask_alpha": m, "embedding": embedding, "f8": features[0], "f16": features[1], "f32": features[2]}
    with torch.inference_mode():
        y_ref = AnalysisGraph(model_old, h, w)(*analysis_inputs.values())[0]
    y_hat = torch.round(y_ref).contiguous()  # g_a is channels-last: the old decoder got a contiguous y_hat
    synthesis_inputs = {"y_hat": y_hat, "embedding": embedding}
    np_analysis = {k: np.ascontiguousarray(v.numpy()) for k, v in analysis_inputs.items()}
    np_synthesis = {k: np.ascontiguousarray(v.numpy()) for k, v in synthesis_inputs.items()}

    analysis: dict[str, callable] = {}
    synthesis: dict[str, callable] = {}
    bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()

    def torch_analysis(model, dtype):
        graph = AnalysisGraph(model, h, w)

        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                return graph(*analysis_inputs.values())[0].float().numpy()

        return run

    def torch_synthesis(model, dtype, channels_last):
        graph = SynthesisGraph(model)
        y_in = y_hat.contiguous(memory_format=torch.channels_last) if channels_last else y_hat

        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                return graph(y_in, embedding).float().numpy()

        return run

    analysis["torch fp32 (old)"] = torch_analysis(model_old, None)
    synthesis["torch fp32 contiguous (old)"] = torch_synthesis(model_old, None, False)
    synthesis["torch fp32 CL (exact)"] = torch_synthesis(model_new, None, True)
    if bf16:
        analysis["torch bf16 (new)"] = torch_analysis(model_new, torch.bfloat16)
        synthesis["torch bf16 CL (fast)"] = torch_synthesis(model_new, torch.bfloat16, True)

    folder = Path(tempfile.mkdtemp(prefix="roi_onnx_"))
    paths = export_onnx(codec, folder, h, w)
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        for name, table, inputs in (("analysis", analysis, np_analysis), ("synthesis", synthesis, np_synthesis)):
            sess = ort.InferenceSession(str(paths[name]), options, providers=["CPUExecutionProvider"])
            table["onnxruntime fp32"] = (lambda s, i: (lambda: s.run(None, i)[0]))(sess, inputs)
    except ImportError:
        print("onnxruntime not installed: skipped")
    try:
        import openvino as ov

        core = ov.Core()
        for hint in ("f32", "bf16"):
            config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY"}
            for name, table, inputs in (("analysis", analysis, np_analysis), ("synthesis", synthesis, np_synthesis)):
                ov_model = core.read_model(str(paths[name]))
                ov_model.reshape({k: list(v.shape) for k, v in inputs.items()})
                compiled = core.compile_model(ov_model, "CPU", config)
                request = compiled.create_infer_request()
                table[f"openvino {hint}"] = (lambda r, i: (lambda: r.infer(i)[r.model_outputs[0]].copy()))(request, inputs)
        print(f"openvino {ov.__version__}, CPU default precision hint: {core.get_property('CPU', 'INFERENCE_PRECISION_HINT')}")
    except ImportError:
        print("openvino not installed: skipped")

    times: dict[str, list[float]] = {}
    outputs: dict[str, np.ndarray] = {}
    for i in range(args.warmup + args.repeats):
        for group, table in (("a", analysis), ("s", synthesis)):
            for name, fn in table.items():
                start = time.perf_counter()
                outputs[group + name] = fn()
                elapsed = (time.perf_counter() - start) * 1e3
                if i >= args.warmup:
                    times.setdefault(group + name, []).append(elapsed)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{w}x{h}, {args.threads} threads, median of {args.repeats}; model {codec.model_id[:12]}; CPU bf16 {bf16}")
    y32 = np.round(outputs["atorch fp32 (old)"])
    base = med["atorch fp32 (old)"]
    print(f"{'analysis (g_a + h_a/i_a)':<30}{'ms':>8}{'vs old':>8}  round(y) symbols differing from torch fp32")
    for name in analysis:
        flips = float((np.round(outputs["a" + name]) != y32).mean())
        print(f"{name:<30}{med['a' + name]:>8.1f}{med['a' + name] / base:>8.2f}  {100 * flips:.3f} %")
    exact = to_pixels(outputs["storch fp32 CL (exact)"], h, w)
    base = med["storch fp32 contiguous (old)"]
    print(f"{'synthesis (g_s)':<30}{'ms':>8}{'vs old':>8}  PSNR vs the exact decoder's pixels")
    for name in synthesis:
        print(f"{name:<30}{med['s' + name]:>8.1f}{med['s' + name] / base:>8.2f}  {psnr(exact, to_pixels(outputs['s' + name], h, w)):.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
