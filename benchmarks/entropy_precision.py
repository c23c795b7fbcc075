"""Can the float64 entropy side (h_s, i_s, scale mixing, scale-table indexes) run in float32?  (prints; not a test)

    python benchmarks/entropy_precision.py [--model PATH] [--frames 6] [--sizes 375x1242,720x1280] [--repeats 5]

The encoder and every decoder must derive *identical* scale-table indexes for y from the decoded z/w, or the rANS
decoder desynchronises at the first differing symbol and the rest of the frame is garbage.  Today this runs on the
CPU in float64.  For real frames (nuScenes if present, else the bundled images, at several rates and ROI weights)
this script computes the indexes with several kernels that different machines/threads/devices would pick:

- float64: 1 thread, 2 threads, oneDNN off (ATen's native kernels);
- float32: oneDNN 1 thread, 2 threads, channels-last, oneDNN off (what a GPU or another CPU would do: a different
  summation order);

and counts index mismatches against float64 at 1 thread, and between the float32 variants.  It also reports how
close the float64 scales come to a scale-table boundary (the margin that protects the float64 path) and the time of
the float64 vs float32 stage.  The parts of the entropy side that are exact in any precision (symbols and
dequantised values are integers < 2**24) are named in the output; they already cost nothing measurable.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from roi_codec_ros.codec import RoiCodec
from roi_codec_ros.codec.bitstream import unpack_frame
from roi_codec_ros.codec.latent_codec import _channel_indexes, _tables

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from codec_latency import make_frame  # noqa: E402


def frames(count: int) -> list[Path]:
    shared = REPO.parent / "shared" / "data" / "eval" / "nuscenes_front_seq"
    if shared.is_dir():
        found = sorted(shared.glob("*.jpg"))
        if found:
            return found[:: max(1, len(found) // count)][:count]
    from ultralytics.utils import ASSETS

    return sorted(Path(ASSETS).glob("*.jpg"))[:count]


@contextlib.contextmanager
def kernel(threads: int, mkldnn: bool):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.backends.mkldnn.flags(enabled=mkldnn):
            yield
    finally:
        torch.set_num_threads(before)


def side_params(coder, strings, header, dtype, channels_last=False):
    """z/w decoded exactly (integers), then h_s/i_s, mixing and indexes in ``dtype``; returns (scales, indexes)."""
    out = []
    for part, name, shape, channels in ((coder.hyper, "z", header.z_shape, None), (coder.object, "w", header.w_shape, None)):
        eb = part.entropy_bottleneck
        medians = eb._get_medians().detach().reshape(1, -1, 1, 1)
        values = _tables(eb).decode(strings[name], _channel_indexes(medians.shape[1], shape))
        z_hat = eb.dequantize(values, medians).to(dtype)
        if channels_last:
            z_hat = z_hat.contiguous(memory_format=torch.channels_last)
        out.append(part.h_s(z_hat))
    scales = coder.y.entropy_parameters(torch.cat(out, dim=1))
    conditional = coder.y.gaussian_conditional
    return scales, conditional.build_indexes(scales)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--sizes", default="375x1242,720x1280")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    codec = RoiCodec.load(args.model, analysis_precision="fp32")
    coder64 = codec._coder
    coder32 = copy.deepcopy(coder64).float()
    coder32_cl = copy.deepcopy(coder32)
    for module in coder32_cl.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.to(memory_format=torch.channels_last)
    table = coder64.y.gaussian_conditional.scale_table[:-1].double()
    variants = {
        "f64 1 thread, oneDNN off": (coder64, 1, False, False),
        "f64 2 threads": (coder64, 2, True, False),
        "f32 1 thread": (coder32, 1, True, False),
        "f32 2 threads": (coder32, 2, True, False),
        "f32 channels-last": (coder32_cl, 1, True, True),
        "f32 oneDNN off": (coder32, 1, False, False),
    }
    mismatches = {name: 0 for name in variants}
    f32_pairs = 0
    symbols = 0
    min_margin = float("inf")
    at_risk = {1e-7: 0, 1e-6: 0, 1e-5: 0}
    max_rel = {name: 0.0 for name in variants}
    times = {"float64": [], "float32": []}
    streams = 0
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.lower().split("x"))
        for path in frames(args.frames):
            image = make_frame(path, h, w)
            for rate, alpha in ((0.0, 1.0), (0.5, 8.0), (1.0, 60.0)):
                mask = np.zeros((h, w), np.float32)
                mask[h // 3 :, w // 4 : 3 * w // 4] = 1.0
                header, strings = unpack_frame(codec.encode(image, roi_mask=mask, rate=rate, roi_weight=alpha).data)
                streams += 1
                with torch.inference_mode():
                    with kernel(1, True):
                        scales64, reference = side_params(coder64, strings, header, torch.float64)
                    symbols += reference.numel()
                    # relative distance of each float64 scale to the nearest table boundary
                    # (scales at the lower bound are clamped to exactly table[0] in every precision: not at risk)
                    s = coder64.y.gaussian_conditional.lower_bound_scale(scales64).reshape(-1)
                    s = s[s > table[0]]
                    position = torch.bucketize(s, table).clamp(1, len(table) - 1)
                    gap = torch.minimum((s - table[position - 1]).abs(), (table[position] - s).abs()) / s
                    min_margin = min(min_margin, float(gap.min()))
                    for d in at_risk:
                        at_risk[d] += int((gap < d).sum())
                    f32_indexes = []
                    for name, (coder, threads, mkldnn, cl) in variants.items():
                        dtype = torch.float64 if name.startswith("f64") else torch.float32
                        with kernel(threads, mkldnn):
                            scales, indexes = side_params(coder, strings, header, dtype, cl)
                        mismatches[name] += int((indexes != reference).sum())
                        rel = ((scales.double() - scales64).abs() / scales64.abs().clamp_min(1e-3)).max()
                        max_rel[name] = max(max_rel[name], float(rel))
                        if dtype == torch.float32:
                            f32_indexes.append(indexes)
                    f32_pairs += sum(int((a != b).sum()) for a in f32_indexes for b in f32_indexes[:1])
                    for dtype, coder, key in ((torch.float64, coder64, "float64"), (torch.float32, coder32, "float32")):
                        with kernel(1, True):
                            for _ in range(args.repeats):
                                start = time.perf_counter()
                                side_params(coder, strings, header, dtype)
                                times[key].append((time.perf_counter() - start) * 1e3)
    print(f"{streams} streams ({args.sizes}; rates 0/0.5/1, ROI weights 1/8/60), {symbols} y symbols; model {codec.model_id[:12]}")
    print("scale-table index mismatches against float64 at 1 thread (any mismatch desynchronises the rANS decoder):")
    for name, count in mismatches.items():
        print(f"  {name:<26} {count:>8}  ({count / symbols:.2e} per symbol); max relative scale difference {max_rel[name]:.1e}")
    print(f"  f32 variants among themselves: {f32_pairs} mismatches vs the first f32 variant")
    print(f"smallest relative distance of a float64 scale (above the lower bound) to a table boundary: {min_margin:.2e}")
    print("symbols whose scale lies within a relative distance d of a boundary (a kernel differing by d may flip them): "
          + ", ".join(f"d={d:g}: {n} ({n / symbols:.1e} per symbol, {n / streams:.2f} per frame)" for d, n in at_risk.items()))
    t64, t32 = statistics.median(times["float64"]), statistics.median(times["float32"])
    print(f"z/w decode + h_s + i_s + mixing + indexes, 1 thread, median: float64 {t64:.1f} ms, float32 {t32:.1f} ms "
          f"(ratio {t32 / t64:.2f})")
    print("exact in any precision (already no float64 cost): y/z/w symbols and dequantised values (integers), "
          "y_hat handed to g_s as float32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
