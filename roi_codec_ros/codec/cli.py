"""``roi-codec encode | decode | info | demo``: image files <-> ``.rcb`` bitstreams through ``RoiCodec``.

    roi-codec encode in.png out.rcb --rate 0.5 --roi-weight 8 --boxes 10,20,200,180 [--detector yolov8n.pt]
    roi-codec decode out.rcb out.png
    roi-codec info out.rcb
    roi-codec demo [--detector yolov8n.pt] [--rates 0.2,0.5,0.9]

Exit codes: 0 success, 1 the input could not be read/decoded (bad image, ``BitstreamError``, missing model or
detector file), 2 bad command line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DEMO_IMAGES = ("bus.jpg", "zidane.jpg")  # bundled with ultralytics (ultralytics/assets)


class CliError(Exception):
    """An error to print as one line and exit 1 (bad input file, model, detector)."""


# --- argument parsing -----------------------------------------------------------------------------------------


def _box(text: str) -> tuple[float, float, float, float]:
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(float(v) for v in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(np.isfinite(values)) or values[2] < values[0] or values[3] < values[1]:
        raise argparse.ArgumentTypeError(f"a box is x1,y1,x2,y2 in pixels with x2>=x1 and y2>=y1, got {text!r}")
    return values  # type: ignore[return-value]


def _rates(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"rates are comma-separated numbers in [0, 1], got {text!r}")
    return values


def read_boxes_file(path: str) -> list[tuple[float, float, float, float]]:
    """One box per line, ``x1,y1,x2,y2`` (commas and/or spaces); blank lines and ``#`` comments ignored."""
    boxes = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise CliError(f"cannot read boxes file {path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            boxes.append(_box(",".join(line.replace(",", " ").split())))
        except argparse.ArgumentTypeError as exc:
            raise CliError(f"{path}:{number}: {exc}") from exc
    return boxes


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="model file (default: the model shipped with the package; 'random' = untrained test model)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="where the transforms run")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")


def _add_roi_args(p: argparse.ArgumentParser) -> None:
    from roi_codec_ros.detector import DEFAULT_ROI_CLASSES, RoiMaskConfig

    d = RoiMaskConfig()
    p.add_argument("--detector", metavar="WEIGHTS",
                   help="ultralytics YOLO .pt: its features go to the encoder and its boxes into the ROI mask")
    p.add_argument("--classes", default=",".join(DEFAULT_ROI_CLASSES),
                   help="detector classes that are ROI, comma-separated names or ids, 'all' (default: %(default)s)")
    p.add_argument("--roi-conf", type=float, default=d.confidence,
                   help="min detector score for ROI (default: %(default)s)")
    p.add_argument("--margin", type=float, default=d.margin_px,
                   help="pixels added around detector boxes (default: %(default)s)")
    p.add_argument("--soft-edge", type=float, default=d.soft_edge_px,
                   help="soft ROI edge width in pixels (default: %(default)s)")


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
    enc.add_argument("--boxes", type=_box, nargs="+", action="extend", default=[], metavar="X1,Y1,X2,Y2",
                     help="ROI boxes in pixels")
    enc.add_argument("--boxes-file", action="append", default=[], help="file with one x1,y1,x2,y2 box per line")
    _add_roi_args(enc)
    _add_model_args(enc)

    dec = sub.add_parser("decode", help="decode a .rcb bitstream into an image file")
    dec.add_argument("input", help="bitstream file (.rcb)")
    dec.add_argument("output", help="image file to write (format from the suffix, e.g. .png)")
    _add_model_args(dec)

    info = sub.add_parser("info", help="print the header of a .rcb bitstream")
    info.add_argument("input", help="bitstream file (.rcb)")
    info.add_argument("--json", action="store_true", help="print JSON")

    demo = sub.add_parser("demo", help="encode+decode ultralytics' bundled bus.jpg and zidane.jpg")
    demo.add_argument("--rates", type=_rates, default=[0.5], help="comma-separated rates in [0, 1] (default: 0.5)")
    demo.add_argument("--roi-weight", type=float, default=1.0,
                      help="ROI weight (with --detector) (default: %(default)s)")
    demo.add_argument("--out", help="folder for the decoded PNGs (default: do not write them)")
    _add_roi_args(demo)
    _add_model_args(demo)
    return parser


# --- helpers --------------------------------------------------------------------------------------------------


def _set_threads(threads: int) -> None:
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def load_codec(model: str | None, device: str):
    from . import RoiCodec

    try:
        return RoiCodec.load(model, device=device)
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as exc:
        raise CliError(f"cannot load model {model or '(default)'}: {exc}") from exc


def load_detector(weights: str, device: str):
    from roi_codec_ros.detector import DetectorAdapter

    try:
        return DetectorAdapter.from_weights(weights, device=device)
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from exc


