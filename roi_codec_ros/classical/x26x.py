"""x264 / x265 through PyAV (its bundled libx264/libx265): one encoder and one decoder for evaluation and nodes.

    RGB ──ColourConversion──> Y'CbCr planes ──(ROI regions: addroi side data)──> libx264 | libx265 ──> Packet
    Packet.data = Annex-B NAL units of one frame (SPS/PPS before each IDR, SEI removed)
    Packet.data ──> h264 | hevc decoder (libavcodec, no frame threading: no output delay) ──> planes ──> RGB

``X26xConfig`` says everything that shapes the bitstream: encoder, preset, tune, rate control (CRF or ABR with an
optional VBV), GOP (``keyint``: 1 = intra only, None = infinite), B-frames, adaptive quantisation, threads, the
colour conversion (signalled in the VUI, so the ffmpeg CLI decodes the same planes) and any extra x264/x265
parameters. ``X26xEncoder`` codes frames of one size as one stream: ``encode(rgb, regions, keyframe)`` returns
the packets out for that frame (exactly one with ``low_delay`` = zerolatency configs, checked),
``flush()`` the rest. ``X26xDecoder.decode(data)`` returns the RGB frames a packet completes.

ROI: ``RoiRegion(x, y, w, h, qoffset)`` rectangles become FFmpeg AVRegionOfInterest side data through
libavfilter's ``addroi`` (the side data the ``addroi`` filter of the ffmpeg CLI attaches). libx264/libx265 add
``qoffset * 51`` to the QP of the macroblocks/CTUs they cover (negative = finer), the first listed region winning
on overlap, and only with adaptive quantisation on (the encoder sets ``aq-mode=1`` when ROI is wanted).
"""
from __future__ import annotations

import fractions
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import av
import av.filter
import numpy as np

from .colour import CHROMALOC, FFMPEG_COLORSPACE, ColourConversion

ENCODERS = {"x264": ("libx264", "h264"), "x265": ("libx265", "hevc")}
MAX_CRF = 51.0
# AQ strength used when ROI is wanted but AQ "off" is configured (ROI needs AQ on; x264 treats strength 0 as off).
ROI_AQ_STRENGTH = 0.01
# Annex-B NAL unit types that carry SEI (not needed to decode a picture).
SEI_TYPES = {"h264": {6}, "hevc": {39, 40}}
_START_CODE = re.compile(b"\x00\x00\x01")
# AVColorRange / AVColorSpace values (libavutil/pixfmt.h).
_AV_RANGE = {"limited": 1, "full": 2}
_AV_COLORSPACE = {"bt709": 1, "bt601": 6}  # 6 = SMPTE 170M (BT.601 525); 5 (BT.470BG) has the same matrix
_AV_COLORSPACE_BT601 = {5, 6}
# VUI matrix names of x264 (--colormatrix) and x265 (--colormatrix) for each matrix.
_VUI_MATRIX = {"bt601": "smpte170m", "bt709": "bt709"}
_VUI_PRIMARIES = {"bt601": "smpte170m", "bt709": "bt709"}


@dataclass(frozen=True)
class RoiRegion:
    """A rectangle (pixels, top-left x/y, width, height) whose QP moves by ``qoffset * 51`` (qoffset in [-1, 1])."""

    x: int
    y: int
    w: int
    h: int
    qoffset: float


@dataclass(frozen=True)
class Packet:
    """One coded frame: Annex-B bytes (no SEI), whether it is a keyframe (IDR), and its frame index."""

    data: bytes
    keyframe: bool
    index: int


