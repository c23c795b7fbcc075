"""What the reduced-precision paths change in the output: bf16 analysis (encoder) and the fast decoder (prints).

    python benchmarks/precision_quality.py [--model PATH] [--folder DIR] [--images 8] [--rates 0,0.5,1]

For each image and rate (roi_weight 1, no ROI), on the CPU:

- encoder: fp32 vs bf16 analysis (``analysis_precision``): bpp, PSNR of the exact decode against the source, share
  of round(y) symbols that differ;
- decoder: exact vs fast (``precision``) on the same bytes: PSNR of each against the source, PSNR between the two,
  largest pixel difference and share of pixels (channel values) that differ.

Quality only: speed is measured by benchmarks/codec_latency.py.  Default folder: ../shared/data/eval/kodak24 if
present, else the bundled sample images.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from roi_codec_ros.codec import RoiCodec
from roi_codec_ros.codec.api import cpu_supports_bf16
from roi_codec_ros.codec.conditioning import weighted_roi_mask

REPO = Path(__file__).resolve().parents[1]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def images(folder: str | None, count: int) -> list[Path]:
    if folder is None:
        shared = REPO.parent / "shared" / "data" / "eval" / "kodak24"
        if shared.is_dir():
            folder = str(shared)
        else:
            from ultralytics.utils import ASSETS

            folder = str(ASSETS)
    found = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    return found[:: max(1, len(found) // count)][:count]


def analysis_y(codec: RoiCodec, image: np.ndarray, rate: float) -> torch.Tensor:
    """The encoder's y (before rounding) for roi_weight 1 without features, in the codec's analysis precision."""
    h, w = image.shape[:2]
    ph, pw = -(-h // 64) * 64, -(-w // 64) * 64
    x = codec._to_tensor(image, (ph, pw)) / 255.0
    mask = weighted_roi_mask(torch.ones(1, 1, ph, pw), torch.tensor([1.0]))
    from roi_codec_ros.codec.bitstream import code_to_rate, rate_to_code

    embedding = codec.model.rate_embedding(torch.tensor([code_to_rate(rate_to_code(rate))]))
    with torch.inference_mode(), codec._autocast(codec.analysis_dtype):
        return codec.model.analysis(x, mask, codec._features(None, h, w), embedding, (h, w)).float()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--folder", default=None)
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--rates", default="0,0.5,1")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if not cpu_supports_bf16():
        print("precision_quality: this CPU has no native bf16; nothing to compare", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    fp32 = RoiCodec.load(args.model, analysis_precision="fp32")
    bf16 = RoiCodec.load(args.model, analysis_precision="bf16")
    fast = RoiCodec.load(args.model, precision="fast")
    paths = images(args.folder, args.images)
    print(f"model {fp32.model_id[:12]}, {len(paths)} images from {paths[0].parent}, roi_weight 1, no ROI, CPU")
    print(f"{'rate':>5}{'bpp fp32':>10}{'bpp bf16':>10}{'Δbpp %':>8}{'PSNR fp32':>11}{'bf16 Δ dB':>10}{'y flips %':>10}"
          f"{'fast Δ dB':>10}{'fast vs exact dB':>17}{'max diff':>9}{'px differ %':>12}")
    for rate in (float(r) for r in args.rates.split(",")):
        rows = []
        for path in paths:
            image = np.array(Image.open(path).convert("RGB"))
            a, b = fp32.encode(image, rate=rate), bf16.encode(image, rate=rate)
            exact_a, exact_b = fp32.decode(a.data), fp32.decode(b.data)
            fast_b = fast.decode(b.data)
            flips = float((torch.round(analysis_y(fp32, image, rate)) != torch.round(analysis_y(bf16, image, rate))).float().mean())
            diff = np.abs(exact_b.astype(np.int16) - fast_b.astype(np.int16))
            rows.append({
                "bpp32": a.bpp, "bpp16": b.bpp, "psnr32": psnr(image, exact_a), "psnr16": psnr(image, exact_b),
                "flips": flips, "psnr_fast": psnr(image, fast_b), "fast_vs_exact": psnr(exact_b, fast_b),
                "max": int(diff.max()), "differ": float((diff > 0).mean()),
            })
        mean = {k: statistics.mean(r[k] for r in rows) for k in rows[0]}
        print(f"{rate:>5.2f}{mean['bpp32']:>10.4f}{mean['bpp16']:>10.4f}{100 * (mean['bpp16'] / mean['bpp32'] - 1):>8.2f}"
              f"{mean['psnr32']:>11.2f}{mean['psnr16'] - mean['psnr32']:>10.3f}{100 * mean['flips']:>10.3f}"
              f"{mean['psnr_fast'] - mean['psnr16']:>10.3f}{mean['fast_vs_exact']:>17.2f}{max(r['max'] for r in rows):>9}"
              f"{100 * mean['differ']:>12.2f}")
    print("bf16 Δ: exact decode of the bf16-analysis stream minus that of the fp32 stream; fast Δ: fast minus exact "
          "decode of the bf16 stream (both against the source)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
