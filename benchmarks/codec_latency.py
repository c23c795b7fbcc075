"""Encode/decode latency of our codec vs plain CompressAI ScaleHyperprior with the same N/M (prints; not a test).

    python benchmarks/codec_latency.py [--model PATH|random] [--image FRAME] [--size 375x1242] [--repeats 10]
                                       [--warmup 2] [--threads 1]

Both codecs run in this process on the CPU with the same torch thread count, on the same frame, alternating
run by run so background load hits both alike.  "ours" is the whole ``RoiCodec.encode`` / ``decode`` call
(padding, analysis/synthesis, entropy coding on the CPU in float64, container); the baseline is
``ScaleHyperprior.compress`` / ``decompress`` (untrained, ``update(force=True)``; float32) plus the same
uint8 <-> tensor conversion, padding and cropping.  Reports the median wall time and the median process CPU time
(all threads) per call, and the ratio ours / baseline (target: <= 1.3).

On the CPU our encoder keeps its analysis convolutions channels-last (oneDNN is faster so); stock CompressAI does
not.  The like-for-like row "ScaleHyperprior, g_a channels-last" gets the same treatment, so the printout shows
both what a user gains over stock CompressAI and what the architecture itself costs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from roi_codec_ros.codec import ModelConfig, RoiCodec, RoiHyperprior

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.3


def default_image() -> Path:
    shared = REPO.parent / "shared" / "data" / "eval" / "nuscenes_front_seq" / "000000.jpg"
    if shared.is_file():
        return shared
    from ultralytics.utils import ASSETS

    return Path(ASSETS) / "bus.jpg"


def make_frame(path: Path, h: int, w: int) -> np.ndarray:
    """Centre crop to the target aspect ratio, then resize: realistic content at the benchmark size."""
    src = Image.open(path).convert("RGB")
    sw, sh = src.size
    cw, ch = (round(sh * w / h), sh) if sw / sh > w / h else (sw, round(sw * h / w))
    x0, y0 = (sw - cw) // 2, (sh - ch) // 2
    return np.array(src.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.BILINEAR))


class Baseline:
    """CompressAI's ScaleHyperprior behind the same uint8-in/uint8-out interface as RoiCodec."""

    def __init__(self, N: int, M: int, channels_last: bool = False):
        from compressai.models import ScaleHyperprior

        torch.manual_seed(0)
        self.model = ScaleHyperprior(N, M).eval()
        self.model.update(force=True)
        if channels_last:
            self.model.g_a.to(memory_format=torch.channels_last)
        self.multiple = RoiHyperprior.PAD_MULTIPLE

    @torch.inference_mode()
    def encode(self, image: np.ndarray) -> dict:
        h, w = image.shape[:2]
        ph, pw = -(-h // self.multiple) * self.multiple, -(-w // self.multiple) * self.multiple
        x = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float() / 255.0
        x = F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
        out = self.model.compress(x)
        out["size"] = (h, w)
        return out

    @torch.inference_mode()
    def decode(self, encoded: dict) -> np.ndarray:
        h, w = encoded["size"]
        x_hat = self.model.decompress(encoded["strings"], encoded["shape"])["x_hat"]
        return (x_hat[0, :, :h, :w].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()

    @staticmethod
    def num_bytes(encoded: dict) -> int:
        return sum(len(s[0]) for s in encoded["strings"])


def timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None,
                   help="model file; default: the shipped model; 'random' = small untrained test model; "
                        "'random-full' = untrained model of the default architecture (ModelConfig())")
    p.add_argument("--image", default=None, help="source image (default: a nuScenes frame if present, else bus.jpg)")
    p.add_argument("--size", default="375x1242", help="frame HxW (default: KITTI 375x1242)")
    p.add_argument("--rate", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for both codecs (default: 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.lower().split("x"))
    image_path = Path(args.image) if args.image else default_image()
    frame = make_frame(image_path, h, w)
    mask = np.zeros((h, w), np.float32)
    mask[h // 3 :, w // 4 : 3 * w // 4] = 1.0  # an ROI, so the encoder's mask path is exercised

    try:
        if args.model == "random-full":
            ours = RoiCodec.random(seed=0, config=ModelConfig())
        else:
            ours = RoiCodec.load(args.model)
    except FileNotFoundError as exc:
        print(f"codec_latency: {exc}\n(use --model random for the untrained test model)", file=sys.stderr)
        return 1
    cfg = ours.config
    baseline, baseline_cl = Baseline(cfg.N, cfg.M), Baseline(cfg.N, cfg.M, channels_last=True)

    times = {key: [] for key in ("ours_enc", "ours_dec", "base_enc", "base_dec", "basecl_enc", "basecl_dec")}
    cpu = {key: [] for key in times}
    for i in range(args.warmup + args.repeats):
        enc, t_enc, c_enc = timed(ours.encode, frame, mask, None, args.rate, 4.0)
        _, t_dec, c_dec = timed(ours.decode, enc.data)
        benc, tb_enc, cb_enc = timed(baseline.encode, frame)
        _, tb_dec, cb_dec = timed(baseline.decode, benc)
        bclenc, tc_enc, cc_enc = timed(baseline_cl.encode, frame)
        _, tc_dec, cc_dec = timed(baseline_cl.decode, bclenc)
        if i >= args.warmup:
            for key, t, c in (("ours_enc", t_enc, c_enc), ("ours_dec", t_dec, c_dec),
                              ("base_enc", tb_enc, cb_enc), ("base_dec", tb_dec, cb_dec),
                              ("basecl_enc", tc_enc, cc_enc), ("basecl_dec", tc_dec, cc_dec)):
                times[key].append(t)
                cpu[key].append(c)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}

    print(f"frame {w}x{h} from {image_path.name}, CPU, torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats} runs after {args.warmup} warm-up, rate {args.rate}")
    print(f"ours: {ours.info.get('path', '?')} (N={cfg.N}, M={cfg.M}, model {ours.model_id[:12]}); "
          f"baseline: compressai ScaleHyperprior(N={cfg.N}, M={cfg.M}), untrained")
    print(f"{'':<26}{'encode ms':>10}{'(CPU ms)':>10}{'decode ms':>11}{'(CPU ms)':>10}{'bytes':>9}{'bpp':>8}")
    rows = (("ours (RoiCodec)", "ours", enc.num_bytes), ("ScaleHyperprior", "base", Baseline.num_bytes(benc)),
            ("ScaleHyperprior, g_a CL", "basecl", Baseline.num_bytes(bclenc)))
    for name, key, num_bytes in rows:
        print(f"{name:<26}{med[key + '_enc']:>10.1f}{med_cpu[key + '_enc']:>10.1f}{med[key + '_dec']:>11.1f}"
              f"{med_cpu[key + '_dec']:>10.1f}{num_bytes:>9}{8 * num_bytes / (h * w):>8.3f}")
    ratio_enc, ratio_dec = med["ours_enc"] / med["base_enc"], med["ours_dec"] / med["base_dec"]
    print(f"{'ratio ours / baseline':<26}{ratio_enc:>10.2f}{'':>10}{ratio_dec:>11.2f}")
    print(f"{'ratio ours / g_a CL':<26}{med['ours_enc'] / med['basecl_enc']:>10.2f}{'':>10}"
          f"{med['ours_dec'] / med['basecl_dec']:>11.2f}   (like for like: what the architecture costs)")
    print(f"target <= {TARGET_RATIO}: encode {'met' if ratio_enc <= TARGET_RATIO else 'NOT met'}, "
          f"decode {'met' if ratio_dec <= TARGET_RATIO else 'NOT met'}")
    print("ours, last encode by part (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in enc.timings_ms.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