@dataclass(frozen=True)
class X26xConfig:
    """Everything that shapes an x264/x265 bitstream (see module doc). ``crf`` xor ``bitrate_kbps``."""

    encoder: str = "x264"
    preset: str = "medium"
    tune: str | None = None  # x264: e.g. "psnr", "zerolatency", "psnr,zerolatency"; x265: one of its tunes
    crf: float | None = 23.0
    bitrate_kbps: float | None = None
    vbv_maxrate_kbps: float | None = None
    vbv_bufsize_kbit: float | None = None
    keyint: int | None = None  # 1 = every frame IDR; None = infinite (only the first frame and requested ones)
    bframes: int | None = None  # None = the preset's / tune's
    aq_mode: int | None = None  # None = the preset's / tune's (ROI regions force at least 1)
    aq_strength: float | None = None
    psy: bool | None = None  # False = psy-rd/psy-rdoq off (what tune=psnr does); None = preset's / tune's
    threads: int = 1  # 1: deterministic output and one slice; >1 = x264 threads / x265 pools
    colour: ColourConversion = field(default_factory=ColourConversion)
    extra_params: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {sorted(ENCODERS)}, got {self.encoder!r}")
        if (self.crf is None) == (self.bitrate_kbps is None):
            raise ValueError("give exactly one of crf and bitrate_kbps")
        if self.crf is not None and not 0.0 <= float(self.crf) <= MAX_CRF:
            raise ValueError(f"CRF must be in 0..{MAX_CRF:g}, got {self.crf}")
        if self.bitrate_kbps is not None and not float(self.bitrate_kbps) > 0:
            raise ValueError(f"bitrate_kbps must be > 0, got {self.bitrate_kbps}")
        if self.keyint is not None and int(self.keyint) < 1:
            raise ValueError(f"keyint must be >= 1 or None (infinite), got {self.keyint}")
        if int(self.threads) < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    @property
    def codec_name(self) -> str:
        """The decoder name (and stream format): h264 | hevc."""
        return ENCODERS[self.encoder][1]

    @property
    def zerolatency(self) -> bool:
        return bool(self.tune) and "zerolatency" in self.tune.replace("-", "")

    @property
    def low_delay(self) -> bool:
        """One packet out of ``encode()`` per frame: zerolatency (no B-frames, no lookahead). Other configs
        (also intra-only ones: the lookahead still holds frames back) need ``flush()`` to get every packet."""
        return self.zerolatency

    def with_(self, **changes) -> X26xConfig:
        return replace(self, **changes)

    def codec_params(self, want_roi: bool = False) -> str:
        """The ``x264-params`` / ``x265-params`` string (GOP, B-frames, AQ, psy, threads, VUI colour, extras)."""
        colour = self.colour
        params: dict[str, str] = {}
        keyint = self.keyint
        if self.encoder == "x264":
            params["keyint"] = "infinite" if keyint is None else str(keyint)
            if keyint == 1:
                params["min-keyint"] = "1"
            params["threads"] = str(self.threads)
            if self.threads == 1:
                params["lookahead-threads"] = "1"
            params["range"] = "pc" if colour.range == "full" else "tv"
            params["colormatrix"] = _VUI_MATRIX[colour.matrix]
            params["colorprim"] = _VUI_PRIMARIES[colour.matrix]
            params["transfer"] = _VUI_PRIMARIES[colour.matrix]
            if colour.chroma == "420":
                params["chromaloc"] = str(CHROMALOC[colour.siting])
            if self.psy is False:
                params["psy"] = "0"
        else:
            params["keyint"] = "-1" if keyint is None else str(keyint)
            if keyint == 1:
                params["min-keyint"] = "1"
            params["info"] = "0"
            params["log-level"] = "error"
            params["frame-threads"] = "1"
            params["pools"] = "1" if self.threads == 1 else str(self.threads)
            params["range"] = colour.range
            params["colormatrix"] = _VUI_MATRIX[colour.matrix]
            params["colorprim"] = _VUI_PRIMARIES[colour.matrix]
            params["transfer"] = _VUI_PRIMARIES[colour.matrix]
            if colour.chroma == "420":
                params["chromaloc"] = str(CHROMALOC[colour.siting])
            if self.psy is False:
                params["psy-rd"] = "0"
                params["psy-rdoq"] = "0"
        if self.bframes is not None:
            params["bframes"] = str(self.bframes)
        aq_mode, aq_strength = self.aq_mode, self.aq_strength
        if want_roi and (aq_mode == 0 or aq_strength == 0):
            # libx264/libx265 ignore ROI side data with AQ off, and x264 turns AQ off at strength 0: keep AQ on at
            # a strength too small to matter (measured: same bytes/PSNR as AQ off within 0.1 %)
            aq_mode, aq_strength = 1, ROI_AQ_STRENGTH
        elif want_roi and aq_mode is None:
            aq_mode = 1
        if aq_mode is not None:
            params["aq-mode"] = str(aq_mode)
        if aq_strength is not None:
            params["aq-strength"] = f"{aq_strength:g}"
        if self.vbv_maxrate_kbps is not None:
            params["vbv-maxrate"] = f"{self.vbv_maxrate_kbps:g}"
        if self.vbv_bufsize_kbit is not None:
            params["vbv-bufsize"] = f"{self.vbv_bufsize_kbit:g}"
        params.update(dict(self.extra_params))
        return ":".join(f"{k}={v}" for k, v in params.items())

    def ffmpeg_args(self, want_roi: bool = False) -> list[str]:
        """The same encoder settings as ffmpeg CLI arguments (for cross-checks and documentation)."""
        args = ["-c:v", ENCODERS[self.encoder][0], "-preset", self.preset]
        if self.tune:
            args += ["-tune", self.tune]
        if self.crf is not None:
            args += ["-crf", f"{self.crf:g}"]
        else:
            args += ["-b:v", f"{self.bitrate_kbps:g}k"]
        args += [f"-{self.encoder}-params", self.codec_params(want_roi)]
        colour = self.colour
        args += ["-color_range", "pc" if colour.range == "full" else "tv",
                 "-colorspace", FFMPEG_COLORSPACE[colour.matrix]]
        return args


