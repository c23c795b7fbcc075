"""What encoder_node does per frame, without ROS: detector -> ROI selection and mask -> the engine's stream encoder.

    RGB frame --DetectorAdapter (once: features + detections; skipped with detector 'none')
              --detector.roi_mask.select_roi (classes, confidence, margin, static boxes) --> ROI boxes and mask
              --StreamEncoder.encode(image, roi_mask, boxes, features, rate, roi_weight) --> EncodeResult
                (engine 'neural': RoiCodec, every frame a keyframe; 'x264'/'x265'/...: roi_codec_ros.engine)

The ROI rule itself lives in the detector package (``select_roi``), used here as is.  ``EncoderSettings`` holds
every live knob; a node builds a new one from its parameters, ``check`` rejects it with a reason, and the worker
reads the current object once per frame (so a change applies to the next frame).
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field

import numpy as np

from roi_codec_ros.codec import RoiCodec
from roi_codec_ros.detector import WEIGHTS_ENV, DetectorAdapter, DetectorWeightsError, Detections, RoiMaskConfig, unknown_classes
from roi_codec_ros.detector.roi_mask import select_roi
from roi_codec_ros.engine import CodedFrame, Engine, check_keyframe_interval
from roi_codec_ros.engine.neural import NeuralEngine

# detector 'weights' values that are not paths
DETECTOR_DEFAULT = "default"  # $ROI_CODEC_DETECTOR_WEIGHTS (a deployment setting); an error when it is not set
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
    keyframe_interval: int = 10  # frames; 0 = keyframes only at the start and on request
    keyframe_request_min_interval_s: float = 0.25  # at most one requested keyframe per this many seconds

    def check(self, engine: Engine | RoiCodec, detector: DetectorAdapter | None) -> None:
        """Raise ValueError with a reason when these settings cannot be used with this engine/detector."""
        as_engine(engine).check(float(self.rate), float(self.roi_weight))
        check_keyframe_interval(self.keyframe_interval)
        if not self.keyframe_request_min_interval_s >= 0.0:
            raise ValueError(f"keyframe_request_min_interval_s must be >= 0, got {self.keyframe_request_min_interval_s}")
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


def as_engine(engine: Engine | RoiCodec) -> Engine:
    """An Engine; a bare RoiCodec becomes the neural engine (what callers before the engines passed)."""
    return NeuralEngine(engine) if isinstance(engine, RoiCodec) else engine


@dataclass
class EncodeResult:
    frame: CodedFrame  # data, format, keyframe, rate, roi_weight, bpp, timings_ms
    boxes: list[RoiBoxInfo]  # every box that shaped the ROI mask (selected detections grown by the margin, static)
    detections: Detections | None  # everything the detector returned (None without a detector)
    roi_coverage: float  # fraction of pixels inside the ROI mask (mean of the mask)
    detector_ms: float
    encode_ms: float
    timings_ms: dict[str, float] = field(default_factory=dict)


def detector_weights_path(weights: str) -> str:
    """The weights file for the ``detector.weights`` parameter value (not 'none'/'random').

    'default' (or '') means ``$ROI_CODEC_DETECTOR_WEIGHTS``: which detector a vehicle runs is deployment
    configuration, so without the variable the encoder refuses to start and says what to set (running silently
    without a detector would drop the ROI, the product's point).
    """
    if weights not in ("", DETECTOR_DEFAULT):
        return weights
    path = os.environ.get(WEIGHTS_ENV)
    if not path:
        raise DetectorWeightsError(
            f"no detector weights: detector.weights is '{DETECTOR_DEFAULT}' and ${WEIGHTS_ENV} is not set. Set "
            f"detector.weights (launch argument detector_weights:=/path/to/yolo.pt) or ${WEIGHTS_ENV}, or use "
            f"detector.weights:={DETECTOR_NONE} to encode without a detector (static ROI boxes only, no object prior)"
        )
    return path


def load_detector(weights: str, device: str = "cpu", imgsz: int = 640) -> DetectorAdapter | None:
    """'none' -> no detector; 'random' -> untrained yolov8n (tests); 'default' or '' -> $ROI_CODEC_DETECTOR_WEIGHTS;
    else a .pt path.  Raises DetectorWeightsError saying what to set."""
    if weights == DETECTOR_NONE:
        return None
    if weights == DETECTOR_RANDOM:
        return DetectorAdapter.random_init("yolov8n.yaml", device=device, imgsz=imgsz)
    return DetectorAdapter.from_weights(detector_weights_path(weights), device=device, imgsz=imgsz)


def roi_box_infos(detections: Detections | None, shape_hw: tuple[int, int], config: RoiMaskConfig):
    """(boxes for the message, HxW mask or None when there is no box) from the detector package's ROI rule."""
    selection = select_roi(detections, shape_hw, config)
    if selection.empty:
        return [], None
    chosen = selection.detections
    boxes = selection.boxes  # selected detections grown by the margin, then the static boxes: what the mask uses
    infos = [
        RoiBoxInfo(*map(float, boxes[i]), int(chosen.class_ids[i]), chosen.label(i), float(chosen.scores[i]))
        for i in range(len(chosen))
    ]
    infos += [RoiBoxInfo(*map(float, b), STATIC_CLASS_ID, STATIC_CLASS_NAME, 1.0) for b in boxes[len(chosen):]]
    return infos, selection.mask()


class FrameEncoder:
    """Engine stream + optional detector; ``encode`` runs the detector once and the engine once per frame."""

    def __init__(self, engine: Engine | RoiCodec, detector: DetectorAdapter | None = None, keyframe_interval: int = 10,
                 fps: float = 10.0):
        self.engine = as_engine(engine)
        if detector is not None and self.engine.uses_features:
            want = tuple(self.engine.codec.config.feature_channels)
            got = tuple(detector.feature_channels)
            if want != got:
                raise ValueError(
                    f"detector feature channels {got} do not match the codec's {want}: use the detector the codec "
                    "was trained with"
                )
        self.detector = detector
        self.stream = self.engine.stream_encoder(keyframe_interval=keyframe_interval, fps=fps)

    @property
    def codec(self) -> RoiCodec | None:
        """The neural engine's RoiCodec (None for other engines)."""
        return getattr(self.engine, "codec", None)

    def encode(self, image: np.ndarray, settings: EncoderSettings) -> EncodeResult:
        h, w = image.shape[:2]
        features, detections, detector_ms = None, None, 0.0
        if self.detector is not None:
            result = self.detector(image)
            features, detections, detector_ms = result.features, result.detections, result.latency_ms
        boxes, mask = roi_box_infos(detections, (h, w), settings.roi)
        if settings.keyframe_interval != self.stream.keyframe_interval:
            self.stream.set_keyframe_interval(settings.keyframe_interval)
        box_array = np.array([[b.x1, b.y1, b.x2, b.y2] for b in boxes], np.float64).reshape(-1, 4)
        start = time.perf_counter()
        frame = self.stream.encode(image, roi_mask=mask, boxes=box_array, features=features if self.engine.uses_features else None,
                                   rate=settings.rate, roi_weight=settings.roi_weight)
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
