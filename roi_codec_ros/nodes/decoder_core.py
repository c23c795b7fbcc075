"""What decoder_node does per frame, without ROS: check the frame is ours, decode, optionally draw the ROI."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from roi_codec_ros.codec import BitstreamError, RoiCodec
from roi_codec_ros.detector import Detections, RoiMaskConfig, roi_mask_from_detections
from roi_codec_ros.detector.overlay import draw_overlay

from .encoder_core import RoiBoxInfo

# draw every box the encoder reported as ROI, exactly as reported (no class/confidence filter, no margin)
_OVERLAY_CONFIG = RoiMaskConfig(classes=None, confidence=0.0, margin_px=0.0)


class ForeignFrameError(BitstreamError):
    """The frame was produced by a different codec model than the decoder's."""


class FrameDecoder:
    def __init__(self, codec: RoiCodec):
        self.codec = codec

    def decode(self, data: bytes | bytearray | memoryview, codec_id: str = "") -> np.ndarray:
        """HxWx3 uint8 RGB; raises ForeignFrameError (other model) or BitstreamError (corrupt data)."""
        if codec_id and codec_id != self.codec.model_id:
            raise ForeignFrameError(
                f"frame from codec model {codec_id[:12]}..., this decoder has {self.codec.model_id[:12]}... "
                "(start the decoder with the encoder's model_path)"
            )
        return self.codec.decode(bytes(data))


def roi_overlay(image: np.ndarray, boxes: Sequence[RoiBoxInfo], dim: float = 0.45) -> np.ndarray:
    """The decoded frame with the encoder's ROI boxes drawn, outside the ROI darkened to ``dim``."""
    image = np.ascontiguousarray(image)  # decoded frames may be a transposed view; OpenCV needs C order
    h, w = image.shape[:2]
    detections = Detections.from_boxes(
        [(b.x1, b.y1, b.x2, b.y2) for b in boxes],
        labels=[b.class_name or str(b.class_id) for b in boxes],
        scores=[b.score for b in boxes],
    )
    mask = roi_mask_from_detections(detections, (h, w), _OVERLAY_CONFIG) if len(boxes) else np.ones((h, w), np.float32)
    return draw_overlay(image, detections, mask, _OVERLAY_CONFIG, dim=dim)