def strip_sei(stream: bytes, codec_name: str) -> bytes:
    """Drop SEI NAL units from an Annex-B stream (emulation prevention keeps 00 00 01 out of payloads)."""
    starts = [m.start() for m in _START_CODE.finditer(stream)]
    kept = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(stream)
        header = stream[start + 3] if start + 3 < len(stream) else 0
        nal_type = header & 0x1F if codec_name == "h264" else (header >> 1) & 0x3F
        if nal_type not in SEI_TYPES[codec_name]:
            kept.append(stream[start:end])
    return b"".join(kept)


def planes_to_frame(planes: Sequence[np.ndarray], colour: ColourConversion) -> av.VideoFrame:
    """uint8 Y/Cb/Cr planes -> a VideoFrame tagged with the conversion's range and matrix."""
    height, width = planes[0].shape
    frame = av.VideoFrame(width, height, colour.pix_fmt)
    for plane, data in zip(frame.planes, planes):
        rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
        rows[: data.shape[0], : data.shape[1]] = data
    frame.color_range = _AV_RANGE[colour.range]
    frame.colorspace = _AV_COLORSPACE[colour.matrix]
    return frame


def frame_to_planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """A decoded yuv420p/yuv444p VideoFrame -> uint8 [Y, Cb, Cr] planes (copies, without line padding)."""
    fmt = frame.format.name
    if fmt not in ("yuv420p", "yuvj420p", "yuv444p", "yuvj444p"):
        raise ValueError(f"unsupported decoded pixel format {fmt}")
    width, height = frame.width, frame.height
    out = []
    for i, plane in enumerate(frame.planes):
        w, h = (width, height) if i == 0 or "444" in fmt else (width // 2, height // 2)
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        out.append(np.array(rows[:h, :w]))
    return out


def signalled_colour(frame: av.VideoFrame, default: ColourConversion) -> ColourConversion:
    """The conversion a decoded frame signals (range, matrix, chroma format); siting and unsignalled parts from ``default``."""
    fmt = frame.format.name
    chroma = "444" if "444" in fmt else "420"
    colour_range = {1: "limited", 2: "full"}.get(int(frame.color_range), default.range)
    if "yuvj" in fmt:
        colour_range = "full"
    space = int(frame.colorspace)
    matrix = "bt709" if space == 1 else "bt601" if space in _AV_COLORSPACE_BT601 else default.matrix
    return replace(default, range=colour_range, matrix=matrix, chroma=chroma)


class X26xEncoder:
    """One x264/x265 stream of ``width`` x ``height`` RGB frames (even sizes for 4:2:0; see ``pad_to_even``)."""

    def __init__(self, config: X26xConfig, width: int, height: int, fps: float = 10.0, want_roi: bool = False):
        lib = ENCODERS[config.encoder][0]
        if lib not in av.codecs_available:
            raise RuntimeError(f"this PyAV build has no {lib} encoder")
        if config.colour.chroma == "420" and (width % 2 or height % 2):
            raise ValueError(f"4:2:0 needs even frame sizes, got {width}x{height} (pad the frame first)")
        self.config, self.width, self.height = config, int(width), int(height)
        self.want_roi = bool(want_roi)
        rate = fractions.Fraction(fps).limit_denominator(1001)
        self.time_base = 1 / rate  # one tick per frame, as the ffmpeg CLI does
        ctx = av.CodecContext.create(lib, "w")
        ctx.width, ctx.height, ctx.pix_fmt = self.width, self.height, config.colour.pix_fmt
        ctx.time_base = self.time_base
        ctx.framerate = rate
        ctx.color_range = _AV_RANGE[config.colour.range]
        ctx.colorspace = _AV_COLORSPACE[config.colour.matrix]
        options = {"preset": config.preset, "forced-idr": "1"}
        if config.tune:
            options["tune"] = config.tune
        if config.crf is not None:
            options["crf"] = f"{config.crf:g}"
        else:
            ctx.bit_rate = int(config.bitrate_kbps * 1000)
        options[f"{config.encoder}-params"] = config.codec_params(self.want_roi)
        ctx.options = options
        ctx.open()
        self._ctx = ctx
        self._count = 0

    def encode(self, rgb: np.ndarray, regions: Sequence[RoiRegion] = (), keyframe: bool = False) -> list[Packet]:
        """Code one HxWx3 uint8 RGB frame; ``keyframe`` forces an IDR. Returns the packets now complete."""
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"expected a {self.height}x{self.width}x3 uint8 frame, got {rgb.shape} {rgb.dtype}")
        planes = self.config.colour.rgb_to_planes(rgb)
        return self.encode_planes(planes, regions, keyframe)

    def encode_planes(self, planes: Sequence[np.ndarray], regions: Sequence[RoiRegion] = (),
                      keyframe: bool = False) -> list[Packet]:
        """Code Y/Cb/Cr planes already in the configured format."""
        frame = planes_to_frame(planes, self.config.colour)
        frame.pts = self._count
        frame.time_base = self.time_base
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        if regions:
            if not self.want_roi:
                raise ValueError("ROI regions given to an encoder opened without want_roi=True (AQ would ignore them)")
            frame = with_regions(frame, regions, self.time_base)
        self._count += 1
        packets = self._packets(self._ctx.encode(frame))
        if self.config.low_delay and len(packets) != 1:
            raise RuntimeError(f"low-delay encoder returned {len(packets)} packets for one frame")
        return packets

    def flush(self) -> list[Packet]:
        """Drain the encoder (end of stream)."""
        return self._packets(self._ctx.encode(None))

    def _packets(self, packets) -> list[Packet]:
        name = self.config.codec_name
        return [
            Packet(strip_sei(bytes(p), name), bool(p.is_keyframe), -1 if p.pts is None else int(p.pts))
            for p in packets
        ]


