"""What the sub-commands share: argument types, ROI options, loading a codec/detector, reading inputs and writing
outputs (whole or not at all), all turning failures into one-line ``CliError`` messages."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from roi_codec_ros.files import ImageReadError, read_image_rgb, save_image_atomic, write_bytes_atomic


class CliError(Exception):
    """An error to print as one line and exit with the command's error code (bad input file, model, detector)."""


# --- argument types -------------------------------------------------------------------------------------------


def parse_box(text: str) -> tuple[float, float, float, float]:
    """argparse type: ``x1,y1,x2,y2`` in pixels (or fractions), finite, x2 >= x1 and y2 >= y1."""
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(float(v) for v in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(np.isfinite(values)) or values[2] < values[0] or values[3] < values[1]:
        raise argparse.ArgumentTypeError(f"a box is x1,y1,x2,y2 with x2>=x1 and y2>=y1, got {text!r}")
    return values  # type: ignore[return-value]


def float_list(text: str) -> list[float]:
    """argparse type: comma-separated finite numbers."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return values


def rate_list(text: str) -> list[float]:
    """argparse type: comma-separated rates in [0, 1]."""
    try:
        values = float_list(text)
    except argparse.ArgumentTypeError:
        values = []
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"rates are comma-separated numbers in [0, 1], got {text!r}")
    return values


def read_boxes_file(path: str) -> list[tuple[float, float, float, float]]:
    """One box per line, ``x1,y1,x2,y2`` (commas and/or spaces); blank lines and ``#`` comments ignored."""
    boxes = []
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read boxes file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            boxes.append(parse_box(",".join(line.replace(",", " ").split())))
        except argparse.ArgumentTypeError as exc:
            raise CliError(f"{path}:{number}: {exc}") from exc
    return boxes


# --- ROI options ----------------------------------------------------------------------------------------------


def add_roi_args(p: argparse.ArgumentParser) -> None:
    """``--classes --roi-conf --margin --soft-edge --class-weights`` with RoiMaskConfig's defaults."""
    from roi_codec_ros.detector import DEFAULT_ROI_CLASSES, RoiMaskConfig

    d = RoiMaskConfig()
    p.add_argument("--classes", default=",".join(DEFAULT_ROI_CLASSES),
                   help="classes that are ROI, comma-separated names or ids, 'all' (default: %(default)s)")
    p.add_argument("--roi-conf", type=float, default=d.confidence,
                   help="min detector score for ROI (default: %(default)s)")
    p.add_argument("--margin", type=float, default=d.margin_px,
                   help="pixels added around detector boxes (default: %(default)s)")
    p.add_argument("--soft-edge", type=float, default=d.soft_edge_px,
                   help="soft ROI edge width in pixels (default: %(default)s)")
    add_class_weights_arg(p)


def add_class_weights_arg(p) -> None:
    """``--class-weights TEXT``: per-class ROI priority (RoiMaskConfig.class_weights)."""
    p.add_argument("--class-weights", default="", metavar="TEXT",
                   help="per-class ROI priority, comma-separated class=weight (weight in [0, 1]; unlisted classes "
                        "1.0), e.g. 'traffic light=1.0,person=1.0,car=0.5': the mask inside that class's boxes (an "
                        "intermediate ROI quality; 0 = not ROI)")


def roi_config(args, static_boxes=(), static_boxes_rel=()):
    """RoiMaskConfig from ``add_roi_args`` options; bad values are a CliError."""
    from roi_codec_ros.detector import RoiMaskConfig, parse_classes
    from roi_codec_ros.detector.roi_mask import parse_class_weights

    try:
        return RoiMaskConfig(
            classes=parse_classes(args.classes), confidence=args.roi_conf, margin_px=args.margin,
            static_boxes=tuple(static_boxes), static_boxes_rel=tuple(static_boxes_rel), soft_edge_px=args.soft_edge,
            class_weights=parse_class_weights(args.class_weights),
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc


# --- models and detectors -------------------------------------------------------------------------------------


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="model file (default: the model shipped with the package; 'random' = untrained test model)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="where the transforms run")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")


def set_threads(threads: int) -> None:
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def load_codec(model: str | None, device: str):
    from roi_codec_ros.codec import RoiCodec

    try:
        return RoiCodec.load(model, device=device)
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as exc:
        raise CliError(f"cannot load model {model or '(default)'}: {exc}") from exc


def load_detector(weights: str | None, device: str, **kwargs):
    """DetectorAdapter from a .pt (None: ``$ROI_CODEC_DETECTOR_WEIGHTS``); missing/bad weights are a CliError."""
    from roi_codec_ros.detector import DetectorAdapter

    try:
        return DetectorAdapter.from_weights(weights, device=device, **kwargs)
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from exc


def check_detector(codec, detector, strict: bool, prog: str) -> None:
    """Warn on stderr (or fail when ``strict``) if ``detector`` is not the one ``codec`` was trained with."""
    from roi_codec_ros.codec.checkpoint import DetectorMismatchError, check_detector_match

    if detector is None:
        return
    try:
        problem = check_detector_match(codec.info, detector.detector_id, strict=strict, warn=False)
    except DetectorMismatchError as exc:
        raise CliError(f"{exc} (--strict-detector)") from exc
    if problem:
        print(f"{prog}: warning: {problem} (--strict-detector makes this an error)", file=sys.stderr)


# --- files ----------------------------------------------------------------------------------------------------


def read_image(path: str | os.PathLike) -> np.ndarray:
    try:
        return read_image_rgb(path)
    except ImageReadError as exc:
        raise CliError(str(exc)) from exc


def read_bytes(path: str | os.PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _write_failed(path, exc: Exception) -> CliError:
    return CliError(f"cannot write {path}: {getattr(exc, 'strerror', None) or exc} (nothing written)")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a whole file or leave none (a full disk leaves the previous file, or no file)."""
    try:
        write_bytes_atomic(path, data)
    except OSError as exc:
        raise _write_failed(path, exc) from exc


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_image(path: str | os.PathLike, image: np.ndarray, **save_args) -> None:
    """Save an image (format from the suffix) whole or not at all."""
    try:
        save_image_atomic(path, image, **save_args)
    except (OSError, ValueError, KeyError) as exc:  # KeyError/ValueError: Pillow's unknown format or mode
        raise _write_failed(path, exc) from exc


def write_derived_model(codec, model, out: str, section: str, record: dict, fp16: bool = True) -> None:
    """Export ``model``, made from ``codec``'s model file by a tool (train-inter, quantize-side), to ``out``: the
    source file's detector record and metadata, plus ``record`` under ``metadata[section]``; the CDF tables as the
    tool left them (``update_tables=False``)."""
    import torch

    from roi_codec_ros.codec import RoiCodec
    from roi_codec_ros.codec.checkpoint import export_model, load_model_file

    path = codec.info.get("path")
    _, info = load_model_file(path) if path not in (None, "random") else (None, {})
    metadata = {**info.get("metadata", {}), section: record}
    with torch.no_grad():
        export_model(model, out, fp16=fp16, detector=info.get("detector"),
                     uses_features=info.get("uses_features", True), metadata=metadata, update_tables=False)
    print(f"wrote {out} (model id {RoiCodec.load(out).model_id[:16]})")
