"""Cross-check the classical baselines against the command-line tools: same frames, same settings, same numbers?

    python scripts/crosscheck_ffmpeg.py IMAGE [--video VIDEO --fps 10 --frames 10] [--out outputs/crosscheck]
                                       [--json outputs/crosscheck.json]

Needs ``ffmpeg`` (Debian: ``apt-get install ffmpeg``) and, for JPEG/WebP encodes, ``cjpeg`` / ``cwebp``
(``libjpeg-turbo-progs``, ``webp``); a missing tool skips its rows. For every codec, one point:

* x264 / x265 (intra 4:2:0 and 4:4:4, zerolatency IPPP streams, x264 + ROI):
  1. *decode*: the ffmpeg CLI decodes our payload (Annex-B, SEI stripped) to raw Y'CbCr; it must equal our
     decoder's planes bit for bit, so the PSNR after our RGB conversion is identical (tolerance 0).
  2. *encode*: the ffmpeg CLI encodes the very Y'CbCr planes our conversion made, with the settings our
     ``X26xConfig`` maps to (``X26xConfig.ffmpeg_args``; ROI by the CLI's ``addroi`` filter); bytes (SEI stripped)
     and PSNR (decoded by our decoder + our conversion) are compared with ours. Tolerance: identical libraries
     give identical bytes; Debian's ffmpeg 5.1 links x264 core 164 / x265 3.5 while PyAV bundles newer ones,
     so we allow 3 % bytes and 0.10 dB (measured differences are printed).
  3. for information, the PSNR of the ffmpeg CLI's own RGB output (swscale, honouring the signalled range and
     matrix; its chroma up-sampling differs from our bilinear one).
* JPEG: ``cjpeg`` (libjpeg-turbo, the library OpenCV links) with the same quality / Huffman optimisation:
  bytes; the ffmpeg CLI decodes our JPEG to RGB: PSNR (its decoder and up-sampling differ from libjpeg's).
* WebP: ``cwebp`` and the ffmpeg CLI (libwebp, RGB input) at the same quality and method: bytes and PSNR
  (decoded by Pillow); different libwebp versions, same tolerance as above.

Exit status 1 when a checked quantity is outside its tolerance.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from roi_codec_ros.classical import X26xDecoder, strip_sei
from roi_codec_ros.classical.x26x import split_access_units
from roi_codec_ros.evaluation import baselines
from roi_codec_ros.evaluation.frames import read_image_rgb
from roi_codec_ros.evaluation.metrics import psnr

BYTES_TOLERANCE = 0.03
PSNR_TOLERANCE_DB = 0.10


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")


def _planes_bytes(planes) -> bytes:
    return b"".join(np.ascontiguousarray(p).tobytes() for p in planes)


def _split_planes(raw: bytes, width: int, height: int, chroma: str, count: int) -> list[list[np.ndarray]]:
    cw, ch = (width, height) if chroma == "444" else (width // 2, height // 2)
    size = width * height + 2 * cw * ch
    if len(raw) != size * count:
        raise RuntimeError(f"ffmpeg produced {len(raw)} bytes of raw video, expected {size * count}")
    out = []
    for i in range(count):
        buf = np.frombuffer(raw, np.uint8, size, i * size)
        y = buf[: width * height].reshape(height, width)
        cb = buf[width * height: width * height + cw * ch].reshape(ch, cw)
        cr = buf[width * height + cw * ch:].reshape(ch, cw)
        out.append([y, cb, cr])
    return out


def _ffmpeg_decode_yuv(stream: bytes, codec_name: str, pix_fmt: str, tmp: Path) -> bytes:
    src, dst = tmp / f"in.{codec_name}", tmp / "dec.yuv"
    src.write_bytes(stream)
    _run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", codec_name, "-i", str(src),
          "-f", "rawvideo", str(dst)])  # the decoder's own format (5.1's h264 says yuvj420p): no conversion
    return dst.read_bytes()


def _ffmpeg_decode_rgb(path: Path, fmt: str | None, tmp: Path, width: int, height: int, count: int) -> list:
    dst = tmp / "dec.rgb"
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"] + (["-f", fmt] if fmt else []) + ["-i", str(path)]
    _run(cmd + ["-f", "rawvideo", "-pix_fmt", "rgb24", str(dst)])
    raw = np.frombuffer(dst.read_bytes(), np.uint8)
    return list(raw.reshape(count, height, width, 3))


def check_x26x(name: str, codec_factory, frames: list[np.ndarray], boxes, tmp: Path) -> dict:
    """Our codec on ``frames`` (one stream or one intra frame) vs the ffmpeg CLI (see module doc)."""
    ours = codec_factory()
    height, width = frames[0].shape[:2]
    if height % 2 or width % 2:
        raise ValueError("use even-sized frames for the cross-check")
    payloads = [ours.encode(f, boxes) for f in frames]
    decoded = [ours.decode(p) for p in payloads]
    our_bytes = sum(len(p) - 1 for p in payloads)  # without our 1-byte padding flag
    our_psnr = float(np.mean([psnr(f, d) for f, d in zip(frames, decoded)]))
    stream = b"".join(p[1:] for p in payloads)
    colour, config, codec_name = ours.colour, ours.config, ours.codec_name
    pix_fmt = colour.pix_fmt
    # 1. the CLI decodes our payload: planes bit-identical to our decoder's
    cli_planes = _split_planes(_ffmpeg_decode_yuv(stream, codec_name, pix_fmt, tmp), width, height, colour.chroma,
                               len(frames))
    decoder = X26xDecoder(codec_name, colour)
    our_planes = []
    for p in payloads:
        our_planes += decoder.decode_planes(p[1:])
    our_planes += decoder.flush_planes()
    identical = len(our_planes) == len(cli_planes) and all(
        all(np.array_equal(a, b) for a, b in zip(pa, pb)) for pa, pb in zip(our_planes, cli_planes))
    # 3. the CLI's own RGB conversion of our stream (information only)
    (tmp / f"ours.{codec_name}").write_bytes(stream)
    cli_rgb = _ffmpeg_decode_rgb(tmp / f"ours.{codec_name}", codec_name, tmp, width, height, len(frames))
    cli_rgb_psnr = float(np.mean([psnr(f, d) for f, d in zip(frames, cli_rgb)]))
    # 2. the CLI encodes the planes our conversion made, with the same settings
    raw = tmp / "in.yuv"
    raw.write_bytes(b"".join(_planes_bytes(colour.rgb_to_planes(f)) for f in frames))
    want_roi = ours.roi_qoffset is not None
    filters = [f"addroi=x={r.x}:y={r.y}:w={r.w}:h={r.h}:qoffset={r.qoffset:g}"
               for r in baselines.roi_regions(boxes, height, width, ours.roi_qoffset, ours.bg_qoffset)]
    out = tmp / f"cli.{codec_name}"
    fps = str(int(getattr(ours, "fps", 10)))
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", pix_fmt,
           "-s", f"{width}x{height}", "-r", fps, "-color_range", "pc" if colour.range == "full" else "tv",
           "-i", str(raw)]
    if filters:
        cmd += ["-vf", ",".join(filters)]
    cmd += config.ffmpeg_args(want_roi) + ["-forced-idr", "1", "-f", codec_name, str(out)]
    _run(cmd)
    cli_stream = strip_sei(out.read_bytes(), codec_name)
    # our decoder (and our RGB conversion) on the CLI's stream: the parser splits it into pictures
    cli_decoder = X26xDecoder(codec_name, colour)
    cli_frames = [rgb for unit in split_access_units(cli_stream, codec_name) for rgb in cli_decoder.decode(unit)]
    cli_frames += cli_decoder.flush()
    if len(cli_frames) != len(frames):
        raise RuntimeError(f"{name}: the CLI stream decoded to {len(cli_frames)} frames, expected {len(frames)}")
    cli_psnr = float(np.mean([psnr(f, d) for f, d in zip(frames, cli_frames)]))
    cli_bytes = len(cli_stream)
    bytes_diff = cli_bytes / our_bytes - 1.0
    return {
        "check": name, "frames": len(frames), "settings": " ".join(config.ffmpeg_args(want_roi)),
        "our_bytes": our_bytes, "cli_bytes": cli_bytes, "bytes_diff": bytes_diff,
        "our_psnr": our_psnr, "cli_psnr": cli_psnr, "psnr_diff": cli_psnr - our_psnr,
        "cli_decode_identical": identical, "cli_swscale_rgb_psnr": cli_rgb_psnr,
        "ok": identical and abs(bytes_diff) <= BYTES_TOLERANCE and abs(cli_psnr - our_psnr) <= PSNR_TOLERANCE_DB,
    }


def check_jpeg(image: np.ndarray, quality: int, tmp: Path) -> dict:
    codec = baselines.JpegCodec(quality)
    data = codec.encode(image)
    our_psnr = psnr(image, codec.decode(data))
    row = {"check": f"JPEG q={quality}", "frames": 1, "our_bytes": len(data), "our_psnr": our_psnr, "ok": True,
           "settings": f"cjpeg -quality {quality}{' -optimize' if codec.optimize else ''} -sample 2x2"}
    if shutil.which("cjpeg"):
        ppm = tmp / "in.ppm"
        cv2.imwrite(str(ppm), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cmd = ["cjpeg", "-quality", str(quality), "-sample", "2x2"] + (["-optimize"] if codec.optimize else [])
        cli = subprocess.run(cmd + [str(ppm)], capture_output=True, check=True).stdout
        cli_psnr = psnr(image, codec.decode(cli))
        row.update(cli_bytes=len(cli), bytes_diff=len(cli) / len(data) - 1, cli_psnr=cli_psnr,
                   psnr_diff=cli_psnr - our_psnr)
        row["ok"] = abs(row["bytes_diff"]) <= BYTES_TOLERANCE and abs(row["psnr_diff"]) <= PSNR_TOLERANCE_DB
    if shutil.which("ffmpeg"):
        (tmp / "ours.jpg").write_bytes(data)
        dec = _ffmpeg_decode_rgb(tmp / "ours.jpg", None, tmp, image.shape[1], image.shape[0], 1)[0]
        row["cli_swscale_rgb_psnr"] = psnr(image, dec)
    return row


def check_webp(image: np.ndarray, quality: int, tmp: Path) -> list[dict]:
    codec = baselines.WebpCodec(quality)
    data = codec.encode(image)
    our_psnr = psnr(image, codec.decode(data))
    png = tmp / "in.png"
    cv2.imwrite(str(png), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    rows = []
    tools = []
    if shutil.which("cwebp"):
        tools.append(("cwebp", ["cwebp", "-quiet", "-q", str(quality), "-m", str(codec.method), str(png),
                                "-o", str(tmp / "cwebp.webp")], tmp / "cwebp.webp"))
    if shutil.which("ffmpeg"):
        tools.append(("ffmpeg", ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(png), "-pix_fmt",
                                 "bgra", "-c:v", "libwebp", "-quality", str(quality), "-compression_level",
                                 str(codec.method), str(tmp / "ffmpeg.webp")], tmp / "ffmpeg.webp"))
    for tool, cmd, path in tools:
        _run(cmd)
        cli = path.read_bytes()
        cli_psnr = psnr(image, codec.decode(cli))
        shown = [a for a in cmd if not a.startswith(str(tmp))]
        row = {"check": f"WebP q={quality} ({tool})", "frames": 1, "settings": " ".join(shown),
               "our_bytes": len(data), "cli_bytes": len(cli), "bytes_diff": len(cli) / len(data) - 1,
               "our_psnr": our_psnr, "cli_psnr": cli_psnr, "psnr_diff": cli_psnr - our_psnr}
        row["ok"] = abs(row["bytes_diff"]) <= BYTES_TOLERANCE and abs(row["psnr_diff"]) <= PSNR_TOLERANCE_DB
        rows.append(row)
    return rows


def video_frames(path: str, fps: float, count: int) -> list[np.ndarray]:
    """``count`` frames of a video resampled to ``fps`` (nearest source frame, as ``roi-codec make-bag``)."""
    import av

    frames = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        src_fps = float(stream.average_rate or fps)
        for index, frame in enumerate(container.decode(stream)):
            if len(frames) >= count:
                break
            target = round(len(frames) * src_fps / fps)
            if index == target:
                frames.append(frame.to_ndarray(format="rgb24"))
    return frames


def even(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2])


def run_checks(image: np.ndarray, video: list[np.ndarray], tmp: Path) -> list[dict]:
    image = even(image)
    h, w = image.shape[:2]
    boxes = np.array([[w * 0.2, h * 0.3, w * 0.45, h * 0.8], [w * 0.6, h * 0.4, w * 0.75, h * 0.7]])
    rows = []
    have_ffmpeg = shutil.which("ffmpeg") is not None
    if have_ffmpeg:
        intra = [
            ("x264 420 intra crf=30", lambda: baselines.VideoIntraCodec("x264", 30)),
            ("x264 444 intra crf=30", lambda: baselines.VideoIntraCodec("x264", 30, "yuv444p")),
            ("x265 420 intra crf=30", lambda: baselines.VideoIntraCodec("x265", 30)),
            ("x264 420 ROI q-0.2 intra crf=30", lambda: baselines.VideoIntraCodec("x264", 30, roi_qoffset=-0.2)),
        ]
        for name, factory in intra:
            rows.append(check_x26x(name, factory, [image], boxes, tmp))
        if video:
            clip = [even(f) for f in video]
            vh, vw = clip[0].shape[:2]
            vboxes = np.array([[vw * 0.4, vh * 0.4, vw * 0.6, vh * 0.7]])
            streams = [
                ("x264 IPPP veryfast k10 crf=28", lambda: baselines.VideoStreamCodec("x264", 28, keyint=10)),
                ("x265 IPPP veryfast kinf crf=28", lambda: baselines.VideoStreamCodec("x265", 28)),
                ("x264 IPPP veryfast k10 ROI q-0.3 crf=28",
                 lambda: baselines.VideoStreamCodec("x264", 28, keyint=10, roi_qoffset=-0.3)),
            ]
            for name, factory in streams:
                rows.append(check_x26x(name, factory, clip, vboxes, tmp))
    rows.append(check_jpeg(image, 50, tmp))
    rows += check_webp(image, 50, tmp)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image")
    parser.add_argument("--video")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if shutil.which("ffmpeg") is None:
        print("ffmpeg not found (apt-get install ffmpeg): only the cjpeg/cwebp rows run", file=sys.stderr)
    video = video_frames(args.video, args.fps, args.frames) if args.video else []
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_checks(read_image_rgb(args.image), video, Path(tmp))
    print("| check | frames | our bytes | CLI bytes | diff | our PSNR | CLI PSNR | diff | CLI decodes our planes "
          "| CLI's own RGB PSNR | ok |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        def f(key, fmt):
            return format(r[key], fmt) if key in r else "–"
        ident = {True: "identical", False: "DIFFERENT"}.get(r.get("cli_decode_identical"), "–")
        print(f"| {r['check']} | {r['frames']} | {r['our_bytes']} | {f('cli_bytes', 'd')} | {f('bytes_diff', '+.2%')} "
              f"| {r['our_psnr']:.3f} | {f('cli_psnr', '.3f')} | {f('psnr_diff', '+.3f')} | {ident} "
              f"| {f('cli_swscale_rgb_psnr', '.3f')} | {'yes' if r['ok'] else 'NO'} |")
    for r in rows:
        if "settings" in r:
            print(f"  {r['check']}: {r['settings']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1, default=float))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
