"""Encode/decode latency of our codec: today's path vs the earlier one, and vs plain CompressAI (prints; not a test).

    python benchmarks/codec_latency.py [--model PATH|random|random-full] [--image FRAME] [--sizes 375x1242,720x1280]
                                       [--threads 2] [--repeats 10] [--warmup 2] [--detector YOLO.pt] [--json OUT]

Everything runs in this one process on the CPU with the same torch thread count, on the same frame, alternating
codec by codec within each repeat so that background load hits all alike; compare the ratios, not the absolute
times (this machine is shared).  Codecs:

- ``old``: the earlier path, selected by flags on the codec object: fp32 analysis, contiguous synthesis weights
  and ``y_hat``, CompressAI's own entropy compress/decompress calls (``_coder.use_cached_tables = False``) with
  the float64 h_s/i_s (``_coder.integer = None``, for a model with an integer side), GDN
  out of place (``ChannelMatmulGDN.in_place_inference = False``), g_a as in training (``folded_analysis = False``);
- ``new``: today's defaults: bf16 analysis where the CPU has native bf16, channels-last synthesis, cached rANS
  tables and the encoder's serial float64 side (``_coder.parallel_side`` for the two-thread one), exact decoder (its pixels are
  checked to equal the old path's, by SHA-1);
- ``fast``: ``new`` with ``precision="fast"`` (bf16 synthesis): its PSNR against the exact decode is printed;
- ``SH``: CompressAI ``ScaleHyperprior(N, M)`` (untrained, ``update(force=True)``) with stock calls, and ``SH opt``:
  the same model with the same optimisations as ``new`` (bf16 autocast + channels-last g_a, channels-last g_s and
  ``y_hat``, cached rANS tables).  "ours / SH opt" is what the architecture itself costs (target <= 1.3).
  ``SH opt f64``: ``SH opt`` with our decoding guarantee too (h_s in float64 on both ends, as our entropy side):
  "ours / SH opt f64" separates the architecture from the price of that guarantee.

Per-stage medians of ours: detector (only with --detector: one pass per frame, its features go to the encoder),
input (uint8 -> padded tensors), g_a, side (h_a, i_a), entropy (encoder: h_s/i_s (float64, or integers in float32), indexes, rANS; decoder:
the same plus decoding), g_s, output (crop, uint8).  Acceptance of issue 13 (2 threads): encode <= 0.6x and decode
<= 0.65x the old path at 1242x375; encode + decode <= 0.6x at 1280x720; ours / SH opt <= 1.3.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from roi_codec_ros.codec import ModelConfig, RoiCodec, RoiHyperprior
from roi_codec_ros.codec.api import cpu_supports_bf16, padded_size
from roi_codec_ros.codec.conditioning import ChannelMatmulGDN
from roi_codec_ros.codec.latent_codec import RansTables

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.3
TARGETS = {"375x1242": {"encode": 0.6, "decode": 0.65}, "720x1280": {"encode+decode": 0.6}}


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
    """CompressAI's ScaleHyperprior behind the same uint8-in/uint8-out interface as RoiCodec.

    ``optimised``: the same CPU optimisations as our codec (bf16 autocast + channels-last g_a where the CPU has
    bf16, channels-last g_s and y_hat, cached rANS tables); otherwise CompressAI's stock ``compress``/``decompress``.
    ``float64_side``: also our decoding guarantee, h_s in float64 on both ends (what makes the scale indexes agree
    across devices and thread counts; stock CompressAI runs it in float32).
    """

    def __init__(self, N: int, M: int, optimised: bool = False, float64_side: bool = False):
        from compressai.models import ScaleHyperprior

        torch.manual_seed(0)
        self.model = ScaleHyperprior(N, M).eval()
        self.model.update(force=True)
        self.optimised = optimised or float64_side
        self.h_s = copy.deepcopy(self.model.h_s).double() if float64_side else self.model.h_s
        self.bf16 = (optimised or float64_side) and cpu_supports_bf16()
        if self.optimised:
            self.model.g_a.to(memory_format=torch.channels_last)
            self.model.g_s.to(memory_format=torch.channels_last)
            self.z_tables = RansTables(self.model.entropy_bottleneck)
            self.y_tables = RansTables(self.model.gaussian_conditional)
        self.multiple = RoiHyperprior.PAD_MULTIPLE

    @torch.inference_mode()
    def encode(self, image: np.ndarray) -> dict:
        h, w = image.shape[:2]
        ph, pw = padded_size(h, w, self.multiple)
        x = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float() / 255.0
        x = F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
        if not self.optimised:
            out = self.model.compress(x)
        else:
            m = self.model
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                y = m.g_a(x)
                z = m.h_a(torch.abs(y))
            y, z = y.float(), z.float()
            eb, gc = m.entropy_bottleneck, m.gaussian_conditional
            medians = eb._get_medians().detach().reshape(1, -1, 1, 1)
            z_index = torch.arange(z.shape[1], dtype=torch.int32).view(1, -1, 1, 1).expand_as(z)
            z_string = self.z_tables.encode(eb.quantize(z, "symbols", medians), z_index)
            z_hat = eb.quantize(z, "dequantize", medians)  # what decompress gives
            indexes = gc.build_indexes(self._scales(z_hat))
            y_string = self.y_tables.encode(gc.quantize(y, "symbols"), indexes)
            out = {"strings": [[y_string], [z_string]], "shape": z.shape[-2:]}
        out["size"] = (h, w)
        return out

    @torch.inference_mode()
    def decode(self, encoded: dict) -> np.ndarray:
        h, w = encoded["size"]
        if not self.optimised:
            x_hat = self.model.decompress(encoded["strings"], encoded["shape"])["x_hat"]
        else:
            m = self.model
            eb, gc = m.entropy_bottleneck, m.gaussian_conditional
            medians = eb._get_medians().detach().reshape(1, -1, 1, 1)
            shape = tuple(encoded["shape"])
            z_index = torch.arange(medians.shape[1], dtype=torch.int32).view(1, -1, 1, 1).expand(1, -1, *shape)
            z_hat = eb.dequantize(self.z_tables.decode(encoded["strings"][1][0], z_index), medians)
            indexes = gc.build_indexes(self._scales(z_hat))
            y_hat = gc.dequantize(self.y_tables.decode(encoded["strings"][0][0], indexes))
            x_hat = m.g_s(y_hat.contiguous(memory_format=torch.channels_last))
        return (x_hat[0, :, :h, :w].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()

    def _scales(self, z_hat: torch.Tensor) -> torch.Tensor:
        return self.h_s(z_hat.to(next(self.h_s.parameters()).dtype))

    @staticmethod
    def num_bytes(encoded: dict) -> int:
        return sum(len(s[0]) for s in encoded["strings"])


CPU_MS: dict[str, float] = {}


def timed(fn, *args, **kwargs):
    """(result, wall ms); the process CPU time of the call (all threads) is left in CPU_MS["last"]."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    CPU_MS["last"] = (time.process_time() - cpu) * 1e3
    return result, (time.perf_counter() - wall) * 1e3


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def load_codecs(model: str | None) -> dict[str, RoiCodec]:
    def make(**options) -> RoiCodec:
        if model == "random-full":
            return RoiCodec.random(seed=0, config=ModelConfig(), **options)
        return RoiCodec.load(model, **options)

    old = make(analysis_precision="fp32", channels_last_synthesis=False)
    old._coder.use_cached_tables = False
    old._coder.integer = None  # the float64 h_s/i_s of the earlier path, also for a model with an integer side
    old.folded_analysis = False
    for module in old.model.modules():
        if isinstance(module, ChannelMatmulGDN):
            module.in_place_inference = False
    codecs = {"old": old, "new": make()}
    if cpu_supports_bf16():
        codecs["fast"] = make(precision="fast")
    return codecs


