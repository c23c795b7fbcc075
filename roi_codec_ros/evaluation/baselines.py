"""Classical codecs measured exactly like ours: ``encode(image, boxes) -> bytes`` and ``decode(bytes) -> image``.

Every codec here is one *setting* (a quality or CRF value); a sweep is a list of them sharing a ``family`` (one
RD curve). The bytes are the real payload a receiver needs for the frame:

* ``JpegCodec``   OpenCV (libjpeg-turbo) JPEG, quality 1..100, 4:2:0 chroma, optimised Huffman tables.
* ``WebpCodec``   Pillow (libwebp) lossy WebP, quality 0..100, method 6.
* ``VideoIntraCodec``  x264 / x265 intra only (every frame an IDR picture, decodable on its own), CRF sweep,
  preset medium, 4:2:0 or 4:4:4, through ``roi_codec_ros.classical`` (``X26xEncoder`` / ``X26xDecoder``).
  Colour: BT.601 *full range* converted in numpy (4:2:0: centre siting, chroma fitted to the decoder's bilinear
  up-sampling), signalled in the VUI; PSNR tuning (psy-rd and AQ off). Both choices measured in docs/evaluation.md.
* ``VideoIntraCodec(roi_qoffset=...)``  x264 with region-of-interest quantisation: FFmpeg ROI side data (the
  ``addroi`` regions) from the boxes every codec gets; ``bg_qoffset`` > 0 also coarsens the rest of the frame.
* ``VideoStreamCodec``  x264 / x265 ``tune=zerolatency`` IPPP streams (no B-frames, no lookahead, one packet per
  frame), keyframe interval N or infinite, optional x264 ROI. *Stateful*: frames must arrive in stream order
  (the runner does that: frames outer, settings inner), and ``decode`` must get every payload ``encode`` made, in
  order. A frame's bytes are its packet (with SPS/PPS on keyframes). A new frame size restarts the stream.

Payloads of x264/x265 are Annex-B NAL units without SEI (x264 writes a ~600-byte version/options SEI that no
decoder needs; a real stream would send it at most once) after one leading byte saying whether a column/row of
padding was added to reach the even size 4:2:0 needs.
"""
from __future__ import annotations

import abc
import io
import re

import cv2
import numpy as np
from PIL import Image

from roi_codec_ros.classical import (
    ColourConversion,
    RoiRegion,
    X26xConfig,
    X26xDecoder,
    X26xEncoder,
    pad_to_even,
    regions_from_boxes,
)
from roi_codec_ros.classical.x26x import strip_sei  # noqa: F401  (re-exported: older callers import it from here)

from .metrics import check_image


class Codec(abc.ABC):
    """One codec setting. ``family`` names its RD curve, ``setting`` the point on it."""

    family: str = ""
    setting: str = ""
    takes_roi_mask: bool = False  # encode(..., roi_mask=HxW float32 in [0, 1]) accepted (per-class ROI weights)

    @abc.abstractmethod
    def encode(self, image: np.ndarray, boxes: np.ndarray | None = None, features=None) -> bytes:
        """Compress an HxWx3 uint8 RGB frame; ``boxes`` (K,4) xyxy ROI boxes, ``features`` detector features."""

    @abc.abstractmethod
    def decode(self, data: bytes) -> np.ndarray:
        """Reconstruct the HxWx3 uint8 RGB frame from ``encode``'s bytes."""

    def params(self) -> dict:
        """Setting parameters for reports (JSON-serialisable)."""
        return {}

    @property
    def label(self) -> str:
        return f"{self.family} {self.setting}".strip()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"


