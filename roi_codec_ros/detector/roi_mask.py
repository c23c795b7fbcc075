"""ROI mask from detections: which pixels the codec should spend its bits on.

The one place for the ROI rule (encoder node, CLI, overlays, evaluation and training all call it):
``select_roi(detections, (H, W), RoiMaskConfig)`` -> ``RoiSelection`` (selected detections, static boxes, every
mask box, ``.mask()``), and ``rasterise_boxes`` for which pixels a box covers.

mask = max over (selected detection boxes grown by ``margin_px``, static boxes), 1 inside, 0 outside; with
``soft_edge_px > 0`` the mask falls off linearly from 1 at the (grown) box edge to 0 at ``soft_edge_px``
pixels outside it (Euclidean distance), so boxes never shrink and the codec's quality changes gradually.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .detections import Detections

# COCO names of what matters to a remote driver: road users and the signals that govern them. Chosen by
# *name*, so a fine-tuned model with other class ids (or extra classes) is configured the same way.
DEFAULT_ROI_CLASSES: tuple[str, ...] = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "bus",
    "train",
    "truck",
    "traffic light",
    "stop sign",
)

Box = tuple[float, float, float, float]


def _boxes(value: Iterable[Sequence[float]], what: str) -> tuple[Box, ...]:
    out = []
    for b in value or ():
        b = tuple(float(v) for v in b)
        if len(b) != 4 or not all(np.isfinite(b)) or b[2] < b[0] or b[3] < b[1]:
            raise ValueError(f"RoiMaskConfig.{what}: each box must be 4 finite numbers x1,y1,x2,y2 with x2>=x1, y2>=y1; got {b}")
        out.append(b)
    return tuple(out)


@dataclass(frozen=True)
class RoiMaskConfig:
    """How to turn detections into an ROI mask.

    classes: class names (case-insensitive) or ids to keep; ``None`` keeps every class.
    confidence: minimum detection score.
    margin_px: every detection box grows by this many pixels on each side (context around objects).
    static_boxes: always-ROI boxes in frame pixels, xyxy (e.g. the road ahead for a fixed camera).
    static_boxes_rel: the same as fractions of frame width/height (resolution independent), xyxy in [0, 1].
    soft_edge_px: width of a linear fall-off outside the boxes (0 = hard edges).
    """

    classes: tuple[str | int, ...] | None = DEFAULT_ROI_CLASSES
    confidence: float = 0.25
    margin_px: float = 8.0
    static_boxes: tuple[Box, ...] = ()
    static_boxes_rel: tuple[Box, ...] = ()
    soft_edge_px: float = 0.0

    def __post_init__(self) -> None:
        classes = self.classes
        if isinstance(classes, (str, int)):
            classes = (classes,)
        if classes is not None:
            classes = tuple(c if isinstance(c, (int, np.integer)) else str(c) for c in classes)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "static_boxes", _boxes(self.static_boxes, "static_boxes"))
        rel = _boxes(self.static_boxes_rel, "static_boxes_rel")
        if any(min(b) < 0.0 or max(b) > 1.0 for b in rel):
            raise ValueError(f"RoiMaskConfig.static_boxes_rel: coordinates must be fractions in [0, 1], got {rel}")
        object.__setattr__(self, "static_boxes_rel", rel)
        if not 0.0 <= float(self.confidence) <= 1.0:
            raise ValueError(f"RoiMaskConfig.confidence must be in [0, 1], got {self.confidence}")
        if float(self.margin_px) < 0 or float(self.soft_edge_px) < 0:
            raise ValueError(
                f"RoiMaskConfig: margin_px and soft_edge_px must be >= 0, got {self.margin_px}, {self.soft_edge_px}"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RoiMaskConfig":
        """Build from a plain mapping (YAML / ROS parameters); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"RoiMaskConfig: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**dict(values))


def parse_classes(text: str) -> tuple[str | int, ...] | None:
    """ROI classes from command-line text: ``"car, person,2"`` -> ``("car", "person", 2)``; ``"all"`` -> None (every
    class). Digits are class ids, anything else a class name."""
    if text.strip().casefold() == "all":
        return None
    items = tuple(int(c) if c.isdigit() else c for c in (c.strip() for c in text.split(",")) if c)
    if not items:
        raise ValueError(f"no ROI classes in {text!r}: give comma-separated names or ids, or 'all'")
    return items


def selected_class_ids(names: Mapping[int, str], classes: Iterable[str | int] | None) -> set[int] | None:
    """Class ids in ``names`` that ``classes`` selects (names case-insensitive, ints as ids); None = all."""
    if classes is None:
        return None
    wanted = {c.casefold() for c in classes if isinstance(c, str)}
    ids = {int(c) for c in classes if not isinstance(c, str)}
    return ids | {int(i) for i, n in names.items() if n.casefold() in wanted}


def unknown_classes(names: Mapping[int, str], classes: Iterable[str | int] | None) -> list[str | int]:
    """Configured classes the model does not know (useful for a start-up warning)."""
    if classes is None:
        return []
    known_names = {n.casefold() for n in names.values()}
    return [
        c for c in classes if (c.casefold() not in known_names if isinstance(c, str) else int(c) not in names)
    ]


