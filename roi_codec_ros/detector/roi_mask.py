"""ROI mask from detections: which pixels the codec should spend its bits on.

The one place for the ROI rule (encoder node, CLI, overlays, evaluation and training all call it):
``select_roi(detections, (H, W), RoiMaskConfig)`` -> ``RoiSelection`` (selected detections, static boxes, every
mask box, ``.mask()``), and ``rasterise_boxes`` for which pixels a box covers.

mask = max over (selected detection boxes grown by ``margin_px``, static boxes) of the box's weight inside it,
0 outside; with ``soft_edge_px > 0`` each box's value falls off linearly from its weight at the (grown) box edge
to 0 at ``soft_edge_px`` pixels outside it (Euclidean distance), so boxes never shrink and the codec's quality
changes gradually.  A box's weight is its class's entry in ``class_weights`` (1.0 for unlisted classes and for
static boxes), so without ``class_weights`` the mask is 1 inside every box: a small traffic light can keep full
ROI quality while large vehicles get an intermediate one (the codec reads a fractional mask value as an
intermediate ROI weight).
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
ClassKey = str | int
ClassWeights = tuple[tuple[ClassKey, float], ...]


def _boxes(value: Iterable[Sequence[float]], what: str) -> tuple[Box, ...]:
    out = []
    for b in value or ():
        b = tuple(float(v) for v in b)
        if len(b) != 4 or not all(np.isfinite(b)) or b[2] < b[0] or b[3] < b[1]:
            raise ValueError(f"RoiMaskConfig.{what}: each box must be 4 finite numbers x1,y1,x2,y2 with x2>=x1, y2>=y1; got {b}")
        out.append(b)
    return tuple(out)


def _class_key(key: Any) -> ClassKey:
    if isinstance(key, (bool, np.bool_)):
        raise ValueError(f"RoiMaskConfig.class_weights: a class is a name or an id, got {key!r}")
    if isinstance(key, (int, np.integer)):
        if int(key) < 0:
            raise ValueError(f"RoiMaskConfig.class_weights: class ids are >= 0, got {key}")
        return int(key)
    if isinstance(key, str) and key.strip():
        return key.strip()
    raise ValueError(f"RoiMaskConfig.class_weights: a class is a non-empty name or an id, got {key!r}")


def _class_weights(value: Mapping[Any, Any] | Iterable[tuple[Any, Any]] | None) -> ClassWeights:
    """Validated (class, weight) pairs: known key types, finite weights in [0, 1], no class given twice."""
    items = value.items() if isinstance(value, Mapping) else (value or ())
    out: dict[ClassKey, float] = {}
    seen: dict[Any, ClassKey] = {}
    for item in items:
        try:
            key, weight = item
        except (TypeError, ValueError):
            raise ValueError(f"RoiMaskConfig.class_weights: expected (class, weight) pairs or a mapping, got {item!r}") from None
        key = _class_key(key)
        if isinstance(weight, (bool, np.bool_)) or not isinstance(weight, (int, float, np.integer, np.floating)):
            raise ValueError(f"RoiMaskConfig.class_weights: the weight of {key!r} must be a number in [0, 1], got {weight!r}")
        weight = float(weight)
        if not (np.isfinite(weight) and 0.0 <= weight <= 1.0):
            raise ValueError(f"RoiMaskConfig.class_weights: the weight of {key!r} must be in [0, 1], got {weight}")
        folded = key.casefold() if isinstance(key, str) else key
        if folded in seen:
            raise ValueError(f"RoiMaskConfig.class_weights: class {key!r} is given twice (as {seen[folded]!r})")
        seen[folded] = key
        out[key] = weight
    # ids first, then names: one order for equal tables however they were written
    return tuple(sorted(out.items(), key=lambda kv: (isinstance(kv[0], str), str(kv[0]).casefold())))


@dataclass(frozen=True)
class RoiMaskConfig:
    """How to turn detections into an ROI mask.

    classes: class names (case-insensitive) or ids to keep; ``None`` keeps every class.
    confidence: minimum detection score.
    margin_px: every detection box grows by this many pixels on each side (context around objects).
    static_boxes: always-ROI boxes in frame pixels, xyxy (e.g. the road ahead for a fixed camera).
    static_boxes_rel: the same as fractions of frame width/height (resolution independent), xyxy in [0, 1].
    soft_edge_px: width of a linear fall-off outside the boxes (0 = hard edges).
    class_weights: class (name, case-insensitive, or id) -> mask value in [0, 1] inside its boxes; unlisted
        classes get 1.0, a weight of 0 drops the class from the ROI. Given as a mapping or (class, weight)
        pairs; stored as sorted pairs (the config stays hashable and prints the same for the same table).
    """

    classes: tuple[str | int, ...] | None = DEFAULT_ROI_CLASSES
    confidence: float = 0.25
    margin_px: float = 8.0
    static_boxes: tuple[Box, ...] = ()
    static_boxes_rel: tuple[Box, ...] = ()
    soft_edge_px: float = 0.0
    class_weights: ClassWeights = ()

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
        object.__setattr__(self, "class_weights", _class_weights(self.class_weights))

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


def parse_class_weight_items(items: Iterable[str]) -> ClassWeights:
    """Class weights from ``"class=weight"`` items (the ROS parameter's string array): ``["person=1.0",
    "traffic light=0.9", "2=0.5"]``; digits are class ids, anything else a class name; no items = none.
    ValueError naming the bad item."""
    pairs = []
    for item in items:
        name, sep, weight = str(item).rpartition("=")  # rpartition: a class name may itself hold '='
        name = name.strip()
        try:
            value = float(weight) if sep else None
        except ValueError:
            value = None
        if not name or value is None:
            raise ValueError(f"class weight {item!r}: expected 'class=weight', e.g. 'car=0.5' (weight in [0, 1])")
        pairs.append((int(name) if name.isdigit() else name, value))
    return _class_weights(pairs)


def parse_class_weights(text: str) -> ClassWeights:
    """Class weights from command-line text: ``"person=1.0, traffic light=0.9, car=0.5"`` (comma-separated
    ``class=weight``; digits are ids); empty or ``"none"`` = no weights (every class 1.0)."""
    if text.strip().casefold() in ("", "none"):
        return ()
    return parse_class_weight_items(c for c in (c.strip() for c in text.split(",")) if c)


def class_weight_keys(config: "RoiMaskConfig") -> tuple[ClassKey, ...]:
    """The classes named in ``config.class_weights`` (for ``unknown_classes``)."""
    return tuple(key for key, _ in config.class_weights)


def detection_weights(detections: Detections, class_weights: ClassWeights) -> np.ndarray:
    """(K,) float64 weight of each detection: its class id's entry, else its name's (case-insensitive), else 1."""
    by_id = {k: w for k, w in class_weights if isinstance(k, int)}
    by_name = {k.casefold(): w for k, w in class_weights if isinstance(k, str)}
    out = np.ones(len(detections), np.float64)
    for i, class_id in enumerate(np.asarray(detections.class_ids).reshape(-1)):
        class_id = int(class_id)
        if class_id in by_id:  # an id is the more specific entry
            out[i] = by_id[class_id]
        else:
            out[i] = by_name.get(str(detections.names.get(class_id, "")).casefold(), 1.0)
    return out


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
    """(K,) bool: which detections are ROI objects (an ROI class with a class weight > 0, score >= the ROI
    confidence)."""
    keep = detections.scores >= config.confidence
    ids = selected_class_ids(detections.names, config.classes)
    if ids is not None:
        keep &= np.isin(detections.class_ids, list(ids))
    if config.class_weights:
        keep &= detection_weights(detections, config.class_weights) > 0.0  # weight 0: shapes nothing, not ROI
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
    boxes: (M,4) float64, every box that shapes the mask (selected detections grown by the margin, static boxes);
    weights: (M,) float64, each box's mask value (its class weight; 1.0 for static boxes).
    """

    shape_hw: tuple[int, int]
    detections: Detections
    static_boxes: np.ndarray
    margin_px: float
    soft_edge_px: float
    class_weights: ClassWeights = ()

    @property
    def boxes(self) -> np.ndarray:
        m = float(self.margin_px)
        grown = self.detections.boxes.astype(np.float64) + np.array([-m, -m, m, m])
        return np.concatenate([grown, self.static_boxes], axis=0)

    @property
    def weights(self) -> np.ndarray:
        return np.concatenate([detection_weights(self.detections, self.class_weights),
                               np.ones(len(self.static_boxes), np.float64)])

    @property
    def empty(self) -> bool:
        """No box at all (the codec then gets no ROI mask: uniform quality)."""
        return len(self.detections) == 0 and len(self.static_boxes) == 0

    def mask(self) -> np.ndarray:
        """HxW float32 mask in [0, 1]: max over the boxes of their weight (rasterised conservatively), each
        falling off from its weight to 0 over the soft edge if configured."""
        h, w = self.shape_hw
        boxes, weights = self.boxes, self.weights
        if self.soft_edge_px <= 0:
            return rasterise_boxes(boxes, h, w, weights)
        # max_b weight_b * falloff(dist to box b) = max over weight levels of level * falloff(dist to the level's
        # union), falloff being monotone: one distance transform per distinct weight, not per box
        mask = np.zeros((h, w), np.float32)
        for level in np.unique(weights[weights > 0])[::-1]:
            inside = rasterise_boxes(boxes[weights == level], h, w)
            if not inside.any():
                continue
            import cv2

            # distance of every outside pixel to the nearest ROI pixel (ROI pixels are the zeros of the input)
            dist = cv2.distanceTransform((inside == 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            falloff = np.clip(1.0 - dist / float(self.soft_edge_px), 0.0, 1.0).astype(np.float32)
            mask = np.maximum(mask, falloff if level == 1.0 else falloff * np.float32(level))
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
        class_weights=config.class_weights,
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


def rasterise_boxes(boxes: np.ndarray, height: int, width: int, weights: Sequence[float] | None = None) -> np.ndarray:
    """HxW float32 mask of (M,4) x1,y1,x2,y2 pixel boxes (``box_pixel_bounds``): the one box rasteriser.

    1 inside any box and 0 outside; with ``weights`` ((M,) in [0, 1]) each pixel is the largest weight of the
    boxes covering it."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    weights = np.ones(len(boxes)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if len(weights) != len(boxes):
        raise ValueError(f"rasterise_boxes: {len(weights)} weights for {len(boxes)} boxes")
    mask = np.zeros((height, width), np.float32)
    for box, weight in zip(boxes, weights):
        c0, r0, c1, r1 = box_pixel_bounds(box, height, width)
        if c1 > c0 and r1 > r0:
            np.maximum(mask[r0:r1, c0:c1], np.float32(weight), out=mask[r0:r1, c0:c1])
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
