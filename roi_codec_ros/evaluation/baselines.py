"""Classical codecs measured exactly like ours: ``encode(image, boxes) -> bytes`` and ``decode(bytes) -> image``.

Every codec here is one *setting* (a quality or CRF value); a sweep is a list of them sharing a ``family`` (one
RD curve). The bytes are the real payload a receiver needs to decode the frame on its own:

* ``JpegCodec``   OpenCV JPEG (baseline, 4:2:0 chroma), quality 1..100.
* ``WebpCodec``   Pillow WebP (lossy, method 4), quality 0..100.
* ``VideoIntraCodec``  x264 / x265 through PyAV (libavcodec), every frame an IDR picture (keyint=1), CRF rate
  control, yuv420p or yuv444p. RGB<->YUV conversion is swscale's default (BT.601, limited range) both ways, so
  its rounding loss is part of the codec (~42 dB for 4:2:0, ~52 dB for 4:4:4 at CRF 0 on Kodak).
  The payload is the Annex-B stream (SPS/PPS + slice NAL units) of that one frame, minus SEI NAL units
  (x264 writes a ~600-byte SEI with its version and options into every stream; a decoder does not need it and a
  real stream sends it at most once), plus one leading byte saying whether a column/row of padding was added
  to reach the even size 4:2:0 needs.
* ``VideoIntraCodec(roi_qoffset=...)``  x264 with region-of-interest quantisation: the frame passes through
  libavfilter's ``addroi`` filter once per box (the same boxes every codec gets), which attaches
  AVRegionOfInterest side data; libx264 turns it into per-macroblock QP offsets. libx264 only honours ROIs with
  adaptive quantisation on, so aq-mode=1 is set explicitly. ``bg_qoffset`` > 0 optionally also coarsens the
  rest of the frame (a full-frame region listed after the boxes; the first listed region wins on overlap).
"""
from __future__ import annotations

import abc
import fractions
import io
import re

import av
import av.filter
import cv2
import numpy as np
from PIL import Image

from .metrics import check_image

# Annex-B NAL unit types that carry SEI (not needed to decode a picture).
_SEI_TYPES = {"h264": {6}, "hevc": {39, 40}}
_START_CODE = re.compile(b"\x00\x00\x01")


