"""Our learned codec (``RoiCodec``) behind the same ``encode(image, boxes) / decode(bytes)`` contract as the baselines.

The ROI mask it receives is the hard union of the same boxes every other codec and the ROI metrics use
(``metrics.boxes_to_mask``); detector features are passed through when the evaluation runs a detector, else the
codec zero-fills them (the "without object features" setting of the TUM paper).
"""
from __future__ import annotations

import numpy as np

from .baselines import Codec
from .metrics import boxes_to_mask, check_image

DEFAULT_RATES = (0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95)
DEFAULT_ROI_WEIGHTS = (1.0, 4.0, 16.0)


def load_roi_codec(source: str | None, device: str = "cpu"):
    """``RoiCodec`` from a model path, "default" (shipped model) or "random" (untrained tiny test model)."""
    try:
        from roi_codec_ros.codec import RoiCodec
    except ImportError as err:  # the codec package is part of this repository; say so if it is broken
        raise RuntimeError(f"cannot import roi_codec_ros.codec.RoiCodec: {err}") from err
    if source in (None, "", "default"):
        return RoiCodec.load(None, device=device)
    if source == "random":
        return RoiCodec.random(seed=0, device=device)
    return RoiCodec.load(source, device=device)


class OursCodec(Codec):
    """One (rate, roi_weight) setting of a loaded ``RoiCodec``; settings of one model share the codec object."""

    def __init__(self, codec, rate: float, roi_weight: float = 1.0, name: str = "ours"):
        low, high = codec.rate_range
        if not low <= float(rate) <= high:
            raise ValueError(f"rate must be in [{low}, {high}], got {rate}")
        a_low, a_high = codec.roi_weight_range
        if not a_low <= float(roi_weight) <= a_high:
            raise ValueError(f"roi_weight must be in [{a_low}, {a_high}] for this model, got {roi_weight}")
        self.codec, self.rate, self.roi_weight, self.name = codec, float(rate), float(roi_weight), name
        self.family = f"{name} α={self.roi_weight:g}"
        self.setting = f"rate={self.rate:g}"

    def encode(self, image, boxes=None, features=None) -> bytes:
        image = check_image(image)
        mask = None
        if boxes is not None and len(boxes):
            mask = boxes_to_mask(boxes, image.shape[:2]).astype(np.float32)
        frame = self.codec.encode(image, roi_mask=mask, features=features, rate=self.rate, roi_weight=self.roi_weight)
        return frame.data

    def decode(self, data: bytes) -> np.ndarray:
        return self.codec.decode(data)

    def params(self) -> dict:
        return {
            "rate": self.rate,
            "roi_weight": self.roi_weight,
            "model_id": self.codec.model_id,
            "model_path": str(getattr(self.codec, "info", {}).get("path", "")),
        }


def ours_grid(codec, rates=DEFAULT_RATES, roi_weights=DEFAULT_ROI_WEIGHTS, name: str = "ours") -> list[OursCodec]:
    """Settings over the grid rates x roi_weights (one RD curve per roi_weight); weights outside the model's
    range are an error, not silently dropped."""
    return [OursCodec(codec, r, a, name=name) for a in roi_weights for r in rates]