def roi_keep(detections: Detections, config: RoiMaskConfig) -> np.ndarray:
    """(K,) bool: which detections are ROI objects (an ROI class, score >= the ROI confidence)."""
    keep = detections.scores >= config.confidence
    ids = selected_class_ids(detections.names, config.classes)
    if ids is not None:
        keep &= np.isin(detections.class_ids, list(ids))
    return keep


def select_detections(detections: Detections | None, config: RoiMaskConfig) -> Detections:
    """The ROI objects among ``detections`` (boxes as detected, without the margin); empty for None."""
    if detections is None:
        return Detections.empty()
    return detections.select(roi_keep(detections, config))


@dataclass(frozen=True)
class RoiSelection:
    """The ROI of one frame: what ``RoiMaskConfig`` selected from its detections, plus the static boxes.

    detections: the selected detections, boxes as detected (no margin), with class ids, scores and names;
    static_boxes: (S,4) float64 frame pixels, the config's pixel boxes then its relative boxes resolved;
    boxes: (M,4) float64, every box that shapes the mask (selected detections grown by the margin, static boxes).
    """

    shape_hw: tuple[int, int]
    detections: Detections
    static_boxes: np.ndarray
    margin_px: float
    soft_edge_px: float

    @property
    def boxes(self) -> np.ndarray:
        m = float(self.margin_px)
        grown = self.detections.boxes.astype(np.float64) + np.array([-m, -m, m, m])
        return np.concatenate([grown, self.static_boxes], axis=0)

    @property
    def empty(self) -> bool:
        """No box at all (the codec then gets no ROI mask: uniform quality)."""
        return len(self.detections) == 0 and len(self.static_boxes) == 0

    def mask(self) -> np.ndarray:
        """HxW float32 mask in [0, 1]: the boxes rasterised conservatively, with the soft edge if configured."""
        h, w = self.shape_hw
        mask = rasterise_boxes(self.boxes, h, w)
        if self.soft_edge_px > 0 and mask.any():
            import cv2

            # distance of every outside pixel to the nearest ROI pixel (ROI pixels are the zeros of the input)
            dist = cv2.distanceTransform((mask == 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            mask = np.clip(1.0 - dist / float(self.soft_edge_px), 0.0, 1.0).astype(np.float32)
        return mask


def select_roi(
    detections: Detections | None, shape_hw: tuple[int, int], config: RoiMaskConfig | None = None
) -> RoiSelection:
    """The one ROI rule: detections of the ROI classes at or above the ROI confidence, grown by the margin, plus
    the static boxes (pixels, and fractions of the frame). ``detections`` must be in this frame's pixels (see
    ``Detections.rescaled``); None = static boxes only."""
    config = config or RoiMaskConfig()
    h, w = int(shape_hw[0]), int(shape_hw[1])
    if h < 1 or w < 1:
        raise ValueError(f"ROI selection: shape must be (H, W) with H, W >= 1, got {shape_hw}")
    parts = [np.array(config.static_boxes, np.float64).reshape(-1, 4)]
    parts.append(np.array(config.static_boxes_rel, np.float64).reshape(-1, 4) * np.array([w, h, w, h], np.float64))
    return RoiSelection(
        shape_hw=(h, w),
        detections=select_detections(detections, config),
        static_boxes=np.concatenate(parts, axis=0),
        margin_px=float(config.margin_px),
        soft_edge_px=float(config.soft_edge_px),
    )


def roi_boxes(detections: Detections | None, shape_hw: tuple[int, int], config: RoiMaskConfig) -> np.ndarray:
    """All ROI boxes (M,4) float64 in frame pixels: selected detections grown by the margin, plus static boxes."""
    return select_roi(detections, shape_hw, config).boxes


def box_pixel_bounds(box: Sequence[float], height: int, width: int) -> tuple[int, int, int, int]:
    """Pixel columns/rows ``(c0, r0, c1, r1)`` (end exclusive, clipped to the frame) that an x1,y1,x2,y2 box covers:
    every pixel the box touches, so a fractional box edge never loses its pixel. Empty when c1 <= c0 or r1 <= r0.

    The one rule for which pixels a box covers: codec masks, training masks and the evaluation's ROI metrics."""
    x1, y1, x2, y2 = (float(v) for v in box)
    c0, r0 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
    c1, r1 = min(int(width), int(np.ceil(x2))), min(int(height), int(np.ceil(y2)))
    return c0, r0, c1, r1


def rasterise_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """HxW float32 0/1 mask of (M,4) x1,y1,x2,y2 pixel boxes (``box_pixel_bounds``): the one box rasteriser."""
    mask = np.zeros((height, width), np.float32)
    for box in np.asarray(boxes, np.float64).reshape(-1, 4):
        c0, r0, c1, r1 = box_pixel_bounds(box, height, width)
        if c1 > c0 and r1 > r0:
            mask[r0:r1, c0:c1] = 1.0
    return mask


def roi_mask_from_detections(
    detections: Detections | None, shape_hw: tuple[int, int], config: RoiMaskConfig | None = None
) -> np.ndarray:
    """HxW float32 mask in [0, 1] for a frame of ``shape_hw`` = (H, W) (``select_roi(...).mask()``).

    Boxes are rasterised conservatively: a pixel is ROI if the (grown) box touches any part of it.
    ``detections`` may be None (only static boxes) and must be in the same frame's pixels (see
    ``Detections.rescaled``).
    """
    return select_roi(detections, shape_hw, config).mask()