def read_image(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise CliError(f"cannot read image {path}: {exc}") from exc


def write_image(path: str, image: np.ndarray) -> None:
    from PIL import Image

    try:
        Image.fromarray(image).save(path)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot write image {path}: {exc}") from exc


def read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _parse_classes(text: str) -> tuple[str | int, ...] | None:
    if text.strip().lower() == "all":
        return None
    return tuple(int(c) if c.isdigit() else c for c in (c.strip() for c in text.split(",")) if c)


def roi_inputs(args, image: np.ndarray, detector, boxes) -> tuple[np.ndarray | None, list | None, dict]:
    """ROI mask and detector features for one image: (mask or None, features or None, facts to print)."""
    from roi_codec_ros.detector import RoiMaskConfig, roi_mask_from_detections

    detections, features, facts = None, None, {}
    if detector is not None:
        result = detector(image)
        detections, features = result.detections, result.features
        facts["detections"] = len(detections)
        facts["detector_ms"] = result.latency_ms
    if detector is None and not boxes:
        return None, None, facts
    try:
        config = RoiMaskConfig(
            classes=_parse_classes(args.classes), confidence=args.roi_conf, margin_px=args.margin,
            static_boxes=tuple(boxes), soft_edge_px=args.soft_edge,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    mask = roi_mask_from_detections(detections, image.shape[:2], config)
    facts["roi_fraction"] = float(mask.mean())
    return mask, features, facts


def _encode(codec, image, mask, features, rate, roi_weight):
    try:
        return codec.encode(image, roi_mask=mask, features=features, rate=rate, roi_weight=roi_weight)
    except ValueError as exc:  # knobs out of range, image too large, feature shapes of another detector
        raise CliError(f"cannot encode: {exc}") from exc


# --- commands -------------------------------------------------------------------------------------------------


def cmd_encode(args) -> int:
    boxes = list(args.boxes)
    for path in args.boxes_file:
        boxes += read_boxes_file(path)
    image = read_image(args.input)
    _set_threads(args.threads)
    codec = load_codec(args.model, args.device)
    detector = load_detector(args.detector, args.device) if args.detector else None
    _set_threads(args.threads)  # loading a detector may change torch's thread count
    mask, features, facts = roi_inputs(args, image, detector, boxes)
    encoded = _encode(codec, image, mask, features, args.rate, args.roi_weight)
    try:
        Path(args.output).write_bytes(encoded.data)
    except OSError as exc:
        raise CliError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    h, w = image.shape[:2]
    roi = f", ROI {100 * facts['roi_fraction']:.1f}% of pixels" if "roi_fraction" in facts else ", no ROI"
    print(f"{args.output}: {w}x{h}, {encoded.num_bytes} bytes, {encoded.bpp:.4f} bpp, rate {encoded.rate:.4f} "
          f"(beta {encoded.beta:.4g}), roi weight {encoded.roi_weight:g}{roi}, encode {encoded.encode_ms:.1f} ms")
    return 0


def cmd_decode(args) -> int:
    from .bitstream import BitstreamError

    data = read_bytes(args.input)
    _set_threads(args.threads)
    codec = load_codec(args.model, args.device)
    start = time.perf_counter()
    try:
        image = codec.decode(data)
    except BitstreamError as exc:
        raise CliError(f"cannot decode {args.input}: {exc}") from exc
    elapsed = (time.perf_counter() - start) * 1e3
    write_image(args.output, image)
    print(f"{args.output}: {image.shape[1]}x{image.shape[0]} from {len(data)} bytes, decode {elapsed:.1f} ms")
    return 0


def cmd_info(args) -> int:
    from .bitstream import BitstreamError, header_info

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
    sizes = ", ".join(f"{k} {v}" for k, v in info["payload_bytes"].items())
    print(f"  bytes        {info['total_bytes']} total ({sizes}), {info['bpp']:.4f} bpp")
    return 0


def demo_images() -> list[Path]:
    try:
        from ultralytics.utils import ASSETS
    except ImportError as exc:
        raise CliError("the demo images ship with ultralytics, which is not installed") from exc
    paths = [Path(ASSETS) / name for name in DEMO_IMAGES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise CliError(f"demo images missing from the ultralytics install: {', '.join(missing)}")
    return paths


def cmd_demo(args) -> int:
    from roi_codec_ros.evaluation.metrics import psnr

    paths = demo_images()
    _set_threads(args.threads)
    codec = load_codec(args.model, args.device)
    detector = load_detector(args.detector, args.device) if args.detector else None
    _set_threads(args.threads)
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    print(f"model {codec.model_id[:16]} ({codec.info.get('path', '?')}), device {codec.device}, "
          f"detector {'none' if detector is None else args.detector}, roi weight {args.roi_weight:g}")
    header = (f"{'image':<11} {'size':>9} {'rate':>5} {'bytes':>8} {'bpp':>7} {'PSNR':>6} {'ROI':>6} {'bg':>6}"
              f" {'enc ms':>8} {'dec ms':>8}")
    print(header)
    print("-" * len(header))
    for path in paths:
        image = read_image(str(path))
        mask, features, facts = roi_inputs(args, image, detector, [])
        roi = None if mask is None else mask >= 0.5
        for rate in args.rates:
            encoded = _encode(codec, image, mask, features, rate, args.roi_weight if mask is not None else 1.0)
            start = time.perf_counter()
            decoded = codec.decode(encoded.data)
            decode_ms = (time.perf_counter() - start) * 1e3
            roi_psnr = psnr(image, decoded, roi) if roi is not None and roi.any() else float("nan")
            bg_psnr = psnr(image, decoded, ~roi) if roi is not None and (~roi).any() else float("nan")
            h, w = image.shape[:2]
            print(f"{path.name:<11} {f'{w}x{h}':>9} {rate:>5.2f} {encoded.num_bytes:>8} {encoded.bpp:>7.4f} "
                  f"{psnr(image, decoded):>6.2f} {roi_psnr:>6.2f} {bg_psnr:>6.2f} "
                  f"{encoded.encode_ms:>8.1f} {decode_ms:>8.1f}")
            if out_dir:
                write_image(str(out_dir / f"{path.stem}_rate{rate:.2f}.png"), decoded)
        if facts:
            extra = ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in facts.items())
            print(f"{'':<11} ({extra})")
    return 0


COMMANDS = {"encode": cmd_encode, "decode": cmd_decode, "info": cmd_info, "demo": cmd_demo}


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