class JpegCodec(Codec):
    """OpenCV JPEG at one quality (1..100); 4:2:0 (or 4:4:4), optimised Huffman tables (or the standard ones)."""

    def __init__(self, quality: int, optimize: bool = True, chroma: str = "420", progressive: bool = False):
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
        if chroma not in ("420", "444"):
            raise ValueError(f"JPEG chroma must be 420 or 444, got {chroma!r}")
        self.quality, self.optimize, self.chroma, self.progressive = int(quality), bool(optimize), chroma, progressive
        self.family = "JPEG" if chroma == "420" else "JPEG 444"
        self.setting = f"q={self.quality}"

    def encode(self, image, boxes=None, features=None) -> bytes:
        bgr = cv2.cvtColor(check_image(image), cv2.COLOR_RGB2BGR)
        flags = [cv2.IMWRITE_JPEG_QUALITY, self.quality, cv2.IMWRITE_JPEG_OPTIMIZE, int(self.optimize),
                 cv2.IMWRITE_JPEG_PROGRESSIVE, int(self.progressive), cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                 cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420 if self.chroma == "420" else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
        ok, buf = cv2.imencode(".jpg", bgr, flags)
        if not ok:
            raise RuntimeError("OpenCV failed to encode JPEG")
        return buf.tobytes()

    def decode(self, data: bytes) -> np.ndarray:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError("not a decodable JPEG payload")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def params(self) -> dict:
        return {"quality": self.quality, "optimize": self.optimize, "chroma": self.chroma,
                "progressive": self.progressive}


class WebpCodec(Codec):
    """Pillow lossy WebP at one quality (0..100); method 0 (fast) .. 6 (best compression)."""

    def __init__(self, quality: int, method: int = 6):
        if not 0 <= int(quality) <= 100:
            raise ValueError(f"WebP quality must be in 0..100, got {quality}")
        if not 0 <= int(method) <= 6:
            raise ValueError(f"WebP method must be in 0..6, got {method}")
        self.quality, self.method = int(quality), int(method)
        self.family = "WebP"
        self.setting = f"q={self.quality}"

    def encode(self, image, boxes=None, features=None) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(check_image(image)).save(buf, format="WEBP", quality=self.quality, method=self.method)
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(data)) as im:
                return np.asarray(im.convert("RGB"))
        except Exception as err:  # PIL raises several types for bad data
            raise ValueError(f"not a decodable WebP payload: {err}") from err

    def params(self) -> dict:
        return {"quality": self.quality, "method": self.method}


def box_regions(boxes: np.ndarray | None, height: int, width: int) -> list[tuple[int, int, int, int]]:
    """Integer (x, y, w, h) rectangles of the boxes, with the box rule of ``metrics.boxes_to_mask``."""
    return [(r.x, r.y, r.w, r.h) for r in regions_from_boxes(boxes, height, width, 0.0)]


def roi_regions(boxes, height: int, width: int, roi_qoffset: float | None, bg_qoffset: float = 0.0) -> list[RoiRegion]:
    """ROI side-data regions: one per box at ``roi_qoffset``, then the whole frame at ``bg_qoffset`` if non-zero."""
    return regions_from_boxes(boxes, height, width, roi_qoffset, bg_qoffset)


# Colour conversion of every x264/x265 baseline (see docs/evaluation.md, "Colour conversion", for the measurement).
BASELINE_COLOUR = ColourConversion(matrix="bt601", range="full", siting="center", chroma_filter="fit")
PIX_FMTS = ("yuv420p", "yuv444p")


class _X26xBaseline(Codec):
    """What the intra and stream baselines share: settings, validation, payload framing."""

    ENCODERS = ("x264", "x265")

    def __init__(self, encoder, crf, pix_fmt, preset, tune_psnr, roi_qoffset, bg_qoffset):
        if encoder not in self.ENCODERS:
            raise ValueError(f"encoder must be one of {self.ENCODERS}, got {encoder!r}")
        if pix_fmt not in PIX_FMTS:
            raise ValueError(f"pix_fmt must be one of {PIX_FMTS}, got {pix_fmt!r}")
        for name, value in (("roi_qoffset", roi_qoffset), ("bg_qoffset", bg_qoffset)):
            if value is not None and not -1.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be in [-1, 1] (addroi qoffset), got {value}")
        if roi_qoffset is not None and encoder != "x264":
            raise ValueError("ROI quantisation is only wired for x264")
        self.encoder, self.crf, self.pix_fmt, self.preset = encoder, float(crf), pix_fmt, preset
        self.tune_psnr = bool(tune_psnr)
        self.roi_qoffset = None if roi_qoffset is None else float(roi_qoffset)
        self.bg_qoffset = float(bg_qoffset)
        chroma = pix_fmt[3:6]
        self.colour = ColourConversion(BASELINE_COLOUR.matrix, BASELINE_COLOUR.range, chroma, BASELINE_COLOUR.siting,
                                       BASELINE_COLOUR.chroma_filter if chroma == "420" else "box")
        self.codec_name = "h264" if encoder == "x264" else "hevc"
        self.config = self._config()  # validates the CRF

    def _config(self) -> X26xConfig:
        raise NotImplementedError

    def _psnr_tuning(self) -> dict:
        """psy-rd off and AQ off (x264/x265 ``tune=psnr``; with ROI the coder keeps AQ on at a negligible strength)."""
        return {"psy": False, "aq_mode": 0} if self.tune_psnr else {}

    def _roi_suffix(self) -> str:
        if self.roi_qoffset is None:
            return ""
        return f" ROI q{self.roi_qoffset:+g}" + (f"/bg{self.bg_qoffset:+g}" if self.bg_qoffset else "")

    def params(self) -> dict:
        return {
            "encoder": self.encoder,
            "crf": self.crf,
            "pix_fmt": self.pix_fmt,
            "preset": self.preset,
            "tune_psnr": self.tune_psnr,
            "roi_qoffset": self.roi_qoffset,
            "bg_qoffset": self.bg_qoffset,
            "colour": self.colour.label,
            "codec_params": self.config.codec_params(self.roi_qoffset is not None),
        }

    @staticmethod
    def _unframe(data: bytes, what: str) -> tuple[bytes, int, int]:
        if len(data) < 2 or data[0] > 3:
            raise ValueError(f"not a {what} payload")
        return data[1:], data[0] & 1, data[0] >> 1 & 1

    @staticmethod
    def _crop(rgb: np.ndarray, pad_w: int, pad_h: int) -> np.ndarray:
        return np.ascontiguousarray(rgb[: rgb.shape[0] - pad_h, : rgb.shape[1] - pad_w])


