"""Detector adapter latency per frame size (prints figures; not a test).

    python benchmarks/detector_latency.py [--weights PATH] [--image FRAME] [--device cpu] [--repeats 30] [--threads N]

Each size is made from one driving frame (centre-cropped to the target aspect ratio, then resized), so the
detector sees realistic content. Reports median / p90 / min of the whole adapter call and its parts after
warm-up calls, with torch's thread count; "CPU ms" is the median process CPU time per call (all threads),
which is what a frame costs when the cores are not shared with other work.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from roi_codec_ros.detector import DetectorAdapter, default_weights_path

SIZES = [(375, 1242), (450, 800), (1080, 1920)]  # KITTI, nuScenes/2, full HD
REPO = Path(__file__).resolve().parents[1]


def default_image() -> Path:
    shared = REPO.parent / "shared" / "data" / "eval" / "nuscenes_front_seq" / "000000.jpg"
    if shared.is_file():
        return shared
    from ultralytics.utils import ASSETS

    return ASSETS / "bus.jpg"


def make_frame(src: Image.Image, h: int, w: int) -> np.ndarray:
    sw, sh = src.size
    if sw / sh > w / h:  # too wide: crop width
        cw, ch = round(sh * w / h), sh
    else:
        cw, ch = sw, round(sw * h / w)
    x0, y0 = (sw - cw) // 2, (sh - ch) // 2
    return np.asarray(src.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.BILINEAR))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=None)
    p.add_argument("--image", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    det = DetectorAdapter.from_weights(args.weights or default_weights_path(), device=args.device, imgsz=args.imgsz)
    image = Path(args.image) if args.image else default_image()
    src = Image.open(image).convert("RGB")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").is_file() else "?"
    print(f"detector {det}\nimage {image}, torch threads {torch.get_num_threads()} of {os.cpu_count()} cores, "
          f"load average {load}, repeats {args.repeats}")
    print(f"{'frame WxH':>11} {'input WxH':>10} {'median ms':>10} {'p90 ms':>8} {'min ms':>8} {'CPU ms':>7}  parts (median ms)")
    for h, w in SIZES:
        frame = make_frame(src, h, w)
        for _ in range(args.warmup):
            det(frame)
        runs, cpu = [], []
        for _ in range(args.repeats):
            c0 = time.process_time()
            runs.append(det(frame))
            cpu.append((time.process_time() - c0) * 1e3)
        lat = sorted(r.latency_ms for r in runs)
        parts = {k: statistics.median(r.timings_ms[k] for r in runs) for k in runs[0].timings_ms}
        hi, wi = runs[0].geometry.input_hw
        p90 = lat[min(len(lat) - 1, int(0.9 * len(lat)))]
        print(
            f"{w:>5}x{h:<5} {wi:>4}x{hi:<5} {statistics.median(lat):>10.1f} {p90:>8.1f} {lat[0]:>8.1f} "
            f"{statistics.median(cpu):>7.1f}  "
            + ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
