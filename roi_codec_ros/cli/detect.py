"""``roi-codec detect``: run the detector adapter on images and write PNG overlays of boxes + ROI mask.

    roi-codec detect IMAGE_OR_FOLDER [...] --weights yolov8n.pt --out DIR [--classes car,person] [--margin 8]

Writes ``DIR/<name>.png`` per image and ``DIR/detections.json`` (boxes, scores, ROI fraction, latency), each file
whole or not at all. Exit codes: 0 success, 1 no image could be processed, 2 bad arguments, inputs or weights.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from roi_codec_ros.files import IMAGE_SUFFIXES, ImageReadError, read_image_rgb

from .common import CliError, add_roi_args, parse_box, roi_config, write_image, write_text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="roi-codec detect",
        description="Run the YOLO detector adapter on images; write PNGs with boxes (orange = ROI classes, grey = "
        "others) and the ROI mask (outside darkened) plus detections.json.",
    )
    p.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    p.add_argument("--out", required=True, help="output folder for the overlay PNGs")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--weights",
        help="the vehicle's ultralytics YOLO .pt (default: $ROI_CODEC_DETECTOR_WEIGHTS)",
    )
    src.add_argument("--random-init", metavar="YAML", help="UNTRAINED model from an ultralytics yaml (tests/demo only)")
    p.add_argument("--allow-download", action="store_true", help="allow downloading official weights by name when online")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument("--imgsz", type=int, default=640, help="detector input size, long side (default: 640)")
    p.add_argument("--square", action="store_true", help="pad to imgsz x imgsz instead of the minimum rectangle")
    p.add_argument("--conf", type=float, default=0.25, help="detector confidence threshold (default: 0.25)")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default: 0.7)")
    add_roi_args(p)
    p.add_argument("--static-box", type=parse_box, action="append", default=[], metavar="X1,Y1,X2,Y2",
                   help="always-ROI box in frame pixels (repeatable)")
    p.add_argument("--static-box-rel", type=parse_box, action="append", default=[], metavar="X1,Y1,X2,Y2",
                   help="always-ROI box as fractions of width/height (repeatable)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0 = leave as is; 1 is fastest on a machine busy with other work)")
    p.add_argument("--max-side", type=int, default=0, help="downscale overlays to this long side (0 = frame size)")
    p.add_argument("--limit", type=int, default=0, help="process at most this many images (0 = all)")
    return p


def collect_images(inputs: list[str]) -> list[Path]:
    """Files as given, folders expanded to their images (sorted); missing paths are an error."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such image or folder: {item}")
    return found


def _fail(message) -> int:
    print(f"roi-codec detect: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "detect":
        argv = argv[1:]
    args = build_parser().parse_args(argv)

    from roi_codec_ros.detector import DetectorAdapter, DetectorWeightsError, select_roi, unknown_classes
    from roi_codec_ros.detector.roi_mask import class_weight_keys
    from roi_codec_ros.detector.overlay import draw_overlay

    try:
        images = collect_images(args.inputs)
        config = roi_config(args, args.static_box, args.static_box_rel)
    except (FileNotFoundError, CliError) as e:
        return _fail(e)
    if not images:
        return _fail(f"no images found in {args.inputs}")
    if args.limit > 0:
        images = images[: args.limit]

    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    common = dict(device=args.device, imgsz=args.imgsz, conf=args.conf, iou=args.iou, rect=not args.square)
    try:
        if args.random_init:
            det = DetectorAdapter.random_init(args.random_init, **common)
            print("roi-codec detect: WARNING: untrained random-init model, detections are meaningless", file=sys.stderr)
        else:  # None: $ROI_CODEC_DETECTOR_WEIGHTS, else a message on how to provide weights
            det = DetectorAdapter.from_weights(args.weights, allow_download=args.allow_download, **common)
    except (DetectorWeightsError, ValueError) as e:
        return _fail(e)
    missing = unknown_classes(det.names, config.classes)
    if missing:
        print(f"roi-codec detect: WARNING: the model has no class {missing} (ignored)", file=sys.stderr)
    missing = unknown_classes(det.names, class_weight_keys(config))
    if missing:
        print(f"roi-codec detect: WARNING: the model has no class {missing} (--class-weights; ignored)", file=sys.stderr)
    print(f"detector: {det}")

    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        records, latencies, used = [], [], set()
        for path in images:
            try:
                frame = read_image_rgb(path)
            except ImageReadError as e:
                print(f"roi-codec detect: skipping: {e}", file=sys.stderr)
                continue
            result = det(frame)
            mask = select_roi(result.detections, frame.shape[:2], config).mask()
            picture = draw_overlay(frame, result.detections, mask, config)
            if args.max_side > 0 and max(picture.shape[:2]) > args.max_side:
                from PIL import Image

                s = args.max_side / max(picture.shape[:2])
                size = (max(1, round(picture.shape[1] * s)), max(1, round(picture.shape[0] * s)))
                picture = np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.LANCZOS))
            name = path.stem
            while name in used:
                name += "_"
            used.add(name)
            target = out_dir / f"{name}.png"
            write_image(target, picture, optimize=True)
            latencies.append(result.latency_ms)
            record = {
                "file": str(path),
                "overlay": str(target),
                "width": int(frame.shape[1]),
                "height": int(frame.shape[0]),
                "latency_ms": round(result.latency_ms, 2),
                "roi_fraction": round(float(mask.mean()), 4),
                "detections": result.detections.to_list(),
            }
            records.append(record)
            print(
                f"{path.name}: {len(result.detections)} detections, ROI {100 * record['roi_fraction']:.1f}% of frame, "
                f"{result.latency_ms:.1f} ms -> {target}"
            )
        summary = {
            "detector": det.detector_id,
            "weights": det.weights_path,
            "weights_sha256": det.weights_sha256,
            "imgsz": args.imgsz,
            "device": str(det.device),
            "roi_config": {
                "classes": None if config.classes is None else list(config.classes),
                "confidence": config.confidence,
                "margin_px": config.margin_px,
                "static_boxes": [list(b) for b in config.static_boxes],
                "static_boxes_rel": [list(b) for b in config.static_boxes_rel],
                "soft_edge_px": config.soft_edge_px,
            },
            "images": records,
        }
        write_text(out_dir / "detections.json", json.dumps(summary, indent=1))
    except (CliError, OSError) as e:
        return _fail(e)
    if latencies:
        steady = latencies[1:] or latencies  # the first call includes one-off allocations
        print(
            f"{len(records)} images, latency median {statistics.median(steady):.1f} ms "
            f"(first call {latencies[0]:.1f} ms) on {det.device}; overlays in {out_dir}"
        )
    return 0 if records else 1


if __name__ == "__main__":
    sys.exit(main())
