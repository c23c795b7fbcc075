"""Training data: images decoded once into memory, ROI boxes, cached detector features, and crop sampling.

Sources (each a folder):
- ``kitti``: KITTI 2D object layout ``image_2/*.png`` + ``label_2/*.txt`` (boxes of KITTI_ROI_CLASSES; DontCare ignored).
- ``images``: any image folder (recursively); ROI boxes come from the detector (pseudo-labels, computed once and
  cached on disk) and/or synthetic masks (random boxes and blobs, which Perugachi-Diaz et al. report train about
  as well as real masks).

Detector features are computed once per image on the full frame (as on the vehicle) and cropped with
``torchvision.ops.roi_align`` for every training crop, so a training step never runs the detector.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import hashlib
import json
from pathlib import Path
import random
from typing import Sequence

import numpy as np
import torch
from torchvision.ops import roi_align
from tqdm import tqdm

from ..detector.roi_mask import rasterise_boxes
from ..files import image_files, read_image_rgb
KITTI_ROI_CLASSES = ("Car", "Pedestrian", "Van", "Cyclist", "Truck", "Misc", "Tram", "Person_Sitting")
FEATURE_STRIDES = (8, 16, 32)


@dataclass
class Sample:
    """One training image in memory."""

    path: str
    image: np.ndarray  # HxWx3 uint8 RGB
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # xyxy pixels
    features: list[torch.Tensor] | None = None  # frame-aligned detector maps (1,C,h,w), fp16
    roi: str = "synthetic"  # where this image's training ROI masks come from: synthetic | boxes | mixed


def list_images(folder: str | Path) -> list[Path]:
    """Every image under ``folder`` (recursively), in path order."""
    return image_files(folder, recursive=True)


load_rgb = read_image_rgb  # (path, max_side=None) -> HxWx3 uint8 RGB; the name the training scripts use


def read_kitti_labels(path: str | Path, classes: Sequence[str] = KITTI_ROI_CLASSES) -> np.ndarray:
    """Boxes (K,4) xyxy of the wanted classes from a KITTI label_2 file (DontCare and others ignored)."""
    boxes = []
    for line_no, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 8:
            raise ValueError(f"{path}:{line_no}: not a KITTI label line: {line!r}")
        if parts[0] in classes:
            boxes.append([float(v) for v in parts[4:8]])
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def kitti_samples(root: str | Path, max_side: int | None = None) -> list[Sample]:
    root = Path(root)
    image_dir, label_dir = root / "image_2", root / "label_2"
    if not image_dir.is_dir() or not label_dir.is_dir():
        raise FileNotFoundError(f"{root} is not a KITTI 2D object folder (needs image_2/ and label_2/)")
    samples = []
    for path in tqdm(list_images(image_dir), desc=f"load {root.name}", leave=False):
        label = label_dir / (path.stem + ".txt")
        boxes = read_kitti_labels(label) if label.is_file() else np.zeros((0, 4), np.float32)
        image = load_rgb(path)
        if max_side and max(image.shape[:2]) > max_side:
            scale = max_side / max(image.shape[:2])
            image = load_rgb(path, max_side)
            boxes = boxes * scale
        samples.append(Sample(str(path), image, boxes))
    return samples


def folder_samples(root: str | Path, max_side: int | None = None) -> list[Sample]:
    return [Sample(str(p), load_rgb(p, max_side)) for p in tqdm(list_images(root), desc=f"load {Path(root).name}", leave=False)]


def split_train_val(samples: list[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Deterministic split by a hash of each path (stable when files are added elsewhere)."""
    train, val = [], []
    for s in samples:
        h = int(hashlib.sha256(f"{seed}:{Path(s.path).name}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (val if h < val_fraction else train).append(s)
    return train, val


def attach_detector_outputs(
    samples: list[Sample], detector, cache_dir: str | Path | None, want_features: bool, want_boxes: bool, roi_config=None
) -> None:
    """Run the detector once per image: pseudo-label boxes (cached on disk) and features (kept in memory, fp16)."""
    from roi_codec_ros.detector.roi_mask import RoiMaskConfig, roi_boxes  # core module, no ROS

    roi_config = roi_config or RoiMaskConfig()

    cache = Path(cache_dir) if cache_dir else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    for s in tqdm(samples, desc="detector pass", leave=False):
        key = hashlib.sha256(f"{detector.weights_sha256}:{s.path}:{s.image.shape}".encode()).hexdigest()[:24]
        box_file = cache / f"{key}.json" if cache else None
        feature_file = cache / f"{key}.features.pt" if cache else None
        have_features = bool(feature_file and feature_file.is_file())
        need_run = (want_features and not have_features) or (want_boxes and not (box_file and box_file.is_file()))
        result = detector(s.image) if need_run else None
        if want_features:
            if result is not None:
                s.features = [f.detach().to("cpu", torch.float16).contiguous() for f in result.features]
                if feature_file:
                    torch.save(s.features, feature_file)
            else:
                s.features = torch.load(feature_file, weights_only=True)
        if want_boxes:
            if result is not None:
                boxes = roi_boxes(result.detections, s.image.shape[:2], roi_config)
                if box_file:
                    box_file.write_text(json.dumps(boxes.tolist()))
            else:
                boxes = np.asarray(json.loads(box_file.read_text()), np.float32).reshape(-1, 4)
            s.boxes = np.concatenate([s.boxes, boxes.astype(np.float32)]) if len(s.boxes) else boxes.astype(np.float32)


# -- masks ----------------------------------------------------------------------------------------------
def synthetic_mask(height: int, width: int, rng: random.Random) -> np.ndarray:
    """Random boxes and elliptic blobs covering roughly 5-50% of the crop."""
    mask = np.zeros((height, width), np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(rng.randint(1, 5)):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(0.05, 0.3) * height, rng.uniform(0.05, 0.3) * width
        if rng.random() < 0.5:
            mask[max(0, int(cy - ry)) : int(cy + ry), max(0, int(cx - rx)) : int(cx + rx)] = 1.0
        else:
            mask[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0] = 1.0
    return mask


# -- crops ----------------------------------------------------------------------------------------------
@dataclass
class Crop:
    """A region of the source image (float pixels) and the output size; both modes resample with it."""

    x0: float
    y0: float
    x1: float
    y1: float
    size: int
    flip: bool


def sample_crop(height: int, width: int, size: int, mode: str, rng: random.Random) -> Crop:
    """``random``: a size x size crop at native resolution (upsampled if the image is smaller);
    ``square``: the largest square crop resized to size x size (TUM preprocessing)."""
    if mode == "square":
        side = min(height, width)
    elif mode == "random":
        side = min(size, height, width)
    else:
        raise ValueError(f"unknown crop mode {mode!r} (random | square)")
    y0 = rng.uniform(0, height - side)
    x0 = rng.uniform(0, width - side)
    if mode == "random":
        y0, x0 = float(int(y0)), float(int(x0))
    return Crop(x0, y0, x0 + side, y0 + side, size, rng.random() < 0.5)


def _resample(t: torch.Tensor, crop: Crop, out: int, scale: float) -> torch.Tensor:
    """roi_align a (1,C,H,W) tensor over the crop (given in image pixels; ``scale`` = map / image)."""
    box = torch.tensor([[0, crop.x0, crop.y0, crop.x1, crop.y1]], dtype=torch.float32)
    native = (crop.x1 - crop.x0) * scale == out
    if native and float(crop.x0 * scale).is_integer() and float(crop.y0 * scale).is_integer():
        x0, y0 = int(crop.x0 * scale), int(crop.y0 * scale)
        return t[:, :, y0 : y0 + out, x0 : x0 + out].float()
    return roi_align(t.float(), box, output_size=out, spatial_scale=scale, sampling_ratio=2, aligned=True)


def make_example(sample: Sample, crop: Crop, mask_source: str, rng: random.Random) -> dict[str, torch.Tensor]:
    """Image (3,S,S) in [0,1], ROI mask (1,S,S) and cropped features for one training crop."""
    h, w = sample.image.shape[:2]
    image = torch.from_numpy(sample.image).permute(2, 0, 1).unsqueeze(0)
    side = crop.x1 - crop.x0
    scale = crop.size / side
    if side == crop.size:
        x = _resample(image, crop, crop.size, 1.0)
    else:
        # resize the cropped region (antialiased) rather than point-sampling it
        region = image[:, :, int(crop.y0) : int(crop.y0) + int(side), int(crop.x0) : int(crop.x0) + int(side)].float()
        x = torch.nn.functional.interpolate(region, size=(crop.size, crop.size), mode="bilinear", antialias=True, align_corners=False)
    if x.shape[-1] != crop.size or x.shape[-2] != crop.size:  # image smaller than the crop: upsample
        x = torch.nn.functional.interpolate(x, size=(crop.size, crop.size), mode="bilinear", align_corners=False)
    x = (x / 255.0).clamp(0, 1)

    use_boxes = mask_source == "boxes" or (mask_source == "mixed" and len(sample.boxes) and rng.random() < 0.5)
    if use_boxes:
        boxes = sample.boxes.copy()
        boxes[:, [0, 2]] = (boxes[:, [0, 2]] - crop.x0) * scale
        boxes[:, [1, 3]] = (boxes[:, [1, 3]] - crop.y0) * scale
        mask = rasterise_boxes(boxes, crop.size, crop.size)  # boxes clipped to the crop; the detector's rasteriser
    else:
        mask = synthetic_mask(crop.size, crop.size, rng)
    m = torch.from_numpy(mask)[None, None]

    feats = None
    if sample.features is not None:
        feats = []
        for f, stride in zip(sample.features, FEATURE_STRIDES):
            fh, fw = f.shape[-2:]
            fscale = fh / h  # frame-aligned maps: map pixels per image pixel
            feats.append(_resample(f, crop, crop.size // stride, fscale)[0])
    if crop.flip:
        x, m = x.flip(-1), m.flip(-1)
        feats = [f.flip(-1) for f in feats] if feats is not None else None
    return {"x": x[0], "mask": m[0], "features": feats}


def collate(examples: list[dict], feature_channels: Sequence[int]) -> dict:
    x = torch.stack([e["x"] for e in examples])
    mask = torch.stack([e["mask"] for e in examples])
    B, _, H, W = x.shape
    feats = []
    for i, (c, s) in enumerate(zip(feature_channels, FEATURE_STRIDES)):
        maps = [
            e["features"][i] if e["features"] is not None else torch.zeros(c, H // s, W // s) for e in examples
        ]
        feats.append(torch.stack(maps))
    has = torch.tensor([e["features"] is not None for e in examples])
    return {"x": x, "mask": mask, "features": feats, "has_features": has}
