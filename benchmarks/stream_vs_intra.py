"""Streams of I- and P-frames against intra frames of the same frames: bits, pictures and time (prints; not a test).

    python benchmarks/stream_vs_intra.py VIDEO[@FPS] [VIDEO[@FPS] ...] [--hz 10] [--max-frames 60]
        [--keyframe-interval 10] [--rates 0,0.25,0.5,0.75,1] [--model default] [--threads 2] [--json OUT] [--warp]

Each video is resampled to ``--hz`` (nearest frame); FPS after '@' overrides the container's rate.  Per rate knob:
the bytes of the stream (``RoiCodec.stream_encoder``) over the bytes of the same frames coded intra
(``RoiCodec.encode``), how many frames came out as P-frames, and the mean PSNR of both.  With block motion alone a
P-frame decodes to the intra frame's pixels (checked on every frame: the stream decoder against ``RoiCodec.decode``
of the intra frame), so the geometric mean of the ratios is the BD-rate.  With ``--warp`` warped blocks quantise y
around a fractional prediction, so pictures differ: the BD-rate is then that of the (bpp, mean PSNR) curves.
Timing: median encode and decode times of P-frames against intra frames of the same frames, interleaved in the
same run (target <= 1.3).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from roi_codec_ros.codec import RoiCodec
from roi_codec_ros.evaluation.bdrate import bd_rate
from roi_codec_ros.evaluation.metrics import psnr


def read_frames(spec: str, hz: float, max_frames: int) -> tuple[str, list[np.ndarray]]:
    import av

    path, _, fps_text = spec.partition("@")
    with av.open(path) as container:
        stream = container.streams.video[0]
        fps = float(fps_text) if fps_text else float(stream.average_rate or hz)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    step = fps / hz
    picked, k = [], 0
    while int(round(k * step)) < len(frames) and len(picked) < max_frames:
        picked.append(frames[int(round(k * step))])
        k += 1
    return Path(path).stem, picked


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, (time.perf_counter() - start) * 1e3


def measure(codec: RoiCodec, frames: list[np.ndarray], rates: list[float], keyframe_interval: int) -> dict:
    rows, times = [], {"p_encode": [], "i_encode": [], "p_decode": [], "i_decode": []}
    same_pictures = not codec.p_frame_warp
    for rate in rates:
        encoder, decoder = codec.stream_encoder(keyframe_interval), codec.stream_decoder()
        stream_bytes = intra_bytes = p_frames = 0
        stream_psnr, intra_psnr = [], []
        for image in frames:
            frame, t_enc = timed(encoder.encode, image, rate=rate)
            intra, t_intra = timed(codec.encode, image, rate=rate)
            decoded, t_dec = timed(decoder.decode, frame.data)
            reference, t_intra_dec = timed(codec.decode, intra.data)
            if same_pictures and not np.array_equal(decoded, reference):
                raise SystemExit("a stream frame decoded to other pixels than the intra frame: a bug")
            stream_psnr.append(psnr(image, decoded))
            intra_psnr.append(psnr(image, reference))
            stream_bytes += frame.num_bytes
            intra_bytes += intra.num_bytes
            if not frame.keyframe:
                p_frames += 1
                times["p_encode"].append(t_enc)
                times["i_encode"].append(t_intra)
                times["p_decode"].append(t_dec)
                times["i_decode"].append(t_intra_dec)
        rows.append({"rate": rate, "stream_bytes": stream_bytes, "intra_bytes": intra_bytes,
                     "ratio": stream_bytes / intra_bytes, "p_frames": p_frames, "frames": len(frames),
                     "stream_psnr": statistics.fmean(stream_psnr), "intra_psnr": statistics.fmean(intra_psnr)})
    medians = {k: statistics.median(v) if v else math.nan for k, v in times.items()}
    if same_pictures:  # equal PSNR at every rate
        bd = 100 * (math.exp(statistics.fmean(math.log(r["ratio"]) for r in rows)) - 1)
    else:  # bytes of the same frames stand in for bpp: the ratio is what counts
        bd = bd_rate([r["intra_bytes"] for r in rows], [r["intra_psnr"] for r in rows],
                     [r["stream_bytes"] for r in rows], [r["stream_psnr"] for r in rows])
    return {
        "rows": rows,
        "bd_rate_percent": bd,
        "median_ms": medians,
        "p_over_i": {"encode": medians["p_encode"] / medians["i_encode"], "decode": medians["p_decode"] / medians["i_decode"]},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("videos", nargs="+", help="video files, VIDEO@FPS to override the container's frame rate")
    p.add_argument("--hz", type=float, default=10.0)
    p.add_argument("--max-frames", type=int, default=60)
    p.add_argument("--keyframe-interval", type=int, default=10)
    p.add_argument("--rates", default="0,0.25,0.5,0.75,1")
    p.add_argument("--model", default="default")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    p.add_argument("--warp", action="store_true", help="P-frames may also predict from the warped reference picture "
                   "(StreamEncoder.flow_prediction)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    codec = RoiCodec.load(args.model)
    codec.p_frame_warp = codec.p_frame_warp or args.warp  # the default of new streams
    rates = [float(r) for r in args.rates.split(",")]
    results = {}
    print(f"model {codec.model_id[:12]}, keyframe interval {args.keyframe_interval}, {args.hz:g} Hz, "
          f"torch threads {torch.get_num_threads()}, flow-warped predictions {'on' if codec.p_frame_warp else 'off'}; "
          f"stream bytes / intra bytes of the same frames (and the stream's PSNR - the intra frames')")
    for spec in args.videos:
        name, frames = read_frames(spec, args.hz, args.max_frames)
        res = results[name] = measure(codec, frames, rates, args.keyframe_interval)
        cells = " | ".join(f"{r['ratio']:.3f} ({r['p_frames']} P, {r['stream_psnr'] - r['intra_psnr']:+.2f} dB)"
                           for r in res["rows"])
        h, w = frames[0].shape[:2]
        print(f"{name} ({len(frames)} frames, {w}x{h}): {cells} | BD-rate {res['bd_rate_percent']:+.1f} % | "
              f"P/I time encode {res['p_over_i']['encode']:.2f}, decode {res['p_over_i']['decode']:.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
