"""Frames from an image folder, with optional ROI boxes from a labels folder.

Label files are ``<image stem>.txt`` with one box per line, either

* pixels:         ``<class name or id> x1 y1 x2 y2``            (e.g. the Udacity/CrowdAI export), or
* YOLO format:    ``<class id> cx cy w h`` with all four in [0, 1] (normalised centre/size).

A missing label file means "no ROI in this frame"; an unparsable line is an error naming file and line.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from roi_codec_ros.files import IMAGE_SUFFIXES, image_files, read_image_rgb

from .runner import Frame

__all__ = ["IMAGE_SUFFIXES", "count_folder_frames", "image_files", "iter_folder_frames", "read_image_rgb", "read_label_boxes",
           "read_labels"]


def read_label_boxes(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """(K,4) xyxy pixel boxes of a label file (see module doc) for a frame of ``shape`` = (H, W)."""
    return read_labels(path, shape)[0]


def read_labels(path: str | Path, shape: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """(boxes (K,4) xyxy pixels, class of each box as written: a name, which may hold spaces, or an id)."""
    path = Path(path)
    height, width = shape
    boxes, classes = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            values = [float(v) for v in parts[-4:]]
            if len(parts) < 5:
                raise ValueError("expected '<class> x1 y1 x2 y2' or '<class id> cx cy w h'")
        except ValueError as err:
            raise ValueError(f"{path}:{number}: cannot parse {line!r}: {err}") from err
        if len(parts) == 5 and all(0.0 <= v <= 1.0 for v in values) and parts[0].isdigit():
            cx, cy, w, h = values
            values = [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
        x1, y1, x2, y2 = values
        if x2 < x1 or y2 < y1:
            raise ValueError(f"{path}:{number}: box {values} has x2 < x1 or y2 < y1")
        boxes.append(values)
        classes.append(" ".join(parts[:-4]))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), classes


def iter_folder_frames(
    folder: str | Path, labels: str | Path | None = None, stride: int = 1, max_frames: int | None = None
) -> Iterator[Frame]:
    """Every ``stride``-th image of ``folder`` (name order), at most ``max_frames``, with label boxes if given."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    files = image_files(folder)[::stride][:max_frames]
    labels = Path(labels) if labels else None
    if labels is not None and not labels.is_dir():
        raise FileNotFoundError(f"labels folder not found: {labels}")
    for path in files:
        image = read_image_rgb(path)
        boxes = classes = None
        if labels is not None:
            label_file = labels / f"{path.stem}.txt"
            boxes, classes = read_labels(label_file, image.shape[:2]) if label_file.is_file() else (np.zeros((0, 4)), [])
        yield Frame(name=path.name, image=image, boxes=boxes, box_classes=classes)


def count_folder_frames(folder: str | Path, stride: int = 1, max_frames: int | None = None) -> int:
    return len(image_files(folder)[::stride][:max_frames])
