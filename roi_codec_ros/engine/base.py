"""The one interface every coding engine implements (no ROS, no engine-specific imports).

    Engine ──stream_encoder(keyframe_interval, fps)──> StreamEncoder.encode(rgb, roi_mask=, boxes=, features=,
             │                                          rate=, roi_weight=) -> CodedFrame(data, format, keyframe, ...)
             │                                          .request_keyframe() / .set_keyframe_interval(n)
             │                                          .next_is_keyframe / .set_target_kbps(kbps)  (hook)
             └─stream_decoder()──────────────────────> StreamDecoder.decode(data, fmt) -> RGB
                                                        raises BitstreamError; MissingReferenceError (a subclass)
                                                        for an inter frame without its reference; .reset()

An encoder owns one stream (one camera): it decides which frames are keyframes (the first, every
``keyframe_interval``-th, and the next one after ``request_keyframe()``), so a caller (the ROS node, a rate
controller planning I- vs P-frame budgets) knows before encoding (``next_is_keyframe``).  A decoder holds the
reference an inter frame needs; ``reset()`` drops it (the caller saw frames go missing), after which only a keyframe
decodes.  Intra-only engines (the neural codec today) mark every frame a keyframe and need no reference.

``rate`` (0..1, 1 = most bits) and ``roi_weight`` (alpha >= 1, 1 = uniform quality) mean the same to the operator
for every engine; each engine documents how it maps them (``rate_mapping`` / ``roi_weight_mapping``: the ROS
parameter descriptions are built from them).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from roi_codec_ros.codec.bitstream import BitstreamError, MissingReferenceError  # noqa: F401 (part of this interface)
from roi_codec_ros.codec.stream import KeyframePolicy, check_keyframe_interval  # noqa: F401 (one keyframe rule)

# EncodedFrame.format values (msg/EncodedFrame.msg)
FORMAT_RCB1 = "rcb1"  # the ROI codec's .rcb container (docs/bitstream.md)
FORMAT_H264 = "h264"  # H.264 Annex-B access unit (start codes, SPS/PPS before every IDR)
FORMAT_HEVC = "hevc"  # H.265 Annex-B access unit (VPS/SPS/PPS before every IDR)
FORMATS = (FORMAT_RCB1, FORMAT_H264, FORMAT_HEVC)


class UnsupportedFormatError(ValueError):
    """A format this decoder does not decode (EncodedFrame.format unknown or its engine not loaded)."""


class ForeignFrameError(BitstreamError):
    """A valid rcb1 bitstream made by a different codec model than the decoder's (its model hash differs)."""


@dataclass
class CodedFrame:
    """One frame out of ``StreamEncoder.encode``: the bytes to send and what a receiver or controller needs."""

    data: bytes
    format: str
    keyframe: bool
    height: int
    width: int
    rate: float  # the rate the frame was coded with (as the decoder / bitstream sees it)
    roi_weight: float
    encode_ms: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    params: dict = field(default_factory=dict)  # engine-specific settings of this frame (e.g. crf, ROI qoffset)

    @property
    def num_bytes(self) -> int:
        return len(self.data)

    @property
    def bpp(self) -> float:
        return 8.0 * len(self.data) / (self.height * self.width)


