"""Pictures of what the detector adapter sees: boxes and the ROI mask drawn over the frame."""
from __future__ import annotations

import numpy as np

from .detections import Detections
from .roi_mask import RoiMaskConfig, roi_keep

ROI_COLOR = (255, 140, 0)  # RGB orange: boxes that feed the ROI mask
OTHER_COLOR = (170, 170, 170)  # grey: detected, but not an ROI class / below the ROI confidence
MASK_TINT = (0, 200, 255)  # RGB cyan tint inside the ROI


def draw_overlay(
    image: np.ndarray,
    detections: Detections,
    mask: np.ndarray,
    config: RoiMaskConfig | None = None,
    dim: float = 0.45,
) -> np.ndarray:
    """RGB uint8 picture: outside the ROI darkened to ``dim``, ROI tinted and outlined, boxes labelled.

    Boxes that pass ``config`` (class and confidence) are orange, other detections grey.
    """
    import cv2

    config = config or RoiMaskConfig()
    h, w = image.shape[:2]
    m = np.clip(mask.astype(np.float32), 0.0, 1.0)[..., None]
    tint = np.array(MASK_TINT, np.float32)
    base = image.astype(np.float32)
    roi_look = 0.8 * base + 0.2 * tint
    out = (m * roi_look + (1.0 - m) * dim * base).clip(0, 255).astype(np.uint8)
    contours, _ = cv2.findContours((mask >= 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thick = max(1, round(max(h, w) / 600))
    cv2.drawContours(out, contours, -1, MASK_TINT, thick)

    in_roi = roi_keep(detections, config)
    font_scale = max(0.35, max(h, w) / 1600)
    order = np.argsort(detections.scores)  # strongest drawn last (on top)
    for i in order:
        color = ROI_COLOR if in_roi[i] else OTHER_COLOR
        x1, y1, x2, y2 = (int(round(float(v))) for v in detections.boxes[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick + (1 if in_roi[i] else 0))
        text = f"{detections.label(i)} {detections.scores[i]:.2f}"
        (tw, th), base_line = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        ty = y1 - 2 if y1 - th - base_line - 2 >= 0 else y1 + th + 2
        cv2.rectangle(out, (x1, ty - th - 1), (x1 + tw + 2, ty + base_line - 1), color, -1)
        cv2.putText(out, text, (x1 + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out
