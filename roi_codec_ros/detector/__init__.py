"""Detector adapter: the vehicle's YOLO model, run once per frame, gives the codec features and ROI boxes.

    frame -> DetectorAdapter (letterbox, one forward pass, hooks on the Detect inputs)
          -> DetectorResult(features=[f8, f16, f32] frame-aligned, detections in frame pixels, latency_ms, geometry)
          -> select_roi(detections, (H, W), RoiMaskConfig(...)) -> RoiSelection: selected detections, static boxes,
             every ROI box, .mask() -> HxW float32 mask in [0, 1]   (roi_mask_from_detections = select_roi().mask())

Boxes from elsewhere (another node, hand-placed) enter as ``Detections.from_boxes(...)`` and share the ROI rule.
"""
import importlib

# Lazy exports (PEP 562): the ROI rule and box geometry (numpy only) are usable without loading the YOLO adapter and
# ultralytics, so a decoder process can draw ROI boxes without the detector stack.
_EXPORTS = {
    ".adapter": ["WEIGHTS_ENV", "DetectorAdapter", "DetectorResult", "DetectorWeightsError", "default_weights_path",
                 "keep_torch_threads", "resolve_device"],
    ".detections": ["Detections"],
    ".geometry": ["LetterboxGeometry", "crop_features_to_frame", "letterbox"],
    ".roi_mask": ["DEFAULT_ROI_CLASSES", "RoiMaskConfig", "RoiSelection", "box_pixel_bounds", "parse_classes",
                  "rasterise_boxes", "roi_boxes", "roi_keep", "roi_mask_from_detections", "select_detections",
                  "select_roi", "selected_class_ids", "unknown_classes"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
