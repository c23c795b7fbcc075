"""Hardware H.264/HEVC encoders of the FFmpeg build (``h264_nvenc``, ``hevc_nvenc``, ``h264_v4l2m2m``): detected, not
assumed.

Detection (``probe``) at start: the encoder must be in this PyAV/FFmpeg build *and* open on this machine *and*
return exactly one packet per frame for three frames (low delay; a 256x128 test pattern).  The reason it is not
usable (not compiled in; "Cannot load libcuda.so.1"; "Could not find a valid device"; held frames back) is kept and
shown (``roi-codec engines``, the encoder node's start-up error).  Whether the encoder honours FFmpeg's ROI side
data is also measured there, not assumed: one intra frame coded with and without an ROI region (qoffset -0.5) on
its left half; the left half's PSNR must gain more than 1 dB on the right half's; otherwise the ROI weight has no
effect with this encoder, and the parameter description says so.

Knobs: ``rate`` -> constant QP = round(CRF(rate)) of the classical engine (nvenc ``rc=constqp``), or, for an
encoder without a constant-quality mode (v4l2m2m), a bitrate 250 kbit/s * 32^rate (250 ... 8000 kbit/s, the
teleoperation range); ``roi_weight`` -> the classical engine's qoffset where ROI is honoured.  The encoder's
quality is fixed when it opens, so a rate change restarts the stream (an IDR) at the next frame.  Keyframes:
forced IDRs (``KeyframePolicy``), the encoder's own GOP set to its maximum.

Verified here only through the probe's failure paths (this machine has no NVENC or V4L2 encoder); the encoding
path itself runs in the tests with ``libx264`` standing in for the hardware encoder (``HardwareSpec``).
"""
from __future__ import annotations

import fractions
import time
from dataclasses import dataclass, field

import av
import av.logging
import numpy as np

from roi_codec_ros.classical import ColourConversion, RoiRegion, pad_to_even, regions_from_boxes, strip_sei
from roi_codec_ros.classical.x26x import planes_to_frame, with_regions  # the one ROI side-data attachment

from . import annexb
from .base import FORMAT_H264, FORMAT_HEVC, CodedFrame, Engine, StreamEncoder
from .classical import (
    CODEC_OF_FORMAT,
    REALTIME_COLOUR,
    ROI_WEIGHT_RANGE,
    ClassicalStreamDecoder,
    boxes_from_mask,
    crf_for_rate,
    qoffset_for_roi_weight,
)

KBPS_AT_RATE_0 = 250.0
KBPS_RATIO = 32.0  # rate 1 = 8000 kbit/s
PROBE_SIZE = (128, 256)  # height, width of the probe frames
PROBE_FRAMES = 3
ROI_PROBE_MIN_GAIN_DB = 1.0  # PSNR of a qoffset -0.5 half frame vs the other half, with minus without the region
MAX_GOP = 2**30  # the encoder never inserts keyframes of its own (this engine forces them)


@dataclass(frozen=True)
class HardwareSpec:
    """How to drive one FFmpeg encoder in low-delay mode (options are the encoder's own AVOptions)."""

    codec: str
    format: str
    options: tuple[tuple[str, str], ...] = ()
    quality: str = "qp"  # "qp": constant-QP option ``qp``; "crf": option ``crf``; "bitrate": ``bit_rate`` from rate
    colour: ColourConversion = field(default_factory=lambda: REALTIME_COLOUR)


SPECS = {
    "h264_nvenc": HardwareSpec("h264_nvenc", FORMAT_H264, (("preset", "p1"), ("tune", "ull"), ("zerolatency", "1"),
                                                           ("delay", "0"), ("bf", "0"), ("rc", "constqp"),
                                                           ("forced-idr", "1"))),
    "hevc_nvenc": HardwareSpec("hevc_nvenc", FORMAT_HEVC, (("preset", "p1"), ("tune", "ull"), ("zerolatency", "1"),
                                                           ("delay", "0"), ("bf", "0"), ("rc", "constqp"),
                                                           ("forced-idr", "1"))),
    "h264_v4l2m2m": HardwareSpec("h264_v4l2m2m", FORMAT_H264, (), quality="bitrate"),
}


def kbps_for_rate(rate: float) -> float:
    return KBPS_AT_RATE_0 * KBPS_RATIO ** float(rate)


