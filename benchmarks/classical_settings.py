"""Which colour conversion and tuning gives each classical baseline its best RGB PSNR? (prints; not a test)

    python benchmarks/classical_settings.py IMAGE_FOLDER [IMAGE_FOLDER ...] [--stride 4] [--max-frames 6]
        [--codecs x264,x265,jpeg,webp] [--crf 18,22,26,30,34,38,42] [--out outputs/classical_settings.json]

For each codec, every variant codes the same frames over the same CRF/quality sweep (the runner's measurement:
means of per-frame bpp and RGB PSNR), and the table gives the BD-rate (PCHIP, whole-frame PSNR) of each variant
against the codec's first variant (the old baseline: swscale's BT.601 limited-range conversion; OpenCV JPEG
without Huffman optimisation; WebP method 4). Variants:

* x264/x265 4:2:0: swscale (VideoFrame.reformat, BT.601 limited, what baselines.py did before) | numpy
  BT.601 limited | BT.601 full, centre siting (2x2 box mean, bilinear) | BT.601 full, left siting ([1 2 1]/4) |
  BT.709 full; each with the encoder's default psy tuning; BT.601 full centre also with PSNR tuning
  (psy-rd/AQ off = tune=psnr), with box or fitted chroma; 4:4:4 swscale | BT.601 full (+ PSNR tuning).
  x265 runs the subset X265_VARIANTS (it is ~10x slower).
* JPEG: OpenCV default | optimised Huffman | optimised + progressive | 4:4:4 optimised.
* WebP: method 4 | method 6.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import av
import numpy as np

from roi_codec_ros.classical import ColourConversion
from roi_codec_ros.classical.x26x import frame_to_planes, planes_to_frame
from roi_codec_ros.evaluation import baselines
from roi_codec_ros.evaluation.bdrate import bd_psnr, bd_rate
from roi_codec_ros.evaluation.frames import iter_folder_frames
from roi_codec_ros.evaluation.runner import evaluate, summarize

LIMITED_601 = ColourConversion("bt601", "limited")


class _Swscale:
    """Mix-in: RGB<->YUV by swscale's default (BT.601 limited range), the pre-2026-12 baseline conversion."""

    def _to_planes(self, rgb):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=self.colour.pix_fmt)
        return frame_to_planes(frame)

    def _to_rgb(self, planes):
        colour = ColourConversion("bt601", "limited", self.colour.chroma)
        return planes_to_frame(planes, colour).reformat(format="rgb24").to_ndarray()


class SwscaleIntra(_Swscale, baselines.VideoIntraCodec):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.colour = ColourConversion("bt601", "limited", self.pix_fmt[3:6])
        self.config = self._config()

    def encode(self, image, boxes=None, features=None) -> bytes:
        from roi_codec_ros.classical import X26xEncoder, pad_to_even

        padded, pad_w, pad_h = pad_to_even(image)
        encoder = X26xEncoder(self.config, padded.shape[1], padded.shape[0])
        packets = encoder.encode_planes(self._to_planes(padded)) + encoder.flush()
        return bytes([pad_w | pad_h << 1]) + b"".join(p.data for p in packets)

    def decode(self, data: bytes) -> np.ndarray:
        from roi_codec_ros.classical import X26xDecoder

        stream, pad_w, pad_h = self._unframe(data, "x26x")
        decoder = X26xDecoder(self.codec_name)
        planes = decoder.decode_planes(stream) or []
        if not planes:
            planes = [frame_to_planes(f) for f in decoder._ctx.decode(None)]
        return self._crop(self._to_rgb(planes[0]), pad_w, pad_h)


def _intra(encoder, chroma, colour=None, tune_psnr=False, swscale=False):
    pix_fmt = f"yuv{chroma}p"

    def make(crf):
        if swscale:
            codec = SwscaleIntra(encoder, crf, pix_fmt, tune_psnr=tune_psnr)
        else:
            codec = baselines.VideoIntraCodec(encoder, crf, pix_fmt, tune_psnr=tune_psnr)
            if colour is not None:
                codec.colour = ColourConversion(colour.matrix, colour.range, chroma, colour.siting,
                                                colour.chroma_filter if chroma == "420" else "box")
                codec.config = codec._config()
        return codec

    return make


FULL_C = ColourConversion("bt601", "full", siting="center")
FULL_L = ColourConversion("bt601", "full", siting="left")
FULL_709 = ColourConversion("bt709", "full", siting="center")
FULL_FIT = ColourConversion("bt601", "full", siting="center", chroma_filter="fit")


# x265 is ~10x slower than x264 here: it gets the variants that decide (the others behave as for x264)
X265_VARIANTS = ("420 swscale BT.601 limited (old)", "420 BT.601 full, centre", "420 BT.601 full, centre, tune psnr",
                 "420 BT.601 full, centre, fitted chroma, tune psnr", "444 swscale BT.601 limited (old)",
                 "444 BT.601 full, tune psnr")