class VideoIntraCodec(_X26xBaseline):
    """x264/x265 intra-only (every frame IDR) at one CRF; optional x264 ROI via FFmpeg ROI side data."""

    def __init__(
        self,
        encoder: str = "x264",
        crf: float = 28,
        pix_fmt: str = "yuv420p",
        preset: str = "medium",
        roi_qoffset: float | None = None,
        bg_qoffset: float = 0.0,
        tune_psnr: bool = True,
    ):
        super().__init__(encoder, crf, pix_fmt, preset, tune_psnr, roi_qoffset, bg_qoffset)
        self.family = f"{encoder} {pix_fmt[3:6]}" + self._roi_suffix()
        self.setting = f"crf={self.crf:g}"

    def _config(self) -> X26xConfig:
        return X26xConfig(encoder=self.encoder, preset=self.preset, crf=self.crf, keyint=1, colour=self.colour,
                          **self._psnr_tuning())

    def encode(self, image, boxes=None, features=None) -> bytes:
        image = check_image(image)
        height, width = image.shape[:2]
        padded, pad_w, pad_h = pad_to_even(image)
        regions = roi_regions(boxes, height, width, self.roi_qoffset, self.bg_qoffset)
        # without ROI boxes this is exactly the plain codec (no ROI side data, no AQ change for it)
        encoder = X26xEncoder(self.config, padded.shape[1], padded.shape[0], want_roi=bool(regions))
        packets = encoder.encode(padded, regions) + encoder.flush()
        return bytes([pad_w | pad_h << 1]) + b"".join(p.data for p in packets)

    def decode(self, data: bytes) -> np.ndarray:
        stream, pad_w, pad_h = self._unframe(data, f"{self.encoder} intra")
        decoder = X26xDecoder(self.codec_name, self.colour)
        frames = decoder.decode(stream) + decoder.flush()
        if not frames:
            raise ValueError(f"{self.codec_name} decoder produced no picture")
        return self._crop(frames[0], pad_w, pad_h)


class VideoStreamCodec(_X26xBaseline):
    """x264/x265 ``tune=zerolatency`` IPPP stream at one CRF (see module doc: stateful, frames in order)."""

    def __init__(
        self,
        encoder: str = "x264",
        crf: float = 28,
        pix_fmt: str = "yuv420p",
        preset: str = "veryfast",
        keyint: int | None = None,
        roi_qoffset: float | None = None,
        bg_qoffset: float = 0.0,
        tune_psnr: bool = True,
        fps: float = 10.0,
    ):
        if keyint is not None and int(keyint) < 1:
            raise ValueError(f"keyint must be >= 1 or None (infinite), got {keyint}")
        self.keyint = None if keyint is None else int(keyint)
        self.fps = float(fps)
        super().__init__(encoder, crf, pix_fmt, preset, tune_psnr, roi_qoffset, bg_qoffset)
        gop = "kinf" if self.keyint is None else f"k{self.keyint}"
        self.family = f"{encoder} {pix_fmt[3:6]} IPPP {preset} {gop}" + self._roi_suffix()
        self.setting = f"crf={self.crf:g}"
        self._encoder: X26xEncoder | None = None
        self._decoder: X26xDecoder | None = None
        self._size: tuple[int, int] | None = None
        self.keyframes = 0

    def _config(self) -> X26xConfig:
        return X26xConfig(encoder=self.encoder, preset=self.preset, tune="zerolatency", crf=self.crf,
                          keyint=self.keyint, colour=self.colour, **self._psnr_tuning())

    def params(self) -> dict:
        return {**super().params(), "keyint": self.keyint, "tune": "zerolatency", "fps": self.fps}

    def reset(self) -> None:
        """Start a new stream with the next frame (an IDR)."""
        self._encoder = self._decoder = self._size = None

    def encode(self, image, boxes=None, features=None) -> bytes:
        image = check_image(image)
        height, width = image.shape[:2]
        if self._size != (height, width):
            padded_h, padded_w = height + height % 2, width + width % 2
            self._encoder = X26xEncoder(self.config, padded_w, padded_h, fps=self.fps,
                                        want_roi=self.roi_qoffset is not None)
            self._size = (height, width)
        padded, pad_w, pad_h = pad_to_even(image)
        regions = roi_regions(boxes, height, width, self.roi_qoffset, self.bg_qoffset)
        (packet,) = self._encoder.encode(padded, regions)
        self.keyframes += packet.keyframe
        return bytes([pad_w | pad_h << 1]) + packet.data

    def decode(self, data: bytes) -> np.ndarray:
        stream, pad_w, pad_h = self._unframe(data, f"{self.encoder} stream")
        if self._decoder is None:
            self._decoder = X26xDecoder(self.codec_name, self.colour)
        frames = self._decoder.decode(stream)
        if len(frames) != 1:
            raise ValueError(f"{self.codec_name} stream decoder returned {len(frames)} pictures for one packet")
        return self._crop(frames[0], pad_w, pad_h)