def _test_pattern(height: int, width: int, seed: int) -> np.ndarray:
    """Sinusoids plus a little noise: detail whose PSNR follows the QP (pure noise would cap it)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([128 + 90 * np.sin(x / 5.0) * np.cos(y / 7.0), 128 + 80 * np.sin((x + y) / 9.0),
                     128 + 70 * np.cos(x / 4.0 - y / 11.0)], -1)
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


class _Context:
    """One opened FFmpeg encoder of a spec: planes in, Annex-B packets out."""

    def __init__(self, spec: HardwareSpec, width: int, height: int, fps: float, rate: float):
        rate_q = fractions.Fraction(fps).limit_denominator(1001)
        self.spec, self.time_base = spec, 1 / rate_q
        ctx = av.CodecContext.create(spec.codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, spec.colour.pix_fmt
        ctx.time_base, ctx.framerate = self.time_base, rate_q
        ctx.gop_size, ctx.max_b_frames = MAX_GOP, 0
        ctx.color_range = 2 if spec.colour.range == "full" else 1  # AVColorRange: signalled in the VUI
        ctx.colorspace = 6 if spec.colour.matrix == "bt601" else 1  # AVColorSpace SMPTE 170M | BT.709
        options = dict(spec.options)
        if spec.quality == "qp":
            options["qp"] = str(int(round(crf_for_rate(rate))))
        elif spec.quality == "crf":
            options["crf"] = f"{crf_for_rate(rate):g}"
        else:
            ctx.bit_rate = int(kbps_for_rate(rate) * 1000)
        ctx.options = options
        ctx.open()
        self.ctx, self.count = ctx, 0

    def encode(self, planes, regions, keyframe: bool) -> list[tuple[bytes, bool]]:
        frame = planes_to_frame(planes, self.spec.colour)
        frame.pts, frame.time_base = self.count, self.time_base
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        if regions:
            frame = with_regions(frame, regions, self.time_base)
        self.count += 1
        codec = CODEC_OF_FORMAT[self.spec.format]
        return [(strip_sei(bytes(p), codec), bool(p.is_keyframe)) for p in self.ctx.encode(frame)]


def probe(spec: HardwareSpec) -> tuple[str | None, bool]:
    """(None if usable else the reason, whether ROI side data changes the output) for one encoder."""
    if spec.codec not in av.codecs_available:
        return f"{spec.codec} is not in this FFmpeg build (PyAV {av.__version__})", False
    height, width = PROBE_SIZE
    colour = spec.colour
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)  # so that the open error carries FFmpeg's reason (e.g. no libcuda)
    capture = av.logging.Capture()  # ... without printing FFmpeg's log lines
    capture.__enter__()
    try:
        context = _Context(spec, width, height, 10.0, 0.5)
        for i in range(PROBE_FRAMES):
            packets = context.encode(colour.rgb_to_planes(_test_pattern(height, width, i)), [], keyframe=i == 0)
            if len(packets) != 1:
                return f"{spec.codec} returned {len(packets)} packets for probe frame {i} (not low-delay)", False
        image = _test_pattern(height, width, 9)
        gaps = []
        for regions in ([], [RoiRegion(0, 0, width // 2, height, -0.5)]):
            fresh = _Context(spec, width, height, 10.0, 0.5)
            data = fresh.encode(colour.rgb_to_planes(image), regions, True)[0][0]
            decoder = ClassicalStreamDecoder(spec.format, colour)
            decoded = decoder.decode(data)
            left, right = (_psnr(image[:, s], decoded[:, s]) for s in (np.s_[: width // 2], np.s_[width // 2:]))
            gaps.append(left - right)
    except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as exc:
        text = str(exc)
        reason = text.split("; last error log: ", 1)[1] if "; last error log: " in text else text
        return f"{spec.codec} is in this FFmpeg build but cannot be used here: {reason.strip()}", False
    finally:
        capture.__exit__(None, None, None)
        av.logging.set_level(previous)
    # the region's quality must rise against the rest (a size test would be fooled by frame-level rate control)
    return None, gaps[1] - gaps[0] > ROI_PROBE_MIN_GAIN_DB


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


class HardwareEngine(Engine):
    """A detected hardware encoder (``probe`` passed) with the classical engine's decoder and knob mapping."""

    uses_features = False

    def __init__(self, spec: HardwareSpec, roi_supported: bool):
        self.spec, self.roi_supported = spec, bool(roi_supported)
        self.name, self.format = spec.codec, spec.format

    @classmethod
    def detect(cls, name: str, spec: HardwareSpec | None = None) -> "HardwareEngine":
        """Probe and return the engine; RuntimeError with the reason when the encoder cannot be used here."""
        spec = spec or SPECS[name]
        reason, roi = probe(spec)
        if reason is not None:
            raise RuntimeError(reason)
        return cls(spec, roi)

    @property
    def roi_weight_range(self) -> tuple[float, float]:
        return ROI_WEIGHT_RANGE

    @property
    def rate_mapping(self) -> str:
        if self.spec.quality in ("qp", "crf"):
            what = "constant QP = round(45 - 30*rate)" if self.spec.quality == "qp" else "CRF = 45 - 30*rate"
            return f"{self.name}: {what}; a change restarts the stream (keyframe) at the next frame"
        return (f"{self.name}: bitrate = {KBPS_AT_RATE_0:g} kbit/s * {KBPS_RATIO:g}^rate; a change restarts the "
                "stream (keyframe) at the next frame")

    @property
    def roi_weight_mapping(self) -> str:
        if not self.roi_supported:
            return f"{self.name}: this encoder ignores FFmpeg ROI side data (measured at start): no effect"
        return f"{self.name}: ROI boxes get QP offset -3*log2(alpha) (FFmpeg ROI side data, measured honoured at start)"

    def stream_encoder(self, keyframe_interval: int = 0, fps: float = 10.0) -> "HardwareStreamEncoder":
        return HardwareStreamEncoder(self, keyframe_interval, fps)

    def stream_decoder(self) -> ClassicalStreamDecoder:
        return ClassicalStreamDecoder(self.format, self.spec.colour)

    def describe(self) -> dict:
        return {**super().describe(), "roi_supported": self.roi_supported, "options": dict(self.spec.options),
                "quality": self.spec.quality}