class Codec(abc.ABC):
    """One codec setting. ``family`` names its RD curve, ``setting`` the point on it."""

    family: str = ""
    setting: str = ""

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
    """OpenCV JPEG at one quality (1..100)."""

    def __init__(self, quality: int):
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
        self.quality = int(quality)
        self.family = "JPEG"
        self.setting = f"q={self.quality}"

    def encode(self, image, boxes=None, features=None) -> bytes:
        bgr = cv2.cvtColor(check_image(image), cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError("OpenCV failed to encode JPEG")
        return buf.tobytes()

    def decode(self, data: bytes) -> np.ndarray:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError("not a decodable JPEG payload")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def params(self) -> dict:
        return {"quality": self.quality}


class WebpCodec(Codec):
    """Pillow lossy WebP at one quality (0..100)."""

    def __init__(self, quality: int, method: int = 4):
        if not 0 <= int(quality) <= 100:
            raise ValueError(f"WebP quality must be in 0..100, got {quality}")
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


def _strip_sei(stream: bytes, codec: str) -> bytes:
    """Drop SEI NAL units from an Annex-B stream (emulation prevention keeps 00 00 01 out of payloads)."""
    starts = [m.start() for m in _START_CODE.finditer(stream)]
    kept = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(stream)
        header = stream[start + 3] if start + 3 < len(stream) else 0
        nal_type = header & 0x1F if codec == "h264" else (header >> 1) & 0x3F
        if nal_type not in _SEI_TYPES[codec]:
            kept.append(stream[start:end])
    return b"".join(kept)


def box_regions(boxes: np.ndarray | None, height: int, width: int) -> list[tuple[int, int, int, int]]:
    """Integer (x, y, w, h) rectangles of the boxes, with the pixel-centre rule of ``metrics.boxes_to_mask``."""
    out = []
    if boxes is None:
        return out
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        c1, c2 = (int(np.clip(np.ceil(v - 0.5), 0, width)) for v in (x1, x2))
        r1, r2 = (int(np.clip(np.ceil(v - 0.5), 0, height)) for v in (y1, y2))
        if c2 > c1 and r2 > r1:
            out.append((c1, r1, c2 - c1, r2 - r1))
    return out


class VideoIntraCodec(Codec):
    """x264/x265 intra-only (every frame IDR) at one CRF, through PyAV; optional x264 ROI via ``addroi``."""

    ENCODERS = {"x264": ("libx264", "h264", 51), "x265": ("libx265", "hevc", 51)}
    PIX_FMTS = ("yuv420p", "yuv444p")

    def __init__(
        self,
        encoder: str = "x264",
        crf: float = 28,
        pix_fmt: str = "yuv420p",
        preset: str = "medium",
        roi_qoffset: float | None = None,
        bg_qoffset: float = 0.0,
    ):
        if encoder not in self.ENCODERS:
            raise ValueError(f"encoder must be one of {sorted(self.ENCODERS)}, got {encoder!r}")
        if pix_fmt not in self.PIX_FMTS:
            raise ValueError(f"pix_fmt must be one of {self.PIX_FMTS}, got {pix_fmt!r}")
        self.lib, self.decoder_name, max_crf = self.ENCODERS[encoder]
        if not 0 <= float(crf) <= max_crf:
            raise ValueError(f"CRF must be in 0..{max_crf}, got {crf}")
        for name, value in (("roi_qoffset", roi_qoffset), ("bg_qoffset", bg_qoffset)):
            if value is not None and not -1.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be in [-1, 1] (addroi qoffset), got {value}")
        if roi_qoffset is not None and encoder != "x264":
            raise ValueError("ROI quantisation is only wired for x264")
        if self.lib not in av.codecs_available:
            raise RuntimeError(f"this PyAV build has no {self.lib} encoder")
        self.encoder, self.crf, self.pix_fmt, self.preset = encoder, float(crf), pix_fmt, preset
        self.roi_qoffset = None if roi_qoffset is None else float(roi_qoffset)
        self.bg_qoffset = float(bg_qoffset)
        chroma = pix_fmt[3:6]  # "420" / "444"
        self.family = f"{encoder} {chroma}"
        if self.roi_qoffset is not None:
            self.family += f" ROI q{self.roi_qoffset:+g}" + (f"/bg{self.bg_qoffset:+g}" if self.bg_qoffset else "")
        self.setting = f"crf={self.crf:g}"

    def params(self) -> dict:
        return {
            "encoder": self.encoder,
            "crf": self.crf,
            "pix_fmt": self.pix_fmt,
            "preset": self.preset,
            "roi_qoffset": self.roi_qoffset,
            "bg_qoffset": self.bg_qoffset,
        }

    def _context(self, width: int, height: int) -> av.CodecContext:
        ctx = av.CodecContext.create(self.lib, "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, self.pix_fmt
        ctx.time_base = fractions.Fraction(1, 25)
        options = {"crf": f"{self.crf:g}", "preset": self.preset}
        if self.encoder == "x264":
            options["x264-params"] = "keyint=1:aq-mode=1"
        else:
            options["x265-params"] = "keyint=1:info=0:log-level=error"
        ctx.options = options
        return ctx

    def _with_regions(self, frame: av.VideoFrame, regions: list[tuple[int, int, int, int]]) -> av.VideoFrame:
        """Attach ROI side data with a chain of ``addroi`` filters (boxes first, then the background)."""
        specs = [(x, y, w, h, self.roi_qoffset) for x, y, w, h in regions]
        if self.bg_qoffset:
            specs.append((0, 0, frame.width, frame.height, self.bg_qoffset))
        if not specs:
            return frame
        graph = av.filter.Graph()
        last = graph.add_buffer(
            width=frame.width, height=frame.height, format=frame.format.name, time_base=fractions.Fraction(1, 25)
        )
        source = last
        for x, y, w, h, q in specs:
            node = graph.add("addroi", x=str(x), y=str(y), w=str(w), h=str(h), qoffset=f"{q:g}")
            last.link_to(node)
            last = node
        sink = graph.add("buffersink")
        last.link_to(sink)
        graph.configure()
        source.push(frame)
        return sink.pull()

    def encode(self, image, boxes=None, features=None) -> bytes:
        image = check_image(image)
        height, width = image.shape[:2]
        pad_w, pad_h = width % 2, height % 2
        if pad_w or pad_h:  # 4:2:0 needs even sizes: replicate the last column/row, drop it after decoding
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=self.pix_fmt)
        frame.pts = 0
        if self.roi_qoffset is not None:
            frame = self._with_regions(frame, box_regions(boxes, height, width))
        ctx = self._context(width + pad_w, height + pad_h)
        packets = list(ctx.encode(frame)) + list(ctx.encode(None))
        stream = _strip_sei(b"".join(bytes(p) for p in packets), self.decoder_name)
        return bytes([pad_w | pad_h << 1]) + stream

    def decode(self, data: bytes) -> np.ndarray:
        if len(data) < 2 or data[0] > 3:
            raise ValueError(f"not a {self.encoder} intra payload")
        ctx = av.CodecContext.create(self.decoder_name, "r")
        try:
            frames = list(ctx.decode(av.Packet(data[1:]))) + list(ctx.decode(None))
        except av.error.FFmpegError as err:
            raise ValueError(f"{self.decoder_name} decoder rejected the payload: {err}") from err
        if not frames:
            raise ValueError(f"{self.decoder_name} decoder produced no picture")
        rgb = frames[0].reformat(format="rgb24").to_ndarray()
        pad_w, pad_h = data[0] & 1, data[0] >> 1 & 1
        return np.ascontiguousarray(rgb[: rgb.shape[0] - pad_h, : rgb.shape[1] - pad_w])


# Default sweeps: chosen so that the curves span roughly 0.1-2 bpp / 26-40 dB on driving frames.
JPEG_QUALITIES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
WEBP_QUALITIES = (5, 10, 20, 30, 45, 60, 75, 90)
CRF_VALUES = (18, 22, 26, 30, 34, 38, 42)
ROI_QOFFSET = -0.2


def baseline_sweep(name: str, values=None, **kwargs) -> list[Codec]:
    """The settings of one baseline family by name: jpeg, webp, x264, x264-444, x265, x265-444, x264-roi."""
    name = name.lower()
    if name == "jpeg":
        return [JpegCodec(q) for q in values or JPEG_QUALITIES]
    if name == "webp":
        return [WebpCodec(q, **kwargs) for q in values or WEBP_QUALITIES]
    match = re.fullmatch(r"(x264|x265)(-444|-420)?(-roi)?", name)
    if not match:
        raise ValueError(
            f"unknown baseline {name!r}; known: jpeg, webp, x264, x264-444, x265, x265-444, x264-roi"
        )
    encoder, chroma, roi = match.groups()
    pix_fmt = "yuv444p" if chroma == "-444" else "yuv420p"
    if roi:
        kwargs.setdefault("roi_qoffset", ROI_QOFFSET)
    return [VideoIntraCodec(encoder, crf, pix_fmt, **kwargs) for crf in values or CRF_VALUES]