def with_regions(frame: av.VideoFrame, regions: Sequence[RoiRegion], time_base) -> av.VideoFrame:
    """Attach AVRegionOfInterest side data with a chain of ``addroi`` filters (first listed region wins)."""
    graph = av.filter.Graph()
    last = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name, time_base=time_base)
    source = last
    for r in regions:
        if not -1.0 <= r.qoffset <= 1.0:
            raise ValueError(f"ROI qoffset must be in [-1, 1], got {r.qoffset}")
        node = graph.add("addroi", x=str(int(r.x)), y=str(int(r.y)), w=str(int(r.w)), h=str(int(r.h)),
                         qoffset=f"{r.qoffset:g}")
        last.link_to(node)
        last = node
    sink = graph.add("buffersink")
    last.link_to(sink)
    graph.configure()
    color_range, colorspace, pict_type = frame.color_range, frame.colorspace, frame.pict_type
    source.push(frame)
    out = sink.pull()
    out.color_range, out.colorspace, out.pict_type = color_range, colorspace, pict_type
    out.pts, out.time_base = frame.pts, time_base
    return out


class X26xDecoder:
    """Decodes an h264/hevc Annex-B stream packet by packet to RGB (or planes), with the signalled colour."""

    def __init__(self, codec_name: str = "h264", colour: ColourConversion | None = None, strict: bool = False):
        """``strict``: a damaged packet raises ValueError instead of being concealed into a picture (libavcodec
        ``err_detect=crccheck+bitstream+buffer+explode``; what a live stream decoder needs, never a garbage frame)."""
        if codec_name not in SEI_TYPES:
            raise ValueError(f"codec must be h264 or hevc, got {codec_name!r}")
        self.codec_name = codec_name
        self.default_colour = colour or ColourConversion()
        ctx = av.CodecContext.create(codec_name, "r")
        ctx.thread_count = 1  # frame threading would hold frames back; slice threading gains nothing at 1 slice
        if strict:
            ctx.options = {"err_detect": "crccheck+bitstream+buffer+explode"}
        self._ctx = ctx
        self.last_colour: ColourConversion | None = None

    def decode_planes(self, data: bytes) -> list[list[np.ndarray]]:
        """Feed one packet; returns the Y/Cb/Cr planes of the pictures it completes (ValueError on bad data)."""
        try:
            frames = list(self._ctx.decode(av.Packet(data)))
        except av.error.FFmpegError as err:
            raise ValueError(f"{self.codec_name} decoder rejected the payload: {err}") from err
        return self._planes(frames)

    def flush_planes(self) -> list[list[np.ndarray]]:
        """End of stream: the planes of the pictures the decoder still holds."""
        try:
            frames = list(self._ctx.decode(None))
        except av.error.FFmpegError as err:
            raise ValueError(f"{self.codec_name} decoder rejected the payload: {err}") from err
        return self._planes(frames)

    def _planes(self, frames) -> list[list[np.ndarray]]:
        out = []
        for frame in frames:
            self.last_colour = signalled_colour(frame, self.default_colour)
            out.append(frame_to_planes(frame))
        return out

    def decode(self, data: bytes) -> list[np.ndarray]:
        """Feed one packet; returns the RGB frames it completes (converted as the stream signals)."""
        return [self.last_colour.planes_to_rgb(p) for p in self.decode_planes(data)]

    def flush(self) -> list[np.ndarray]:
        return [self.last_colour.planes_to_rgb(p) for p in self.flush_planes()]