# Default sweeps: chosen so that the curves span roughly 0.1-2 bpp / 26-40 dB on driving frames.
JPEG_QUALITIES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
WEBP_QUALITIES = (5, 10, 20, 30, 45, 60, 75, 90)
CRF_VALUES = (18, 22, 26, 30, 34, 38, 42)
ROI_QOFFSET = -0.2
STREAM_ROI_QOFFSET = -0.3
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# ``streams``: the zerolatency IPPP families teams stream with (issue 11, item 6).
STREAM_FAMILIES = (
    "x264-ippp-veryfast-k10", "x264-ippp-veryfast-kinf", "x264-ippp-medium-k10", "x264-ippp-medium-kinf",
    "x265-ippp-veryfast-k10", "x265-ippp-veryfast-kinf", "x265-ippp-medium-k10", "x265-ippp-medium-kinf",
    "x264-ippp-veryfast-k10-roi",
)
_VIDEO_NAME = re.compile(
    r"(?P<enc>x264|x265)(?P<chroma>-444|-420)?(?P<ippp>-ippp)?(?:-(?P<preset>" + "|".join(PRESETS) + r"))?"
    r"(?:-k(?P<keyint>\d+|inf))?(?P<roi>-roi)?"
)
KNOWN = ("jpeg, jpeg-444, webp, x264, x264-444, x265, x265-444, x264-roi, "
         "x264|x265[-444]-ippp[-PRESET][-kN|-kinf][-roi] (zerolatency streams), streams")


def baseline_sweep(name: str, values=None, **kwargs) -> list[Codec]:
    """The settings of one baseline family by name (see ``KNOWN``); ``streams`` = all of ``STREAM_FAMILIES``."""
    name = name.lower()
    if name == "jpeg":
        return [JpegCodec(q, **kwargs) for q in values or JPEG_QUALITIES]
    if name == "jpeg-444":
        return [JpegCodec(q, chroma="444", **kwargs) for q in values or JPEG_QUALITIES]
    if name == "webp":
        return [WebpCodec(q, **kwargs) for q in values or WEBP_QUALITIES]
    if name == "streams":
        return [codec for family in STREAM_FAMILIES for codec in baseline_sweep(family, values, **kwargs)]
    match = _VIDEO_NAME.fullmatch(name)
    if not match or (not match["ippp"] and (match["keyint"] or match["preset"])):
        raise ValueError(f"unknown baseline {name!r}; known: {KNOWN}")
    pix_fmt = "yuv444p" if match["chroma"] == "-444" else "yuv420p"
    if match["roi"]:
        kwargs.setdefault("roi_qoffset", STREAM_ROI_QOFFSET if match["ippp"] else ROI_QOFFSET)
    if not match["ippp"]:
        return [VideoIntraCodec(match["enc"], crf, pix_fmt, **kwargs) for crf in values or CRF_VALUES]
    keyint = match["keyint"]
    kwargs.setdefault("keyint", None if keyint in (None, "inf") else int(keyint))
    if match["preset"]:
        kwargs["preset"] = match["preset"]
    return [VideoStreamCodec(match["enc"], crf, pix_fmt, **kwargs) for crf in values or CRF_VALUES]
