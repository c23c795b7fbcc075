"""What decoder_node does per frame, without ROS: check the frame's format and model, decode, optionally draw the ROI.

Imports the codec only: a decoder process needs neither the detector package (ultralytics) nor the encoder.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from roi_codec_ros.codec import BitstreamError, RoiCodec
from roi_codec_ros.codec.bitstream import unpack_frame
from roi_codec_ros.detector.roi_mask import box_pixel_bounds, rasterise_boxes  # numpy only: no detector stack

FORMAT_RCB1 = "rcb1"  # EncodedFrame.FORMAT_RCB1: the ROI codec's .rcb container (docs/bitstream.md)
SUPPORTED_FORMATS = (FORMAT_RCB1,)

ROI_COLOR = (255, 140, 0)  # RGB orange, as the detector's overlays draw ROI boxes


class UnsupportedFormatError(ValueError):
    """EncodedFrame.format names a format this decoder cannot decode."""


class ForeignFrameError(BitstreamError):
    """A valid bitstream made by a different codec model than the decoder's (its model hash differs)."""


class FrameDecoder:
    def __init__(self, codec: RoiCodec):
        self.codec = codec

    def decode(self, data: bytes | bytearray | memoryview, fmt: str = FORMAT_RCB1) -> np.ndarray:
        """HxWx3 uint8 RGB of the size the bitstream says.

        Raises UnsupportedFormatError (``fmt`` unknown), ForeignFrameError (intact bitstream of another model) or
        BitstreamError (corrupt).  The model hash inside the bitstream is the one identity check: it is read
        only after the container's CRC passed, so a damaged frame counts as corrupt, never as foreign.
        """
        if fmt not in SUPPORTED_FORMATS:
            raise UnsupportedFormatError(
                f"format {fmt!r} is not one this decoder decodes ({', '.join(SUPPORTED_FORMATS)})"
            )
        data = bytes(data)
        header, _ = unpack_frame(data)  # container checks (magic, version, lengths, CRC, limits); BitstreamError
        if header.model_hash != self.codec.model_hash:
            raise ForeignFrameError(
                f"made by codec model {header.model_hash.hex()}, this decoder has {self.codec.model_hash.hex()} "
                "(start the decoder with the encoder's model_path)"
            )
        return self.codec.decode(data)


def _corners(box, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The outline of the pixels the box covers (the ROI rule's box_pixel_bounds); cv2 rectangles include their end."""
    c0, r0, c1, r1 = box_pixel_bounds((box.x1, box.y1, box.x2, box.y2), height, width)
    return (c0, r0), (max(c0, c1 - 1), max(r0, r1 - 1))


def roi_overlay(image: np.ndarray, boxes: Iterable, dim: float = 0.45) -> np.ndarray:
    """The decoded frame with the encoder's ROI boxes (objects with x1, y1, x2, y2, class_name, score: RoiBox
    messages) outlined and labelled, everything outside them darkened to ``dim``; unchanged without boxes."""
    import cv2

    out = np.array(image, dtype=np.uint8, order="C")  # decoded frames may be a transposed view; OpenCV needs C order
    boxes = list(boxes)
    if not boxes:
        return out
    h, w = out.shape[:2]
    inside = rasterise_boxes(np.array([[b.x1, b.y1, b.x2, b.y2] for b in boxes], np.float64), h, w)
    corners = [_corners(b, h, w) for b in boxes]
    dimmed = (out.astype(np.float32) * float(dim)).astype(np.uint8)
    out = np.where(inside[..., None] > 0, out, dimmed)
    thick = max(1, round(max(h, w) / 600))
    font_scale = max(0.35, max(h, w) / 1600)
    for box, (p1, p2) in zip(boxes, corners):
        cv2.rectangle(out, p1, p2, ROI_COLOR, thick)
        label = box.class_name if box.class_id < 0 else f"{box.class_name} {box.score:.2f}"
        cv2.putText(out, label, (p1[0] + 2, max(p1[1] - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, font_scale, ROI_COLOR, 1, cv2.LINE_AA)
    return out