def bench_size(codecs, baselines, detector, image_path, h, w, args) -> dict:
    frame = make_frame(image_path, h, w)
    mask = np.zeros((h, w), np.float32)
    mask[h // 3 :, w // 4 : 3 * w // 4] = 1.0  # an ROI, so the encoder's mask path is exercised
    samples: dict[str, list[float]] = {}
    last: dict[str, object] = {}

    def add(key: str, value: float) -> None:
        samples.setdefault(key, []).append(value)

    for i in range(args.warmup + args.repeats):
        keep = i >= args.warmup
        features = None
        if detector is not None:
            result, t_det = timed(detector, frame)
            features = result.features
            if keep:
                add("detector", t_det)
        for name, codec in codecs.items():
            enc, t_enc = timed(codec.encode, frame, mask, features, args.rate, 4.0)
            c_enc = CPU_MS["last"]
            (image, stages), t_dec = timed(codec.decode_timed, enc.data)
            last[name] = (enc, image)
            if keep:
                add(f"{name}/encode", t_enc)
                add(f"{name}/decode", t_dec)
                add(f"{name}/encode_cpu", c_enc)
                add(f"{name}/decode_cpu", CPU_MS["last"])
                for k in ("input", "g_a", "side", "entropy"):
                    add(f"{name}/enc_{k}", enc.timings_ms[k])
                for k in ("entropy", "g_s", "output"):
                    add(f"{name}/dec_{k}", stages[k])
        for name, base in baselines.items():
            benc, t_enc = timed(base.encode, frame)
            c_enc = CPU_MS["last"]
            bimg, t_dec = timed(base.decode, benc)
            last[name] = (benc, bimg)
            if keep:
                add(f"{name}/encode", t_enc)
                add(f"{name}/decode", t_dec)
                add(f"{name}/encode_cpu", c_enc)
                add(f"{name}/decode_cpu", CPU_MS["last"])
    med = {k: statistics.median(v) for k, v in samples.items()}
    old_enc, old_img = last["old"]
    new_enc, new_img = last["new"]
    # the exact decoder must give the old path's pixels for the same bytes (decoded with the new stream's entropy
    # side: with an integer side the old path's float64 h_s would read other scales from them)
    old_coder = codecs["old"]._coder
    old_side, old_coder.integer = old_coder.integer, codecs["new"]._coder.integer
    try:
        same_pixels = np.array_equal(codecs["old"].decode(new_enc.data), new_img)
    finally:
        old_coder.integer = old_side
    info = {
        "size": f"{h}x{w}",
        "median_ms": med,
        "bytes": {name: (enc.num_bytes if name in codecs else Baseline.num_bytes(enc)) for name, (enc, _) in last.items()},
        "psnr_db": {name: psnr(frame, img) for name, (_, img) in last.items()},
        "exact_equals_old_pixels": bool(same_pixels),
        "pixels_sha1": hashlib.sha1(new_img.tobytes()).hexdigest(),
    }
    if "fast" in last:
        info["fast_vs_exact_psnr_db"] = psnr(codecs["new"].decode(last["fast"][0].data), last["fast"][1])
    return info


def report(info: dict, codecs, baselines, detector) -> list[str]:
    med, (h, w) = info["median_ms"], (int(v) for v in info["size"].split("x"))
    lines = [f"\n== {w}x{h} ==", f"{'':<16}{'encode ms':>10}{'decode ms':>11}{'enc+dec':>9}{'bytes':>8}{'PSNR dB':>9}"
                                   f"{'enc CPU ms':>12}{'dec CPU ms':>12}"]
    for name in list(codecs) + list(baselines):
        e, d = med[f"{name}/encode"], med[f"{name}/decode"]
        lines.append(f"{name:<16}{e:>10.1f}{d:>11.1f}{e + d:>9.1f}{info['bytes'][name]:>8}{info['psnr_db'][name]:>9.2f}"
                     f"{med[f'{name}/encode_cpu']:>12.1f}{med[f'{name}/decode_cpu']:>12.1f}")
    ratios = {}
    for name in [n for n in codecs if n != "old"]:
        r = {
            "encode": med[f"{name}/encode"] / med["old/encode"],
            "decode": med[f"{name}/decode"] / med["old/decode"],
            "encode+decode": (med[f"{name}/encode"] + med[f"{name}/decode"]) / (med["old/encode"] + med["old/decode"]),
        }
        ratios[name] = r
        cpu_ratio = (med[f"{name}/encode_cpu"] / med["old/encode_cpu"], med[f"{name}/decode_cpu"] / med["old/decode_cpu"])
        r["encode_cpu"], r["decode_cpu"] = cpu_ratio
        lines.append(f"ratio {name} / old{'':<6}{r['encode']:>10.3f}{r['decode']:>11.3f}{r['encode+decode']:>9.3f}"
                     f"{'':>17}{cpu_ratio[0]:>12.3f}{cpu_ratio[1]:>12.3f}")
    for name in [n for n in codecs if n != "old"]:
        for base in baselines:
            be, bd = med[f"{base}/encode"], med[f"{base}/decode"]
            r = (med[f"{name}/encode"] / be, med[f"{name}/decode"] / bd)
            ratios[f"{name}/{base}"] = {"encode": r[0], "decode": r[1]}
            lines.append(f"ratio {name} / {base:<10}{r[0]:>6.3f}{r[1]:>11.3f}")
    info["ratios"] = ratios
    stages = " | ".join(
        f"{name}: " + ", ".join(f"{k} {med[f'{name}/{k}']:.1f}" for k in ("enc_input", "enc_g_a", "enc_side", "enc_entropy", "dec_entropy", "dec_g_s", "dec_output"))
        for name in codecs
    )
    lines.append(("detector %.1f ms | " % med["detector"] if detector is not None else "") + "stages (ms) " + stages)
    lines.append(f"exact decoder pixels == old path's: {info['exact_equals_old_pixels']} (sha1 {info['pixels_sha1'][:12]})"
                 + (f"; fast vs exact decode: {info['fast_vs_exact_psnr_db']:.2f} dB" if "fast_vs_exact_psnr_db" in info else ""))
    checks = []
    for key, limit in TARGETS.get(info["size"], {}).items():
        value = ratios["new"][key]
        checks.append(f"new/old {key} {value:.3f} <= {limit}: {'met' if value <= limit else 'NOT met'}")
    for base in ("SH opt", "SH opt f64"):
        if base in baselines:
            for key in ("encode", "decode"):
                value = ratios[f"new/{base}"][key]
                checks.append(f"new/{base} {key} {value:.2f} <= {TARGET_RATIO}: {'met' if value <= TARGET_RATIO else 'NOT met'}")
    lines.append("targets: " + "; ".join(checks))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None,
                   help="model file; default: the shipped model; 'random' = small untrained test model; "
                        "'random-full' = untrained model of the default architecture (ModelConfig())")
    p.add_argument("--image", default=None, help="source image (default: a nuScenes frame if present, else bus.jpg)")
    p.add_argument("--sizes", "--size", default="375x1242,720x1280", help="frame sizes HxW, comma-separated")
    p.add_argument("--rate", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for every codec (default: 2)")
    p.add_argument("--detector", default=None, help="YOLOv8 weights: time the detector and feed its features to the encoder")
    p.add_argument("--no-baseline", action="store_true", help="skip the CompressAI ScaleHyperprior rows")
    p.add_argument("--json", default=None, help="write all medians and ratios to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    image_path = Path(args.image) if args.image else default_image()
    try:
        codecs = load_codecs(args.model)
    except FileNotFoundError as exc:
        print(f"codec_latency: {exc}\n(use --model random for the untrained test model)", file=sys.stderr)
        return 1
    cfg = codecs["new"].config
    baselines = {} if args.no_baseline else {"SH": Baseline(cfg.N, cfg.M), "SH opt": Baseline(cfg.N, cfg.M, optimised=True),
                                             "SH opt f64": Baseline(cfg.N, cfg.M, float64_side=True)}
    detector = None
    if args.detector:
        from roi_codec_ros.detector import DetectorAdapter

        detector = DetectorAdapter.from_weights(args.detector)
    new = codecs["new"]
    print(f"CPU, torch threads {torch.get_num_threads()}, median of {args.repeats} runs after {args.warmup} warm-up, "
          f"rate {args.rate}, source {image_path.name}; model {new.info.get('path', '?')} (N={cfg.N}, M={cfg.M}, "
          f"id {new.model_id[:12]}); new: analysis {new.analysis_precision}, synthesis channels-last "
          f"{new.channels_last_synthesis}; CPU bf16 {cpu_supports_bf16()}")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} CPUs")
    results = []
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.lower().split("x"))
        info = bench_size(codecs, baselines, detector, image_path, h, w, args)
        print("\n".join(report(info, codecs, baselines, detector)), flush=True)
        results.append(info)
    print(f"load average at end: {os.getloadavg()[0]:.2f} (1 min)")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "repeats": args.repeats, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