class StreamEncoder(abc.ABC):
    """One stream of frames (one camera) of one engine; not thread-safe (one worker calls it)."""

    format: str = ""
    # the ROI weight of planned keyframes (None = each frame's roi_weight); 1 = uniform "HQ I-frames" (Fathima et
    # al. 5.6), so the inter frames do not inherit the background blur of a high ROI weight.  Checked by encode.
    keyframe_roi_weight: float | None = None

    def __init__(self, keyframe_interval: int = 0):
        self.keyframes = KeyframePolicy(keyframe_interval)

    @property
    def keyframe_interval(self) -> int:
        return self.keyframes.interval

    def _roi_weight_for(self, keyframe: bool, roi_weight: float) -> float:
        """The weight a frame is coded at: ``keyframe_roi_weight`` for a planned keyframe when it is set."""
        return self.keyframe_roi_weight if keyframe and self.keyframe_roi_weight is not None else roi_weight

    def set_keyframe_interval(self, frames: int) -> None:
        """Applies from the next frame (counted from the last keyframe)."""
        self.keyframes.set_interval(frames)

    def request_keyframe(self) -> None:
        """The next frame is coded as a keyframe (e.g. a decoder lost its reference)."""
        self.keyframes.request()

    @property
    def next_is_keyframe(self) -> bool:
        """Whether the next ``encode`` will produce a keyframe (for I/P budgeting)."""
        return self.keyframes.next_is_keyframe

    @abc.abstractmethod
    def encode(self, rgb: np.ndarray, *, roi_mask: np.ndarray | None = None, boxes: np.ndarray | None = None,
               features=None, rate: float = 0.5, roi_weight: float = 1.0) -> CodedFrame:
        """Code one HxWx3 uint8 RGB frame.

        roi_mask: HxW in [0, 1] (the detector package's ``select_roi`` mask) or None; boxes: (K, 4) xyxy pixel boxes
        that made the mask (classical engines code ROI per box); features: detector neck maps (engines that
        use them); rate and roi_weight as documented by the engine.  ValueError for a bad frame or knob.
        """

    @property
    def native_rate_control(self) -> bool:
        """True when the engine can track a kbps target by itself (``set_target_kbps``)."""
        return False

    def set_target_kbps(self, kbps: float) -> None:
        """Hook for the rate-control work: hand a kbps target (0 = off: ``rate`` is used) to the engine's own rate
        control.  Engines without one raise NotImplementedError: drive ``rate`` per frame instead
        (``roi_codec_ros.rate_control.RateController``)."""
        raise NotImplementedError(
            f"{type(self).__name__} has no rate control of its own; set `rate` per frame (roi_codec_ros.rate_control)"
        )


class StreamDecoder(abc.ABC):
    """Decodes the frames of one stream in order; not thread-safe."""

    formats: tuple[str, ...] = ()

    @abc.abstractmethod
    def decode(self, data: bytes, fmt: str | None = None) -> np.ndarray:
        """HxWx3 uint8 RGB of one frame. Raises UnsupportedFormatError (``fmt`` not decoded here),
        MissingReferenceError (an inter frame without its reference: reset or lost frames) or BitstreamError."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget every reference (the caller saw frames go missing): the next frame must be a keyframe."""

    @property
    @abc.abstractmethod
    def has_reference(self) -> bool:
        """True when an inter frame following the last decoded one can be decoded."""

    def _check_format(self, fmt: str | None) -> None:
        if fmt is not None and fmt not in self.formats:
            raise UnsupportedFormatError(
                f"format {fmt!r} is not one this decoder decodes ({', '.join(self.formats) or 'none'})"
            )


class Engine(abc.ABC):
    """A coding engine: its knobs, their mapping, and the streams it opens."""

    name: str = ""
    format: str = ""
    uses_features: bool = False  # True: the detector's neck features go into the encoder (object prior)

    @property
    def rate_range(self) -> tuple[float, float]:
        return (0.0, 1.0)

    @property
    @abc.abstractmethod
    def roi_weight_range(self) -> tuple[float, float]:
        """(min, max) ROI weight alpha this engine accepts."""

    def check(self, rate: float, roi_weight: float) -> None:
        """ValueError with the reason when ``rate`` / ``roi_weight`` are outside what this engine takes."""
        lo, hi = self.rate_range
        if not lo <= float(rate) <= hi:
            raise ValueError(f"rate must be in [{lo:g}, {hi:g}], got {rate}")
        a_lo, a_hi = self.roi_weight_range
        if not a_lo <= float(roi_weight) <= a_hi:
            raise ValueError(f"roi_weight must be in [{a_lo:g}, {a_hi:g}] for the {self.name} engine, got {roi_weight}")

    @property
    @abc.abstractmethod
    def rate_mapping(self) -> str:
        """One sentence: what ``rate`` does in this engine (ROS parameter description)."""

    @property
    @abc.abstractmethod
    def roi_weight_mapping(self) -> str:
        """One sentence: what ``roi_weight`` does in this engine (ROS parameter description)."""

    @abc.abstractmethod
    def stream_encoder(self, keyframe_interval: int = 0, fps: float = 10.0) -> StreamEncoder:
        """A new stream (its first frame is a keyframe)."""

    @abc.abstractmethod
    def stream_decoder(self) -> StreamDecoder:
        """A decoder for this engine's streams."""

    def describe(self) -> dict:
        """What a log line or a report should say about this engine (JSON-serialisable)."""
        return {"engine": self.name, "format": self.format}
