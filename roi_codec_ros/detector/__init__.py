"""Detector adapter: the vehicle's YOLO model, run once per frame, gives the codec features and ROI boxes.

    frame -> DetectorAdapter (letterbox, one forward pass, hooks on the Detect inputs)
          -> DetectorResult(features=[f8, f16, f32] frame-aligned, detections in frame pixels, latency_ms, geometry)
          -> select_roi(detections, (H, W), RoiMaskConfig(...)) -> RoiSelection: selected detections, static boxes,
             every ROI box, .mask() -> HxW float32 mask in [0, 1]   (roi_mask_from_detections = select_roi().mask())

Boxes from elsewhere (another node, hand-placed) enter as ``Detections.from_boxes(...)`` and share the ROI rule.
"""
from .adapter import (
    WEIGHTS_ENV,
    DetectorAdapter,
    DetectorResult,
    DetectorWeightsError,
    default_weights_path,
    keep_torch_threads,
    resolve_device,
)
from .detections import Detections
from .geometry import LetterboxGeometry, crop_features_to_frame, letterbox
from .roi_mask import (
    DEFAULT_ROI_CLASSES,
    RoiMaskConfig,
    RoiSelection,
    box_pixel_bounds,
    parse_classes,
    rasterise_boxes,
    roi_boxes,
    roi_keep,
    roi_mask_from_detections,
    select_detections,
    select_roi,
    selected_class_ids,
    unknown_classes,
)

__all__ = [
    "DEFAULT_ROI_CLASSES",
    "WEIGHTS_ENV",
    "DetectorAdapter",
    "DetectorResult",
    "DetectorWeightsError",
    "Detections",
    "LetterboxGeometry",
    "RoiMaskConfig",
    "RoiSelection",
    "box_pixel_bounds",
    "parse_classes",
    "rasterise_boxes",
    "crop_features_to_frame",
    "default_weights_path",
    "keep_torch_threads",
    "letterbox",
    "resolve_device",
    "roi_boxes",
    "roi_keep",
    "roi_mask_from_detections",
    "select_detections",
    "select_roi",
    "selected_class_ids",
    "unknown_classes",
]
