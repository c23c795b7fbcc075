"""What decoder_node does per frame, without ROS: decode any engine's format, follow the stream, draw the ROI.

    EncodedFrame (format, keyframe, sequence, data)
        --StreamReceiver: sequence gaps, "waiting for a keyframe" (joined mid-stream, lost or broken frame),
                          when to ask the encoder for one (rate-limited)
        --FrameDecoder (engine.AnyFormatDecoder: rcb1 with the codec model, h264/hevc with libavcodec) --> RGB

Stream rules (the same for every engine): a decoder starts waiting for a keyframe; a sequence gap, an inter frame
without its reference or a frame that fails to decode make it wait again.  While waiting, inter frames are
counted (``no_reference``) and never decoded or published, and a keyframe request is due at most every
``request_period_s``.  Intra-only streams (keyframe_interval 1) never wait: every frame is a keyframe.

Imports the codec and the engines' decoders only: a decoder process needs neither the detector package
(ultralytics) nor the encoder.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from roi_codec_ros.codec import BitstreamError, RoiCodec
from roi_codec_ros.detector.roi_mask import box_pixel_bounds, rasterise_boxes  # numpy only: no detector stack
from roi_codec_ros.engine import AnyFormatDecoder
from roi_codec_ros.engine.base import (  # re-exported: the decoder's error kinds
    FORMAT_H264,
    FORMAT_HEVC,
    FORMAT_RCB1,
    ForeignFrameError,
    MissingReferenceError,
    UnsupportedFormatError,
)
from roi_codec_ros.engine.neural import NeuralStreamDecoder

SUPPORTED_FORMATS = (FORMAT_RCB1, FORMAT_H264, FORMAT_HEVC)
ROI_COLOR = (255, 140, 0)  # RGB orange, as the detector's overlays draw ROI boxes

# why a decoder waits for a keyframe (KeyframeRequest.reason)
REASON_JOINED = "joined"
REASON_GAP = "gap"
REASON_ERROR = "error"

__all__ = ["FORMAT_H264", "FORMAT_HEVC", "FORMAT_RCB1", "ForeignFrameError", "FrameDecoder", "MissingReferenceError",
           "Outcome", "StreamReceiver", "SUPPORTED_FORMATS", "UnsupportedFormatError", "roi_overlay"]


class FrameDecoder:
    """Every format by ``EncodedFrame.format``; rcb1 needs the codec model (``codec=None``: rcb1 is unsupported)."""

    def __init__(self, codec: RoiCodec | None):
        self.codec = codec
        self.stream = AnyFormatDecoder(NeuralStreamDecoder(codec) if codec is not None else None)

    @property
    def formats(self) -> tuple[str, ...]:
        return self.stream.formats

    def decode(self, data: bytes | bytearray | memoryview, fmt: str = FORMAT_RCB1) -> np.ndarray:
        """HxWx3 uint8 RGB of the size the bitstream says.

        Raises UnsupportedFormatError (``fmt`` not decoded here), ForeignFrameError (intact rcb1 bitstream of
        another model), MissingReferenceError (inter frame without its reference) or BitstreamError (corrupt).
        """
        return self.stream.decode(bytes(data), fmt)

    def reset(self) -> None:
        self.stream.reset()


@dataclass
class Outcome:
    """What happened to one received frame: ``kind`` is decoded | no_reference | corrupt | foreign | unsupported."""

    kind: str
    image: np.ndarray | None = None
    error: str = ""
    request: str | None = None  # a keyframe request is due now, with this reason


class StreamReceiver:
    """The stream state of one decoder (module doc); ``arrived`` in arrival order, ``process`` in decode order."""

    def __init__(self, decoder: FrameDecoder, request_period_s: float = 0.5):
        self.decoder = decoder
        self.request_period_s = float(request_period_s)
        self.waiting: str | None = REASON_JOINED  # reason we wait for a keyframe, None = in sync
        self._last_sequence: int | None = None
        self._last_request = -float("inf")
        self.lost = 0  # sequence numbers never received
        self.requests = 0

    def arrived(self, sequence: int) -> int:
        """Record a message's sequence number on arrival; returns how many messages before it never arrived
        (a restarted encoder, whose numbers go back, counts as a gap of 0 and a new stream)."""
        previous, self._last_sequence = self._last_sequence, int(sequence)
        if previous is None or sequence == previous + 1:
            return 0
        missing = max(0, int(sequence) - previous - 1)
        self.lost += missing
        return max(missing, 1)

    def process(self, data, fmt: str, keyframe: bool, broken: bool, now: float) -> Outcome:
        """Decode one frame if the stream allows it. ``broken``: frames before it were lost or dropped."""
        if broken:
            self._lose(REASON_GAP)
        if self.waiting is not None and not keyframe:
            return Outcome("no_reference", error=f"waiting for a keyframe ({self.waiting})", request=self._due(now))
        try:
            image = self.decoder.decode(data, fmt)
        except UnsupportedFormatError as exc:
            return Outcome("unsupported", error=str(exc))
        except ForeignFrameError as exc:
            return Outcome("foreign", error=str(exc))  # not this stream's frame: its state is unchanged
        except MissingReferenceError as exc:
            self._lose(REASON_GAP)
            return Outcome("no_reference", error=str(exc), request=self._due(now))
        except BitstreamError as exc:
            self._lose(REASON_ERROR)
            return Outcome("corrupt", error=str(exc), request=self._due(now))
        self.waiting = None
        return Outcome("decoded", image=image)

    def _lose(self, reason: str) -> None:
        self.decoder.reset()
        if self.waiting is None:
            self.waiting = reason

    def _due(self, now: float) -> str | None:
        if now - self._last_request < self.request_period_s:
            return None
        self._last_request = now
        self.requests += 1
        return self.waiting or REASON_ERROR


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
