#!/usr/bin/env python3
"""GPU check of the codec (issue 13): run it when a CUDA machine is lent, record the JSON's figures in the README.

    python scripts/gpu_check.py [--device cuda] [--frames 20] [--sizes 1080x1920,375x1242] [--model PATH|random]
                                [--out gpu_check.json]

For each frame size and precision variant on ``--device``:

- encode and decode frames per second (median per-call wall time, device synchronised, after one warm-up call);
- the decoded pixels of the device vs the CPU's exact decoder for the same bytes (max |diff|, share of pixels that
  differ, PSNR between them);
- bitstreams across devices: device-encoded -> CPU-decoded and CPU-encoded -> device-decoded, both must decode
  (the entropy side runs on the CPU in float64 on both ends), with their PSNR against the source.

Variants: on CUDA ``fp32`` (analysis fp32, exact decoder), ``fp16`` (analysis fp16, fast decoder) and ``fp16 CL``
(the same, channels-last synthesis); on the CPU ``fp32`` and, with native bf16, ``bf16`` (bf16 analysis, fast
decoder).  ``--device cpu --frames 2`` runs everything on the CPU (the test suite does, with no GPU).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
# the codec and the benchmark helpers are imported in main(), after the CUDA check (a refusal stays quick)


def psnr(a: np.ndarray, b: np.ndarray) -> float | None:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return None if mse == 0 else 10 * np.log10(255.0**2 / mse)  # None = identical (JSON has no inf)


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {"max_abs": int(diff.max()), "share_differing": float((diff > 0).mean()), "psnr_db": psnr(a, b)}


def _imports() -> None:
    global BitstreamError, RoiCodec, cpu_supports_bf16, default_image, make_frame
    from codec_latency import default_image, make_frame

    from roi_codec_ros.codec import BitstreamError, RoiCodec
    from roi_codec_ros.codec.api import cpu_supports_bf16


def variants(device: str) -> dict[str, dict]:
    if device.startswith("cuda"):
        return {
            "fp32": dict(analysis_precision="fp32", precision="exact", channels_last_synthesis=False),
            "fp16": dict(analysis_precision="fp16", precision="fast", channels_last_synthesis=False),
            "fp16 CL": dict(analysis_precision="fp16", precision="fast", channels_last_synthesis=True),
        }
    out = {"fp32": dict(analysis_precision="fp32", precision="exact")}
    if cpu_supports_bf16():
        out["bf16"] = dict(analysis_precision="bf16", precision="fast")
    return out


def load(model: str | None, device: str, **options) -> RoiCodec:
    if model == "random":
        return RoiCodec.random(seed=0, device=device, **options)
    return RoiCodec.load(model, device=device, **options)


def check_size(model, device, cpu, image, frames) -> dict:
    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.float32)
    mask[h // 3 :, w // 4 : 3 * w // 4] = 1.0
    out = {}
    cpu_data = cpu.encode(image, roi_mask=mask, rate=0.5, roi_weight=8.0).data
    cpu_pixels = cpu.decode(cpu_data)
    for name, options in variants(device).items():
        codec = load(model, device, **options)
        enc_ms, dec_ms = [], []
        data = pixels = None
        for i in range(frames + 1):  # the first call warms up (cuDNN autotuning, allocations)
            start = time.perf_counter()
            data = codec.encode(image, roi_mask=mask, rate=0.5, roi_weight=8.0).data
            mid = time.perf_counter()
            pixels = codec.decode(data)
            end = time.perf_counter()
            if i:
                enc_ms.append((mid - start) * 1e3)
                dec_ms.append((end - mid) * 1e3)
        entry = {
            "options": options,
            "encode_ms": statistics.median(enc_ms),
            "decode_ms": statistics.median(dec_ms),
            "encode_fps": 1e3 / statistics.median(enc_ms),
            "decode_fps": 1e3 / statistics.median(dec_ms),
            "bytes": len(data),
            "bpp": 8 * len(data) / (h * w),
            "psnr_vs_source_db": psnr(image, pixels),
        }
        # the same bytes decoded by the CPU's exact decoder: what the device's synthesis changes
        try:
            on_cpu = cpu.decode(data)
            entry["device_encoded_cpu_decoded"] = {"ok": True, "psnr_vs_source_db": psnr(image, on_cpu)}
            entry["pixels_vs_cpu_decode"] = compare(pixels, on_cpu)
        except BitstreamError as exc:
            entry["device_encoded_cpu_decoded"] = {"ok": False, "error": str(exc)}
        try:
            from_cpu = codec.decode(cpu_data)
            entry["cpu_encoded_device_decoded"] = {
                "ok": True,
                "psnr_vs_source_db": psnr(image, from_cpu),
                "pixels_vs_cpu_decode": compare(from_cpu, cpu_pixels),
            }
        except BitstreamError as exc:
            entry["cpu_encoded_device_decoded"] = {"ok": False, "error": str(exc)}
        out[name] = entry
        del codec
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return out


def environment(device: str) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "cpu_threads": torch.get_num_threads(),
           "cpu_bf16": cpu_supports_bf16(), "device": device}
    if device.startswith("cuda"):
        env.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), gpu=torch.cuda.get_device_name(device))
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--frames", type=int, default=20, help="timed calls per variant (after one warm-up)")
    p.add_argument("--sizes", default="1080x1920,375x1242", help="frame sizes HxW, comma-separated")
    p.add_argument("--model", default=None, help="model file (default: the shipped model; 'random' = untrained test model)")
    p.add_argument("--image", default=None, help="source image (default: a nuScenes frame if present, else bus.jpg)")
    p.add_argument("--out", default="gpu_check.json")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here (use --device cpu for a CPU-only run)", file=sys.stderr)
        return 2
    if args.frames < 1:
        p.error("--frames must be >= 1")
    _imports()
    source = Path(args.image) if args.image else default_image()
    cpu = load(args.model, "cpu", analysis_precision="fp32")
    report = {"environment": environment(args.device), "model_id": cpu.model_id, "source": source.name,
              "frames": args.frames, "sizes": {}}
    ok = True
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.lower().split("x"))
        result = check_size(args.model, args.device, cpu, make_frame(source, h, w), args.frames)
        report["sizes"][f"{w}x{h}"] = result
        for name, entry in result.items():
            ok &= entry["device_encoded_cpu_decoded"]["ok"] and entry["cpu_encoded_device_decoded"]["ok"]
            pv = entry.get("pixels_vs_cpu_decode", {})
            print(f"{w}x{h} {name:<8} encode {entry['encode_fps']:7.1f} fps  decode {entry['decode_fps']:7.1f} fps  "
                  f"{entry['bpp']:.3f} bpp  vs CPU decode: max {pv.get('max_abs', '-')}, "
                  f"{100 * pv.get('share_differing', 0):.2f} % px differ; cross-device "
                  f"{'ok' if entry['device_encoded_cpu_decoded']['ok'] and entry['cpu_encoded_device_decoded']['ok'] else 'FAILED'}",
                  flush=True)
    report["cross_device_ok"] = bool(ok)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
