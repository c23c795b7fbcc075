"""What encoder_node does per frame, without ROS: detector -> ROI boxes and mask -> codec.

    RGB frame --DetectorAdapter (once: features + detections; skipped with detector 'none')
              --ROI selection (classes, confidence, margin) + static boxes --> ROI mask, boxes, coverage
              --RoiCodec.encode(image, mask, features, rate, roi_weight) --> EncodeResult

``EncoderSettings`` holds every live knob; a node builds a new one from its parameters, ``check`` rejects it
with a reason, and the worker reads the current object once per frame (so a change applies to the next frame).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from roi_codec_ros.codec import EncodedFrame, RoiCodec
from roi_codec_ros.detector import (
    DetectorAdapter,
    DetectorWeightsError,
    Detections,
    RoiMaskConfig,
    default_weights_path,
    roi_mask_from_detections,
    selected_class_ids,
    unknown_classes,
)

# detector 'weights' values that are not paths
DETECTOR_DEFAULT = "default"  # $ROI_CODEC_DETECTOR_WEIGHTS or the development weights (see detector.default_weights_path)
DETECTOR_NONE = "none"  # no detector: static boxes only, zero-filled features
DETECTOR_RANDOM = "random"  # untrained yolov8n (tests only: features of the right shape, meaningless boxes)
STATIC_CLASS_ID = -1  # class id of static (configured) boxes, as roi_codec_ros/RoiBox.STATIC_CLASS_ID
STATIC_CLASS_NAME = "static"


@dataclass(frozen=True)
class EncoderSettings:
    """The knobs that may change between frames (ROS parameters of encoder_node)."""

    rate: float = 0.5
    roi_weight: float = 8.0
    roi: RoiMaskConfig = field(default_factory=RoiMaskConfig)
    max_rate: float = 0.0  # Hz; 0 = encode every frame the worker can take
    publish_detections: bool = False
    statistics_window_s: float = 2.0

    def check(self, codec: RoiCodec, detector: DetectorAdapter | None) -> None:
        """Raise ValueError with a reason when these settings cannot be used with this codec/detector."""
        codec.ranges.check(float(self.rate), float(self.roi_weight))
        if not self.max_rate >= 0.0:
            raise ValueError(f"max_rate must be >= 0 Hz (0 = no limit), got {self.max_rate}")
        if not self.statistics_window_s > 0.0:
            raise ValueError(f"statistics_window_s must be > 0, got {self.statistics_window_s}")
        if detector is not None:
            unknown = unknown_classes(detector.names, self.roi.classes)
            if unknown:
                raise ValueError(f"unknown ROI classes {unknown} for this detector (it knows e.g. {list(detector.names.values())[:8]})")

    def replace(self, **changes) -> "EncoderSettings":
        return dataclasses.replace(self, **changes)


@dataclass
class RoiBoxInfo:
    """One box of the frame's ROI (frame pixels, xyxy) with its class and score; static boxes: class -1."""

    x1: float
    y1: float
    x2: float
    y2: float
    class_id: int
    class_name: str
    score: float


@dataclass
class EncodeResult:
    frame: EncodedFrame
    boxes: list[RoiBoxInfo]  # boxes that shaped the ROI mask (selected detections + static boxes)
    detections: Detections | None  # everything the detector returned (None without a detector)
    roi_coverage: float  # fraction of pixels inside the ROI mask (mean of the mask)
    detector_ms: float
    encode_ms: float
    timings_ms: dict[str, float] = field(default_factory=dict)


def load_detector(weights: str, device: str = "cpu", imgsz: int = 640) -> DetectorAdapter | None:
    """'none' -> no detector; 'random' -> untrained yolov8n (tests); 'default' or '' -> default weights; else a .pt path."""
    if weights == DETECTOR_NONE:
        return None
    if weights == DETECTOR_RANDOM:
        return DetectorAdapter.random_init("yolov8n.yaml", device=device, imgsz=imgsz)
    path = default_weights_path() if weights in ("", DETECTOR_DEFAULT) else weights
    if path is None:
        raise DetectorWeightsError(
            "no detector weights: set the parameter detector.weights to a YOLO .pt file (or $ROI_CODEC_DETECTOR_WEIGHTS), "
            f"or to '{DETECTOR_NONE}' to encode with static ROI boxes only"
        )
    return DetectorAdapter.from_weights(path, device=device, imgsz=imgsz)


def static_boxes(config: RoiMaskConfig, shape_hw: tuple[int, int]) -> list[RoiBoxInfo]:
    h, w = shape_hw
    boxes = [tuple(b) for b in config.static_boxes]
    boxes += [(b[0] * w, b[1] * h, b[2] * w, b[3] * h) for b in config.static_boxes_rel]
    return [RoiBoxInfo(*map(float, b), STATIC_CLASS_ID, STATIC_CLASS_NAME, 1.0) for b in boxes]


def selected_boxes(detections: Detections, config: RoiMaskConfig) -> list[RoiBoxInfo]:
    """Detections that pass the ROI class and confidence filter (as detected, without the margin)."""
    keep = detections.scores >= config.confidence
    ids = selected_class_ids(detections.names, config.classes)
    if ids is not None:
        keep &= np.isin(detections.class_ids, list(ids))
    return [
        RoiBoxInfo(*map(float, detections.boxes[i]), int(detections.class_ids[i]), detections.label(i), float(detections.scores[i]))
        for i in np.flatnonzero(keep)
    ]


class FrameEncoder:
    """Codec + optional detector; ``encode`` runs the detector once and the codec once per frame."""

    def __init__(self, codec: RoiCodec, detector: DetectorAdapter | None = None):
        if detector is not None:
            want = tuple(codec.config.feature_channels)
            got = tuple(detector.feature_channels)
            if want != got:
                raise ValueError(
                    f"detector feature channels {got} do not match the codec's {want}: use the detector the codec "
                    "was trained with"
                )
        self.codec = codec
        self.detector = detector

    def encode(self, image: np.ndarray, settings: EncoderSettings) -> EncodeResult:
        h, w = image.shape[:2]
        features, detections, detector_ms = None, None, 0.0
        if self.detector is not None:
            result = self.detector(image)
            features, detections, detector_ms = result.features, result.detections, result.latency_ms
        boxes = (selected_boxes(detections, settings.roi) if detections is not None else []) + static_boxes(settings.roi, (h, w))
        mask = roi_mask_from_detections(detections, (h, w), settings.roi) if boxes else None
        start = time.perf_counter()
        frame = self.codec.encode(image, roi_mask=mask, features=features, rate=settings.rate, roi_weight=settings.roi_weight)
        encode_ms = (time.perf_counter() - start) * 1e3
        return EncodeResult(
            frame=frame,
            boxes=boxes,
            detections=detections,
            roi_coverage=float(mask.mean()) if mask is not None else 0.0,
            detector_ms=float(detector_ms),
            encode_ms=encode_ms,
            timings_ms=dict(frame.timings_ms),
        )
