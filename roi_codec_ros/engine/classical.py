"""x264 / x265 real-time engine over ``roi_codec_ros.classical`` (the coder the evaluation's baselines use).

    RGB ──pad to even (last row/column repeated)──ColourConversion──> planes
        ──X26xEncoder (tune=zerolatency: no B-frames, no lookahead, one packet per frame; keyint = the keyframe
                       interval, as the evaluation's stream baselines)
          + ROI regions (FFmpeg ROI side data, the addroi filter's) from the frame's ROI boxes
        ──> Annex-B access unit (SPS/PPS + display-size SEI on keyframes) = EncodedFrame.data, format h264 | hevc

Knobs (the same meaning as for the neural engine; the ROS parameter descriptions are built from these):

* ``rate`` -> CRF = 45 - 30 * rate (rate 0 = CRF 45, 0.5 = CRF 30, 1 = CRF 15): linear in CRF is log-linear in
  bits (+6 CRF ~ half the bitrate), like the neural rate knob.  The encoder is opened at the CRF of the rate in
  force; a live change applies on the next frame as a uniform QP offset in the ROI side data, (CRF(new) -
  CRF(open)) / qcomp for inter frames (``QCOMP``: x264/x265's CRF gives back (1 - qcomp) of a uniform offset), and
  the encoder is reopened at the new CRF at the next keyframe (an IDR starts a new stream anyway).
* ``roi_weight`` alpha -> ROI qoffset = -3 * log2(alpha) / 51 for the ROI boxes: weighting ROI distortion alpha
  times means a Lagrangian alpha times smaller there, and H.264/HEVC's lambda doubles every 3 QP, so the ROI QP
  is 3*log2(alpha) lower (alpha 1: 0, 8: -9 QP, 60: -17.7 QP; the evaluation's x264 stream + ROI baseline, qoffset
  -0.3, is alpha 34.3).  Monotone, strictly decreasing; the background keeps the rate's QP.
* ``keyframe_interval`` and ``request_keyframe()``: IDRs forced by this engine (``KeyframePolicy``), with the
  coder's own GOP (keyint) set to the same interval (a live change restarts the stream with a keyframe).  x264/x265
  may add a scene-cut keyframe (``CodedFrame.keyframe`` says so; the interval then counts from it, as x264's
  keyint does); ``ClassicalSettings(scenecut=False)`` makes ``next_is_keyframe`` exact.  One encoder config for
  the engine and the evaluation's x264/x265 stream baselines: ``ClassicalSettings.config`` equals theirs
  (test/test_engine_evaluation.py).
* ``set_target_kbps(k)``: x264's / x265's own ABR with a VBV of 1 s (maxrate k, buffer k), the hook the
  rate-control work measures against the project's controller; a change restarts the stream at the next frame.

Colour: full-range BT.601 4:2:0, centre-sited chroma, signalled in the VUI (the evaluation's choice, docs/
evaluation.md); the chroma filter is ``box`` by default here (the fitted chroma costs ~25 ms per 1242x375 frame on
this CPU, for 0.7-1.4 % of BD-rate), ``fit`` on request (what the evaluation baseline uses).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from roi_codec_ros.classical import (
    ColourConversion,
    RoiRegion,
    X26xConfig,
    X26xDecoder,
    X26xEncoder,
    pad_to_even,
    regions_from_boxes,
)
from roi_codec_ros.codec.bitstream import BitstreamError

from . import annexb
from .base import (
    FORMAT_H264,
    FORMAT_HEVC,
    CodedFrame,
    Engine,
    MissingReferenceError,
    StreamDecoder,
    StreamEncoder,
)

ENGINES = {"x264": FORMAT_H264, "x265": FORMAT_HEVC}
CODEC_OF_FORMAT = {FORMAT_H264: "h264", FORMAT_HEVC: "hevc"}
CRF_AT_RATE_0 = 45.0  # fewest bits
CRF_AT_RATE_1 = 15.0  # most bits
QP_RANGE = 51.0  # libx264/libx265 scale ROI qoffsets by 51 (8-bit): qoffset -1 = 51 QP finer
QP_PER_DOUBLING = 3.0  # H.264/HEVC: lambda ~ 2^((QP - 12) / 3)
ROI_WEIGHT_RANGE = (1.0, 60.0)  # the neural engine's range: the operator's knob means the same
# x264/x265 CRF sets an inter frame's QP from its complexity^(1 - qcomp), and their complexity estimate already
# includes the ROI/AQ offsets: a uniform offset d moves the QP by only qcomp * d.  qcomp = 0.6 is both coders'
# default (no preset or tune changes it).  Measured (nuScenes 1242x376, 9 P-frames, from CRF 30): CRF 24 via
# offsets 147.3 kB / 40.19 dB vs 149.5 kB / 40.18 dB native, CRF 36 34.4 kB vs 32.6 kB (without the 1/qcomp:
# 113.8 kB / 46.3 kB).
QCOMP = 0.6
VBV_SECONDS = 1.0  # native ABR: VBV buffer of this many seconds of the target
MASK_THRESHOLD = 0.5  # a mask without boxes: its components above this become ROI regions

# Real-time defaults: the evaluation's stream + ROI baseline (x264-ippp-veryfast-k10-roi) except the chroma filter.
REALTIME_COLOUR = ColourConversion(matrix="bt601", range="full", chroma="420", siting="center", chroma_filter="box")


def crf_for_rate(rate: float) -> float:
    """CRF of a rate knob value (module doc)."""
    return CRF_AT_RATE_0 - float(rate) * (CRF_AT_RATE_0 - CRF_AT_RATE_1)


def rate_for_crf(crf: float) -> float:
    return (CRF_AT_RATE_0 - float(crf)) / (CRF_AT_RATE_0 - CRF_AT_RATE_1)


def qoffset_for_roi_weight(roi_weight: float) -> float:
    """ROI qoffset (addroi units: QP / 51, negative = finer) of an ROI weight alpha (module doc)."""
    return -QP_PER_DOUBLING * math.log2(float(roi_weight)) / QP_RANGE


def roi_weight_for_qoffset(qoffset: float) -> float:
    """The inverse of ``qoffset_for_roi_weight`` (e.g. the baselines' qoffset -0.3 -> alpha 34.3)."""
    return 2.0 ** (-float(qoffset) * QP_RANGE / QP_PER_DOUBLING)


def _clip_q(q: float) -> float:
    return float(min(1.0, max(-1.0, q)))


def boxes_from_mask(mask: np.ndarray, threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """(K, 4) xyxy boxes around the connected parts of a mask above ``threshold`` (when no boxes are given)."""
    binary = (np.asarray(mask, np.float32) > threshold).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    rows = [(x, y, x + w, y + h) for x, y, w, h, _ in stats[1:count]]
    return np.asarray(rows, np.float64).reshape(-1, 4)


@dataclass(frozen=True)
class ClassicalSettings:
    """What shapes the stream besides the live knobs; defaults = the real-time engine (module doc)."""

    encoder: str = "x264"
    preset: str = "veryfast"
    tune_psnr: bool = True  # psy-rd off and AQ off (ROI keeps AQ on at a negligible strength), as the baselines
    colour: ColourConversion = field(default_factory=lambda: REALTIME_COLOUR)
    threads: int = 1  # 1 = deterministic output, one slice; x264 veryfast at 1242x375 needs ~10 ms on one core
    scenecut: bool = True  # x264's/x265's scene-cut keyframes (as the baselines); False = keyframes only where forced

    def __post_init__(self):
        if self.encoder not in ENGINES:
            raise ValueError(f"classical encoder must be one of {sorted(ENGINES)}, got {self.encoder!r}")
        if self.colour.chroma != "420":
            raise ValueError("the classical engine codes 4:2:0 (what every H.264/HEVC decoder and player takes)")

    def config(self, crf: float | None, bitrate_kbps: float | None = None, keyframe_interval: int = 0) -> X26xConfig:
        """The X26xConfig of a stream at ``crf`` (or x264/x265 ABR at ``bitrate_kbps`` with a 1 s VBV) with the
        coder's own GOP = ``keyframe_interval`` (0 = infinite): the config of the evaluation's
        ``VideoStreamCodec(encoder, crf, keyint=N, roi_qoffset=...)`` when the colour and preset are its own."""
        psnr = {"psy": False, "aq_mode": 0} if self.tune_psnr else {}
        vbv = {}
        if bitrate_kbps is not None:
            vbv = {"vbv_maxrate_kbps": float(bitrate_kbps), "vbv_bufsize_kbit": float(bitrate_kbps) * VBV_SECONDS}
        extra = () if self.scenecut else (("scenecut", "0"),)
        return X26xConfig(encoder=self.encoder, preset=self.preset, tune="zerolatency", crf=crf,
                          bitrate_kbps=bitrate_kbps, keyint=int(keyframe_interval) or None, threads=self.threads,
                          colour=self.colour, extra_params=extra, **psnr, **vbv)


class ClassicalEngine(Engine):
    """x264 (format h264) or x265 (format hevc), tune=zerolatency, ROI from the detector's boxes."""

    uses_features = False

    def __init__(self, settings: ClassicalSettings | None = None, **overrides):
        settings = settings or ClassicalSettings()
        self.settings = replace(settings, **overrides) if overrides else settings
        self.name = self.settings.encoder
        self.format = ENGINES[self.name]
        self.settings.config(crf_for_rate(0.5))  # validates preset-independent settings now, not at the first frame

    @property
    def roi_weight_range(self) -> tuple[float, float]:
        return ROI_WEIGHT_RANGE

    @property
    def rate_mapping(self) -> str:
        return (f"{self.name}: CRF = {CRF_AT_RATE_0:g} - {CRF_AT_RATE_0 - CRF_AT_RATE_1:g}*rate "
                f"(rate 0 = CRF {CRF_AT_RATE_0:g}, 0.5 = CRF {crf_for_rate(0.5):g}, 1 = CRF {CRF_AT_RATE_1:g}; "
                "+6 CRF ~ half the bits); a live change applies from the next frame")

    @property
    def roi_weight_mapping(self) -> str:
        return (f"{self.name}: ROI boxes get QP offset -3*log2(alpha) (addroi qoffset -3*log2(alpha)/51: alpha 8 = -9 QP, "
                "60 = -17.7 QP), the background keeps the rate's QP; 1 = no ROI offset")

    def stream_encoder(self, keyframe_interval: int = 0, fps: float = 10.0) -> "ClassicalStreamEncoder":
        return ClassicalStreamEncoder(self, keyframe_interval, fps)

    def stream_decoder(self) -> "ClassicalStreamDecoder":
        return ClassicalStreamDecoder(self.format, self.settings.colour)

    def describe(self) -> dict:
        s = self.settings
        return {**super().describe(), "preset": s.preset, "tune": "zerolatency", "tune_psnr": s.tune_psnr,
                "colour": s.colour.label, "threads": s.threads,
                "codec_params": s.config(crf_for_rate(0.5)).codec_params(want_roi=True)}


class ClassicalStreamEncoder(StreamEncoder):
    def __init__(self, engine: ClassicalEngine, keyframe_interval: int = 0, fps: float = 10.0):
        super().__init__(keyframe_interval)
        if not float(fps) > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.engine, self.fps = engine, float(fps)
        self.format = engine.format
        self.codec_name = CODEC_OF_FORMAT[engine.format]
        self._encoder: X26xEncoder | None = None
        self._size: tuple[int, int] | None = None
        self._open_crf: float | None = None  # CRF the open encoder runs at (None in ABR mode)
        self._target_kbps = 0.0  # 0 = CRF from `rate`
        self._open_target = 0.0
        self._open_interval: int | None = None  # the coder's own GOP length (keyint) of the open encoder
        self.reopened = 0  # encoders opened (stream restarts), for tests and statistics

    @property
    def native_rate_control(self) -> bool:
        return True

    def set_target_kbps(self, kbps: float) -> None:
        """x264's/x265's own ABR + 1 s VBV at ``kbps`` (0 = off: CRF from ``rate``); restarts the stream with a
        keyframe at the next frame (X26xEncoder fixes the rate-control mode when it opens the encoder)."""
        kbps = float(kbps)
        if not math.isfinite(kbps) or kbps < 0:
            raise ValueError(f"target_kbps must be >= 0 (0 = off), got {kbps}")
        if kbps != self._target_kbps:
            self._target_kbps = kbps
            self.request_keyframe()

    def _open(self, height: int, width: int, crf: float) -> None:
        target, interval = self._target_kbps, self.keyframe_interval
        config = self.engine.settings.config(None if target else crf, target or None, interval)
        # padded to even sizes (4:2:0); want_roi always: AQ settings stay the same whatever the ROI of a frame
        self._encoder = X26xEncoder(config, width + width % 2, height + height % 2, fps=self.fps, want_roi=True)
        self._size, self._open_crf, self._open_target = (height, width), (None if target else crf), target
        self._open_interval = interval
        self.reopened += 1

    def set_keyframe_interval(self, frames: int) -> None:
        """Applies from the next frame, which is then a keyframe: the coder's own GOP length (keyint, which its
        scene-cut decisions depend on) is fixed when it opens, so the stream restarts."""
        super().set_keyframe_interval(frames)
        if self._encoder is not None and self.keyframe_interval != self._open_interval:
            self.request_keyframe()

    def encode(self, rgb, *, roi_mask=None, boxes=None, features=None, rate=0.5, roi_weight=1.0) -> CodedFrame:
        start = time.perf_counter()
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"image must be an HxWx3 uint8 RGB array, got {getattr(rgb, 'dtype', type(rgb))} "
                             f"{getattr(rgb, 'shape', '')}")
        height, width = rgb.shape[:2]
        keyframe = self._size != (height, width) or self.keyframes.next_is_keyframe
        # a scene-cut keyframe x264 adds keeps the frame's weight
        roi_weight = self._roi_weight_for(keyframe, roi_weight)
        self.engine.check(rate, roi_weight)  # before any state changes: a refused frame loses nothing
        if self._size != (height, width):
            self.keyframes.restart()
        crf = crf_for_rate(rate)
        if (self._encoder is None or self._size != (height, width)
                or (keyframe and (self._target_kbps != self._open_target or self.keyframe_interval != self._open_interval
                                  or (not self._target_kbps and crf != self._open_crf)))):
            self._open(height, width, crf)  # a new stream: its first frame is an IDR
        padded, pad_w, pad_h = pad_to_even(rgb)
        planes = self.engine.settings.colour.rgb_to_planes(padded)
        converted = time.perf_counter()
        regions, roi_q, delta_q = self._regions(roi_mask, boxes, height, width, crf, roi_weight, padded.shape, keyframe)
        (packet,) = self._encoder.encode_planes(planes, regions, keyframe=keyframe)
        coded = time.perf_counter()
        data = packet.data
        if packet.keyframe and (pad_w or pad_h):
            data = annexb.insert_before_first_slice(data, annexb.size_sei(width, height, self.codec_name), self.codec_name)
        self.keyframes.coded(packet.keyframe)
        end = time.perf_counter()
        params = {"crf": None if self._target_kbps else crf, "target_kbps": self._target_kbps or None,
                  "roi_qoffset": roi_q, "frame_qp_offset": delta_q * QP_RANGE, "regions": len(regions)}
        return CodedFrame(
            data=data, format=self.format, keyframe=bool(packet.keyframe), height=height, width=width,
            rate=float(rate), roi_weight=float(roi_weight), encode_ms=(end - start) * 1e3,
            timings_ms={"convert": (converted - start) * 1e3, "encode": (coded - converted) * 1e3,
                        "pack": (end - coded) * 1e3},
            params=params,
        )

    def _regions(self, roi_mask, boxes, height, width, crf, roi_weight, padded_shape, keyframe):
        """ROI side-data regions: the boxes at the ROI offset (plus the frame offset), then the whole frame at the
        frame offset when it is not zero (the first listed region wins).  Frame offset of an inter frame =
        (CRF(rate) - CRF(open)) / QCOMP in QP (module doc); keyframes run at CRF(rate) itself (reopened)."""
        delta_q = 0.0
        if self._open_crf is not None and not keyframe:
            delta_q = (crf - self._open_crf) / QCOMP / QP_RANGE
        roi_q = qoffset_for_roi_weight(roi_weight)
        if boxes is None and roi_mask is not None:
            boxes = boxes_from_mask(roi_mask)
        regions: list[RoiRegion] = []
        if roi_q and boxes is not None and len(boxes):
            regions = regions_from_boxes(boxes, height, width, _clip_q(roi_q + delta_q))
        roi_q = roi_q if regions else 0.0
        if delta_q or self.engine.name == "x265":
            # x265 sizes its picture pool's QP-offset buffers on the first frames: ROI side data that appears only
            # later crashed it (segfault, libx265 via FFmpeg 8.1 here), so every x265 frame carries a region
            regions.append(RoiRegion(0, 0, padded_shape[1], padded_shape[0], _clip_q(delta_q)))
        return regions, roi_q, delta_q


class ClassicalStreamDecoder(StreamDecoder):
    """h264 / hevc access units -> RGB at the display size; refuses inter frames without their reference."""

    def __init__(self, fmt: str = FORMAT_H264, colour: ColourConversion | None = None):
        if fmt not in CODEC_OF_FORMAT:
            raise ValueError(f"classical formats are {sorted(CODEC_OF_FORMAT)}, got {fmt!r}")
        self.formats = (fmt,)
        self.codec_name = CODEC_OF_FORMAT[fmt]
        self.colour = colour or REALTIME_COLOUR  # for what a stream does not signal (chroma siting)
        self.reset()

    def reset(self) -> None:
        # a fresh libavcodec decoder: nothing of the old stream can be referenced by mistake
        self._decoder = X26xDecoder(self.codec_name, self.colour, strict=True)  # damage raises, never a garbage picture
        self._has_reference = False
        self._display: tuple[int, int] | None = None

    @property
    def has_reference(self) -> bool:
        return self._has_reference

    def decode(self, data: bytes, fmt: str | None = None) -> np.ndarray:
        self._check_format(fmt)
        data = bytes(data)
        keyframe = annexb.is_keyframe(data, self.codec_name)
        if not keyframe and not self._has_reference:
            raise MissingReferenceError(
                f"{self.codec_name} inter frame without its reference (frames lost, or the stream joined after its "
                "keyframe): waiting for the next keyframe"
            )
        display = annexb.read_size_sei(data, self.codec_name) if keyframe else self._display
        try:
            frames = self._decoder.decode(data)
        except ValueError as exc:
            self.reset()
            raise BitstreamError(f"{self.codec_name} frame could not be decoded: {exc}") from exc
        if len(frames) != 1:
            self.reset()  # one access unit in, one picture out (no frame threading): anything else is damage
            raise BitstreamError(f"{self.codec_name} access unit gave {len(frames)} pictures, expected 1")
        image = frames[0]
        if display is not None:
            width, height = display
            if not (0 < width <= image.shape[1] and 0 < height <= image.shape[0]):
                self.reset()
                raise BitstreamError(f"display size {width}x{height} does not fit the coded {image.shape[1]}x{image.shape[0]}")
            image = np.ascontiguousarray(image[:height, :width])
        self._has_reference, self._display = True, display
        return image