def regions_from_boxes(boxes, height: int, width: int, qoffset: float | None,
                       background_qoffset: float = 0.0) -> list[RoiRegion]:
    """ROI regions for (K,4) xyxy pixel boxes: one per box at ``qoffset``, covering the pixels the project's one
    box rule gives (``detector.roi_mask.box_pixel_bounds``, the ROI masks and region metrics use it too), then the
    whole frame at ``background_qoffset`` if non-zero (the first listed region wins on overlap). None -> []."""
    from roi_codec_ros.detector.roi_mask import box_pixel_bounds  # numpy-only module

    if qoffset is None:
        return []
    regions = []
    for box in np.zeros((0, 4)) if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        c0, r0, c1, r1 = box_pixel_bounds(box, height, width)
        if c1 > c0 and r1 > r0:
            regions.append(RoiRegion(c0, r0, c1 - c0, r1 - r0, float(qoffset)))
    if background_qoffset:
        regions.append(RoiRegion(0, 0, width, height, float(background_qoffset)))
    return regions


def split_access_units(stream: bytes, codec_name: str = "h264") -> list[bytes]:
    """An Annex-B elementary stream (e.g. what the ffmpeg CLI writes with ``-f h264``) -> one bytes per picture."""
    parser = av.CodecContext.create(codec_name, "r")
    packets = parser.parse(stream) + parser.parse(None)
    return [bytes(p) for p in packets]


def pad_to_even(rgb: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Replicate the last column/row so both sides are even (4:2:0); returns the frame and the padding added."""
    pad_h, pad_w = rgb.shape[0] % 2, rgb.shape[1] % 2
    if pad_h or pad_w:
        rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return rgb, pad_w, pad_h