class HardwareStreamEncoder(StreamEncoder):
    def __init__(self, engine: HardwareEngine, keyframe_interval: int = 0, fps: float = 10.0):
        super().__init__(keyframe_interval)
        self.engine, self.fps, self.format = engine, float(fps), engine.format
        self.codec_name = CODEC_OF_FORMAT[engine.format]
        self._context: _Context | None = None
        self._key: tuple | None = None  # (height, width, rate) the open encoder was made for

    def encode(self, rgb, *, roi_mask=None, boxes=None, features=None, rate=0.5, roi_weight=1.0) -> CodedFrame:
        start = time.perf_counter()
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError("image must be an HxWx3 uint8 RGB array")
        self.engine.check(rate, roi_weight)
        height, width = rgb.shape[:2]
        key = (height, width, float(rate))
        if key != self._key:
            self.keyframes.restart()  # new size or quality: a new stream
            self._context = _Context(self.engine.spec, width + width % 2, height + height % 2, self.fps, rate)
            self._key = key
        keyframe = self.keyframes.next_is_keyframe
        padded, pad_w, pad_h = pad_to_even(rgb)
        planes = self.engine.spec.colour.rgb_to_planes(padded)
        regions = []
        q = qoffset_for_roi_weight(roi_weight)
        if boxes is None and roi_mask is not None:
            boxes = boxes_from_mask(roi_mask)
        if self.engine.roi_supported and q and boxes is not None and len(boxes):
            regions = regions_from_boxes(boxes, height, width, max(-1.0, q))
        converted = time.perf_counter()
        packets = self._context.encode(planes, regions, keyframe)
        if len(packets) != 1:
            raise RuntimeError(f"{self.engine.name} returned {len(packets)} packets for one frame (not low-delay)")
        data, is_key = packets[0]
        if is_key and (pad_w or pad_h):
            data = annexb.insert_before_first_slice(data, annexb.size_sei(width, height, self.codec_name), self.codec_name)
        self.keyframes.coded(is_key)
        end = time.perf_counter()
        return CodedFrame(data=data, format=self.format, keyframe=is_key, height=height, width=width, rate=float(rate),
                          roi_weight=float(roi_weight), encode_ms=(end - start) * 1e3,
                          timings_ms={"convert": (converted - start) * 1e3, "encode": (end - converted) * 1e3},
                          params={"regions": len(regions)})