def variants(codec: str) -> list[tuple[str, object]]:
    if codec == "x265":
        return [v for v in _video_variants(codec) if v[0] in X265_VARIANTS]
    if codec == "x264":
        return _video_variants(codec)
    return _image_variants(codec)


def _video_variants(codec: str) -> list[tuple[str, object]]:
    if codec in ("x264", "x265"):
        return [
            ("420 swscale BT.601 limited (old)", _intra(codec, "420", swscale=True)),
            ("420 numpy BT.601 limited, centre", _intra(codec, "420", LIMITED_601)),
            ("420 BT.601 full, centre", _intra(codec, "420", FULL_C)),
            ("420 BT.601 full, left", _intra(codec, "420", FULL_L)),
            ("420 BT.709 full, centre", _intra(codec, "420", FULL_709)),
            ("420 BT.601 full, centre, tune psnr", _intra(codec, "420", FULL_C, tune_psnr=True)),
            ("420 BT.601 full, centre, fitted chroma, tune psnr", _intra(codec, "420", FULL_FIT, tune_psnr=True)),
            ("444 swscale BT.601 limited (old)", _intra(codec, "444", swscale=True)),
            ("444 BT.601 full", _intra(codec, "444", FULL_C)),
            ("444 BT.601 full, tune psnr", _intra(codec, "444", FULL_C, tune_psnr=True)),
        ]
    raise SystemExit(f"unknown codec {codec}")


def _image_variants(codec: str) -> list[tuple[str, object]]:
    if codec == "jpeg":
        return [
            ("OpenCV default (4:2:0, standard Huffman)", lambda q: baselines.JpegCodec(q, optimize=False)),
            ("4:2:0 optimised Huffman", lambda q: baselines.JpegCodec(q, optimize=True)),
            ("4:2:0 optimised, progressive", lambda q: baselines.JpegCodec(q, optimize=True, progressive=True)),
            ("4:4:4 optimised Huffman", lambda q: baselines.JpegCodec(q, optimize=True, chroma="444")),
        ]
    if codec == "webp":
        return [("method 4", lambda q: baselines.WebpCodec(q, method=4)),
                ("method 6", lambda q: baselines.WebpCodec(q, method=6))]
    raise SystemExit(f"unknown codec {codec}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--max-frames", type=int, default=6)
    parser.add_argument("--codecs", default="x264,x265,jpeg,webp")
    parser.add_argument("--crf", default=",".join(str(c) for c in baselines.CRF_VALUES))
    parser.add_argument("--out", default="outputs/classical_settings.json")
    args = parser.parse_args(argv)
    crfs = [float(c) for c in args.crf.split(",")]
    frames = [f for folder in args.folders for f in iter_folder_frames(folder, stride=args.stride,
                                                                        max_frames=args.max_frames)]
    print(f"{len(frames)} frames from {', '.join(args.folders)} (stride {args.stride}, max {args.max_frames} each)")
    results = {}
    for codec in args.codecs.split(","):
        sweep = crfs if codec.startswith("x26") else (baselines.JPEG_QUALITIES if codec == "jpeg"
                                                       else baselines.WEBP_QUALITIES)
        rows = {}
        for name, make in variants(codec):
            start = time.perf_counter()
            settings = [make(v) for v in sweep]
            for s in settings:
                s.family = name
            summary = summarize(evaluate(frames, settings, with_msssim=False, progress=False))
            rows[name] = {"bpp": [r["bpp"] for r in summary], "psnr": [r["psnr"] for r in summary],
                          "seconds": time.perf_counter() - start}
        ref_name = next(iter(rows))
        ref = rows[ref_name]
        print(f"\n{codec}: BD-rate / BD-PSNR vs '{ref_name}' (whole-frame RGB PSNR)")
        print("| variant | BD-rate | BD-PSNR | PSNR at best setting | bpp there |")
        print("|---|---|---|---|---|")
        for name, row in rows.items():
            try:
                rate = bd_rate(ref["bpp"], ref["psnr"], row["bpp"], row["psnr"])
                gain = bd_psnr(ref["bpp"], ref["psnr"], row["bpp"], row["psnr"])
            except ValueError as err:
                rate = gain = float("nan")
                print(f"  ({name}: {err})", file=sys.stderr)
            row.update(bd_rate=rate, bd_psnr=gain)
            print(f"| {name} | {rate:+.1f} % | {gain:+.2f} dB | {max(row['psnr']):.2f} dB | "
                  f"{row['bpp'][int(np.argmax(row['psnr']))]:.3f} |")
        results[codec] = rows
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"frames": [f.name for f in frames], "sweep_crf": crfs, "results": results}, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
