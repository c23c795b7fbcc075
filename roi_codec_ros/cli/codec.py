"""``roi-codec encode | decode | info | demo``: image files <-> ``.rcb`` bitstreams through ``RoiCodec``.

    roi-codec encode in.png out.rcb --rate 0.5 --roi-weight 8 --boxes 10,20,200,180 [--detector yolov8n.pt]
    roi-codec decode out.rcb out.png
    roi-codec info out.rcb
    roi-codec demo [--detector yolov8n.pt] [--rates 0.2,0.5,0.9] [--roi-weight 16] [--out DIR]
    roi-codec engines [--json]       (which coding engines run on this machine, and why not)

Outputs are written whole or not at all (a temporary file in the same folder, then a rename).
Exit codes: 0 success, 1 the input could not be read/decoded (bad image, ``BitstreamError``, missing or damaged
model or detector file) or an output could not be written, 2 bad command line.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from roi_codec_ros.files import sample_images

from .common import (
    CliError,
    add_model_args,
    add_roi_args,
    check_detector,
    load_codec,
    load_detector,
    parse_box,
    rate_list,
    read_boxes_file,
    read_bytes,
    read_image,
    roi_config,
    set_threads,
    write_bytes,
    write_image,
)

# Hand-placed boxes of the people and the bus in the sample images (roi_codec_ros.files.SAMPLE_IMAGES): the demo shows the ROI without detector weights.
SAMPLE_ROIS = Path(__file__).resolve().parents[1] / "data" / "sample_rois.json"
DEMO_PANEL_HEIGHT = 540  # overlay PNG: each of the three panels scaled to this height

__all__ = ["CliError", "build_parser", "main", "read_boxes_file", "sample_rois"]


def _add_detector_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", metavar="WEIGHTS",
                   help="ultralytics YOLO .pt: its features go to the encoder and its boxes into the ROI mask")
    p.add_argument("--strict-detector", action="store_true",
                   help="fail (instead of warning) when the detector is not the one the model was trained with")
    add_roi_args(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roi-codec", description="Encode/decode images with the ROI-aware codec.")
    sub = parser.add_subparsers(dest="command", required=True)

    enc = sub.add_parser("encode", help="encode an image file into a .rcb bitstream")
    enc.add_argument("input", help="image file (PNG, JPEG, ...)")
    enc.add_argument("output", help="bitstream file to write (.rcb)")
    enc.add_argument("--rate", type=float, default=0.5,
                     help="rate knob in [0, 1], 1 = most bits (default: %(default)s)")
    enc.add_argument("--roi-weight", type=float, default=1.0,
                     help="ROI weight alpha >= 1; 1 = uniform quality, larger = ROI errors weigh more "
                          "(default: %(default)s)")
    enc.add_argument("--roi-gain", type=float, default=1.0,
                     help="explicit latent scaling in [1, 8]: the ROI's latent quantisation step divided by this "
                          "(a gain map in the frame, format version 2); 1 = off (default: %(default)s)")
    enc.add_argument("--boxes", type=parse_box, nargs="+", action="extend", default=[], metavar="X1,Y1,X2,Y2",
                     help="ROI boxes in pixels")
    enc.add_argument("--boxes-file", action="append", default=[], help="file with one x1,y1,x2,y2 box per line")
    _add_detector_args(enc)
    add_model_args(enc)

    dec = sub.add_parser("decode", help="decode a .rcb bitstream into an image file")
    dec.add_argument("input", help="bitstream file (.rcb)")
    dec.add_argument("output", help="image file to write (format from the suffix, e.g. .png)")
    add_model_args(dec)

    info = sub.add_parser("info", help="print the header of a .rcb bitstream")
    info.add_argument("input", help="bitstream file (.rcb)")
    info.add_argument("--json", action="store_true", help="print JSON")

    engines = sub.add_parser("engines", help="the coding engines and whether each runs on this machine (and why not)")
    engines.add_argument("--json", action="store_true", help="print JSON")

    demo = sub.add_parser("demo", help="ultralytics' bundled bus.jpg and zidane.jpg at roi weight 1 vs a high weight")
    demo.add_argument("--rates", type=rate_list, default=[0.5], help="comma-separated rates in [0, 1] (default: 0.5)")
    demo.add_argument("--roi-weight", type=float, default=None,
                      help="the high ROI weight compared with roi weight 1 (default: the model's maximum)")
    demo.add_argument("--out", help="folder for the overlay PNGs (default: roi_codec_demo in the temporary folder)")
    demo.add_argument("--save-decoded", action="store_true", help="also write every decoded image to --out")
    _add_detector_args(demo)
    add_model_args(demo)
    return parser


# --- helpers --------------------------------------------------------------------------------------------------


def roi_inputs(args, image: np.ndarray, detections, boxes) -> tuple[np.ndarray | None, object]:
    """ROI mask (None: no ROI box at all, uniform quality) and the ROI selection for one image."""
    from roi_codec_ros.detector import select_roi

    config = roi_config(args, static_boxes=boxes)
    selection = select_roi(detections, image.shape[:2], config)
    return (None if selection.empty else selection.mask()), selection


def _encode(codec, image, mask, features, rate, roi_weight, roi_gain=1.0):
    try:
        return codec.encode(image, roi_mask=mask, features=features, rate=rate, roi_weight=roi_weight, roi_gain=roi_gain)
    except ValueError as exc:  # knobs out of range, image too large, feature shapes of another detector
        raise CliError(f"cannot encode: {exc}") from exc


def _decode(codec, data: bytes, what: str):
    from roi_codec_ros.codec import BitstreamError

    try:
        return codec.decode(data)
    except BitstreamError as exc:
        raise CliError(f"cannot decode {what}: {exc}") from exc


def _codec_and_detector(args):
    set_threads(args.threads)
    codec = load_codec(args.model, args.device)
    detector = load_detector(args.detector, args.device) if getattr(args, "detector", None) else None
    set_threads(args.threads)  # loading a detector may change torch's thread count
    check_detector(codec, detector, getattr(args, "strict_detector", False), f"roi-codec {args.command}")
    return codec, detector


# --- commands -------------------------------------------------------------------------------------------------


def cmd_encode(args) -> int:
    boxes = list(args.boxes)
    for path in args.boxes_file:
        boxes += read_boxes_file(path)
    image = read_image(args.input)
    codec, detector = _codec_and_detector(args)
    detections = features = None
    if detector is not None:
        result = detector(image)
        detections, features = result.detections, result.features
    mask, _ = roi_inputs(args, image, detections, boxes)
    encoded = _encode(codec, image, mask, features, args.rate, args.roi_weight, args.roi_gain)
    write_bytes(args.output, encoded.data)
    h, w = image.shape[:2]
    roi = f", ROI {100 * float(mask.mean()):.1f}% of pixels" if mask is not None else ", no ROI"
    roi += f", latent gain {encoded.roi_gain:g}" if encoded.roi_gain != 1.0 else ""
    print(f"{args.output}: {w}x{h}, {encoded.num_bytes} bytes, {encoded.bpp:.4f} bpp, rate {encoded.rate:.4f} "
          f"(beta {encoded.beta:.4g}), roi weight {encoded.roi_weight:g}{roi}, encode {encoded.encode_ms:.1f} ms")
    return 0


def cmd_decode(args) -> int:
    data = read_bytes(args.input)
    set_threads(args.threads)
    codec = load_codec(args.model, args.device)
    start = time.perf_counter()
    image = _decode(codec, data, args.input)
    elapsed = (time.perf_counter() - start) * 1e3
    write_image(args.output, image)
    print(f"{args.output}: {image.shape[1]}x{image.shape[0]} from {len(data)} bytes, decode {elapsed:.1f} ms")
    return 0


def cmd_info(args) -> int:
    from roi_codec_ros.codec.bitstream import BitstreamError, header_info

    data = read_bytes(args.input)
    try:
        info = header_info(data)
    except BitstreamError as exc:
        raise CliError(f"{args.input}: {exc}") from exc
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{args.input}: roi_codec bitstream, format version {info['format_version']}")
    padded_h, padded_w = info["padded_size"]
    print(f"  image        {info['width']}x{info['height']} (padded to {padded_w}x{padded_h},"
          f" multiple {info['pad_multiple']})")
    print(f"  model        {info['model_hash']}")
    print(f"  rate         {info['rate']:.4f} (code {info['rate_code']})")
    print(f"  encoder had  detector features: {'yes' if info['had_features'] else 'no'}, "
          f"ROI mask: {'yes' if info['had_roi_mask'] else 'no'}")
    print(f"  latents      y {info['y_shape']}, z {info['z_shape']}, w {info['w_shape']}")
    if info["latent_gain"]:
        gain = info["latent_gain"]
        print(f"  latent gain  up to {gain['top_gain']:g} in {gain['levels']} levels, cells per level {gain['cells_per_level']}")
    sizes = ", ".join(f"{k} {v}" for k, v in info["payload_bytes"].items())
    print(f"  bytes        {info['total_bytes']} total ({sizes}), {info['bpp']:.4f} bpp")
    return 0


# --- demo -----------------------------------------------------------------------------------------------------


def demo_images() -> list[Path]:
    try:
        return sample_images()
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from exc


def sample_rois(path: str | Path = SAMPLE_ROIS) -> dict[str, tuple[tuple[int, int], object]]:
    """The hand-placed boxes of the demo images: file name -> ((width, height), Detections with class names)."""
    from roi_codec_ros.detector import Detections

    try:
        data = json.loads(Path(path).read_text())
        out = {}
        for name, record in data["images"].items():
            objects = record["objects"]
            detections = Detections.from_boxes([o["box"] for o in objects], labels=[o["label"] for o in objects])
            out[name] = (tuple(int(v) for v in record["size"]), detections)
        return out
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CliError(f"cannot read the demo's ROI boxes {path}: {exc}") from exc


def _fmt(value: float, width: int = 6, sign: bool = False) -> str:
    if not np.isfinite(value):
        return f"{'-':>{width}}"
    return f"{value:>+{width}.2f}" if sign else f"{value:>{width}.2f}"


def _panel(image: np.ndarray, caption: str, height: int) -> np.ndarray:
    """``image`` scaled to ``height`` rows under a caption bar (one text line per line of ``caption``)."""
    import cv2

    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    scaled = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if height < h else cv2.INTER_LINEAR)
    lines = caption.splitlines()
    bar = np.full((8 + 20 * len(lines), width, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(bar, line, (6, 20 + 20 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, scaled], axis=0)


def _region_psnr(image: np.ndarray, decoded: np.ndarray, region: np.ndarray | None) -> float:
    from roi_codec_ros.evaluation.metrics import psnr

    return psnr(image, decoded, region) if region is not None and region.any() else float("nan")


def _rate_for_bytes(measure, target: int, rate: float, got: int, tolerance: float = 0.03, steps: int = 3):
    """Secant search of the rate at which ``measure(rate) -> (bytes, result)`` gives ``target`` bytes (bytes grow
    with the rate). Starts from one measured point; returns (rate, bytes, result) of the closest try, or None."""
    def log(value: int) -> float:
        return float(np.log(max(value, 1)))

    points = [(rate, got)]
    best = None
    probe = min(1.0, rate + 0.25) if got < target else max(0.0, rate - 0.25)
    for _ in range(steps):
        if any(abs(probe - r) < 1e-4 for r, _ in points):
            break
        size, result = measure(probe)
        points.append((probe, size))
        if best is None or abs(size - target) < abs(best[1] - target):
            best = (probe, size, result)
        if abs(size - target) <= tolerance * target:
            break
        (r0, b0), (r1, b1) = points[-2], points[-1]
        if log(b1) == log(b0):
            break
        probe = float(np.clip(r1 + (log(target) - log(b1)) * (r1 - r0) / (log(b1) - log(b0)), 0.0, 1.0))
    return best


def cmd_demo(args) -> int:
    from roi_codec_ros.detector.overlay import draw_overlay

    paths = demo_images()
    codec, detector = _codec_and_detector(args)
    low_w, high_w = codec.roi_weight_range
    high = float(args.roi_weight) if args.roi_weight is not None else float(high_w)
    if not 1.0 < high <= high_w:
        raise CliError(f"--roi-weight is the high weight compared with 1: give one in (1, {high_w:g}], got {high:g}")
    samples = sample_rois() if detector is None else {}
    out_dir = Path(args.out) if args.out else Path(tempfile.gettempdir()) / "roi_codec_demo"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create {out_dir}: {exc.strerror or exc}") from exc
    roi_from = (f"detector {args.detector}" if detector is not None else
                f"hand-placed boxes ({SAMPLE_ROIS.name}; --detector WEIGHTS for detector boxes and features)")
    print(f"model {codec.model_id[:16]} ({codec.info.get('path', '?')}), device {codec.device}")
    print(f"ROI: {roi_from}")
    print(f"roi weight 1 = uniform quality; {high:g} = ROI errors weigh {high:g}x as much as background errors")
    print(f"row 1 of an image: both at the same rate; row 2: roi weight {high:g} at the rate that spends about the "
          "bytes of roi weight 1")
    cells = f"{'rate':>4} {'bytes':>7} {'ROI dB':>6} {'bg dB':>6}"
    header = f"{'image':<10} {'size':>9} {'ROI%':>4} | {cells} | {cells} | {'bytes':>6} {'ROI dB':>6} {'bg dB':>6}"
    cut = header.index("|")
    print(f"{'':<{cut}}|{'roi weight 1':^{len(cells) + 2}}|{f'roi weight {high:g}':^{len(cells) + 2}}|"
          f"{f'{high:g} vs 1':^21}")
    print(header)
    print("-" * len(header))
    written = []
    for path in paths:
        image = read_image(path)
        h, w = image.shape[:2]
        features, detector_ms = None, None
        if detector is not None:
            result = detector(image)
            detections, features, detector_ms = result.detections, result.features, result.latency_ms
        else:
            size, detections = samples.get(path.name, ((w, h), None))
            if size != (w, h):
                raise CliError(f"{path} is {w}x{h}, but the demo's ROI boxes are for {size[0]}x{size[1]}")
        mask, selection = roi_inputs(args, image, detections, [])
        roi = None if mask is None else mask >= 0.5
        background = None if roi is None else ~roi
        share = 100 * float(roi.mean()) if roi is not None else 0.0
        times = []

        def measure(rate: float, weight: float):
            encoded = _encode(codec, image, mask, features, rate, weight)
            start = time.perf_counter()
            decoded = _decode(codec, encoded.data, path.name)
            times.append((encoded.encode_ms, (time.perf_counter() - start) * 1e3))
            quality = (_region_psnr(image, decoded, roi), _region_psnr(image, decoded, background))
            return encoded.num_bytes, (quality, decoded)

        def cells_of(rate, size, quality):
            return f"{rate:>4.2f} {size:>7} {_fmt(quality[0])} {_fmt(quality[1])}"

        def delta(size, quality, base_size, base_quality):
            return (f"{f'{100 * (size - base_size) / base_size:+.0f}%':>6} {_fmt(quality[0] - base_quality[0], sign=True)} "
                    f"{_fmt(quality[1] - base_quality[1], sign=True)}")

        for rate in args.rates:
            b1, (q1, dec1) = measure(rate, 1.0)
            bh, (qh, dech) = measure(rate, high)
            lead = f"{path.name:<10} {f'{w}x{h}':>9} {share:>4.0f}"
            print(f"{lead} | {cells_of(rate, b1, q1)} | {cells_of(rate, bh, qh)} | {delta(bh, qh, b1, q1)}")
            same = _rate_for_bytes(lambda r: measure(r, high), b1, rate, bh) if mask is not None else None
            if same is not None:
                rate_s, bs_, (qs, _) = same
                print(f"{'':<{len(lead)}} | {'':<{len(cells)}} | {cells_of(rate_s, bs_, qs)} | {delta(bs_, qs, b1, q1)}")
            shown_mask = mask if mask is not None else np.zeros((h, w), np.float32)
            panels = [
                _panel(draw_overlay(image, selection.detections, shown_mask, roi_config(args)),
                       f"{path.name}: the ROI\n{'detector boxes' if detector is not None else 'hand-placed boxes'}",
                       DEMO_PANEL_HEIGHT),
                _panel(dec1, f"roi weight 1, rate {rate:.2f}: {b1} bytes\nROI {_fmt(q1[0], 0)} dB, "
                             f"background {_fmt(q1[1], 0)} dB", DEMO_PANEL_HEIGHT),
                _panel(dech, f"roi weight {high:g}, rate {rate:.2f}: {bh} bytes\nROI {_fmt(qh[0], 0)} dB, "
                             f"background {_fmt(qh[1], 0)} dB", DEMO_PANEL_HEIGHT),
            ]
            target = out_dir / f"{path.stem}_rate{rate:.2f}_roi.png"
            write_image(target, np.concatenate(panels, axis=1))
            written.append(target)
            if args.save_decoded:
                write_image(out_dir / f"{path.stem}_rate{rate:.2f}_w1.png", dec1)
                write_image(out_dir / f"{path.stem}_rate{rate:.2f}_w{high:g}.png", dech)
        if mask is None:
            print(f"{'':<10} (no ROI box selected with --classes {args.classes!r}: both weights give uniform quality)")
        enc, dec = np.median([t[0] for t in times]), np.median([t[1] for t in times])
        extra = f", detector {detector_ms:.0f} ms" if detector_ms is not None else ""
        print(f"{'':<10} (median encode {enc:.0f} ms, decode {dec:.0f} ms{extra})")
    print(f"overlay PNGs (ROI | roi weight 1 | roi weight {high:g}, same rate):")
    for target in written:
        print(f"  {target}")
    return 0


def cmd_engines(args) -> int:
    """Every engine name the encoder node's ``engine`` parameter takes, its format and whether it runs here (hardware
    encoders are probed: opened, one packet per frame, ROI side data honoured or not)."""
    from roi_codec_ros.engine import ENGINE_NAMES, NEURAL, engine_status
    from roi_codec_ros.engine.classical import ENGINES as CLASSICAL
    from roi_codec_ros.engine.hardware import SPECS, probe

    rows = []
    status = engine_status()
    for name in ENGINE_NAMES:
        fmt = "rcb1" if name == NEURAL else CLASSICAL.get(name) or SPECS[name].format
        row = {"engine": name, "format": fmt, "usable": status[name] is None, "reason": status[name] or ""}
        if name in SPECS and status[name] is None:
            row["roi"] = "honoured" if probe(SPECS[name])[1] else "ignored"
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        state = "usable" + (f" (ROI side data {row['roi']})" if "roi" in row else "") if row["usable"] else "not usable"
        print(f"{row['engine']:<13} {row['format']:<5} {state}{': ' + row['reason'] if row['reason'] else ''}")
    return 0


COMMANDS = {"encode": cmd_encode, "decode": cmd_decode, "info": cmd_info, "demo": cmd_demo, "engines": cmd_engines}


def main(argv: list[str] | None = None) -> int:
    """``argv[0]`` is the sub-command (``encode``, ``decode``, ``info``, ``demo``), as ``roi-codec`` passes it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        print(f"roi-codec {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
