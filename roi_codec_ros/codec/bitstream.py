"""The ``.rcb`` container: a versioned, self-describing frame of the ROI codec (pure Python, no torch).

One encoded frame is one ``.rcb`` byte string.  All integers are big-endian::

    offset size  field
    ------ ----  -----------------------------------------------------------------------------
         0    3  magic  b"RCB"
         3    1  format version (uint8): 1, or 2 with a gain map (below)  -> SUPPORTED_VERSIONS
         4    8  model hash: first 8 bytes of the sha256 of the model (computed by the API)
        12    2  height  (uint16, image pixels before padding)
        14    2  width   (uint16)
        16    2  rate code (uint16): the rate knob in [0, 1] quantised to 0..65535 (carries beta)
        18    1  flags (uint8): bit0 = encoder had detector features, bit1 = had an ROI mask,
                 bit2 = gain map (set exactly in version 2)
        19    1  pad multiple (uint8): the image was padded to a multiple of this (64)
        20    8  z shape (h, w), w shape (h, w)  (uint16 each); y's shape is 4x z's
        28   12  payload lengths of y, z, w (uint32 each)
        40    *  payloads y, z, w (entropy-coded strings, in that order)
     end-4    4  CRC-32 (zlib.crc32) of every byte before it

Version 2 (a frame with explicit latent scaling, ``FLAG_LATENT_GAIN``) is version 1 plus a fourth payload ``g``,
the gain map: its uint32 length at offset 40 (header 44 bytes), its bytes after w's::

         0    1  gain code n (1..MAX_GAIN_CODE): the ROI gain is 1 + n / GAIN_CODE_SCALE
         1    1  levels L (2..MAX_GAIN_LEVELS)
         2    *  zlib stream of one uint8 level 0..L-1 per cell of y's grid (row-major); a cell at level l has
                 gain G = 1 + n * l / (GAIN_CODE_SCALE * (L - 1)): y is coded as round(y * G), scales * G

A frame without a gain map is written as version 1, byte for byte as before, so earlier decoders read it.

Version 3 (a frame of a stream: ``RoiCodec.stream_encoder``) is version 1 plus a 17-byte stream block at offset 40
(header 57 bytes), payloads y, z, w after it::

        40    1  frame type: 0 = I (decodes on its own), 1 = P (y codes the residual to its reference's latents)
        41    4  stream id (uint32): chosen by the encoder at random, new for every stream
        45    4  sequence number of this frame (uint32, +1 per frame of the stream)
        49    4  sequence number of the reference (P; 0 in an I-frame)
        53    4  CRC-32 of the reference's latents (int32 little-endian, row-major; 0 in an I-frame): a decoder
                 decodes a P-frame only against exactly that reference

A version-3 P-frame with block motion (``FLAG_MOTION``, ``codec/motion.py``) has a uint32 length after the stream
block (header 61 bytes) and a fourth payload ``m`` after w's: its latents are coded against the reference shifted
block by block, by whole cells of y's grid::

         0    1  block B (1..MAX_MOTION_BLOCK): cells of y's grid per block side
         1    1  max shift S (0..MAX_MOTION_SHIFT)
         2    *  zlib stream of one uint8 choice per block (row-major, ceil(h/B) x ceil(w/B)): 0 = no prediction,
                 1 + (dy + S) * (2S + 1) + (dx + S) = the reference shifted by (dy, dx) cells

``unpack_frame`` checks, in this order and before allocating anything sized by the stream: magic, version,
minimum length, that the declared payload lengths add up to exactly the bytes present, the CRC, then every
field against the limits below and the latent shapes against the image size.  Every failure raises
``BitstreamError`` (a ``ValueError``) with a message saying what is wrong.
"""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import Mapping

# --- format constants and limits (the one place for them) -------------------------------------------------
MAGIC = b"RCB"
FORMAT_VERSION = 3  # the newest layout; intra frames without a gain map are still written as version 1
SUPPORTED_VERSIONS = (1, 2, 3)
STREAM_VERSION = 3  # frames of a stream (I and P)
FRAME_I, FRAME_P = 0, 1
MODEL_HASH_BYTES = 8
STREAM_NAMES = ("y", "z", "w")  # payload order in the container
GAIN_STREAM = "g"  # version 2: the gain map, after w

MAX_SIDE = 16384  # height and width, pixels
MAX_PIXELS = 4096 * 4096  # height * width; bounds the decoder's memory (synthesis runs at full resolution)
MAX_STREAM_BYTES = 64 * 1024 * 1024  # per entropy-coded string
Z_STRIDE = 64  # image pixels per z (and w) latent element: g_a downsamples 16x, h_a / i_a another 4x
Y_PER_Z = 4  # y's grid is 4x z's in each direction

FLAG_FEATURES = 0x01
FLAG_ROI = 0x02
FLAG_LATENT_GAIN = 0x04  # version 2 only: the frame carries a gain map
FLAG_MOTION = 0x08  # version-3 P-frames only: the frame carries a motion field
FLAG_WARP = 0x10  # with FLAG_MOTION: the frame also carries a flow field (predictions from the warped picture)
KNOWN_FLAGS = FLAG_FEATURES | FLAG_ROI | FLAG_LATENT_GAIN | FLAG_MOTION | FLAG_WARP
MOTION_STREAM = "m"  # version-3 P-frames with FLAG_MOTION: the motion field, after w
WARP_STREAM = "f"  # version-3 P-frames with FLAG_WARP: the flow field, after m
MAX_MOTION_BLOCK = 16
MAX_MOTION_SHIFT = 7  # (2 * 7 + 1)**2 + 2 = 227 choices fit a byte
MIN_WARP_GRID, MAX_WARP_GRID = 8, 255  # pixels per flow-grid cell side
WARP_UNITS_PER_PIXEL = 4  # flow vectors in quarter pixels
MAX_WARP_PIXELS = 512  # |flow| per component

GAIN_CODE_SCALE = 16  # gain = 1 + code / 16: exact binary fractions, the same float64 on every machine
MAX_GAIN_CODE = 112  # gain <= 8
MAX_GAIN_LEVELS = 16

RATE_CODE_MAX = 0xFFFF

# CompressAI's rANS decoder (C++) trusts its input: it reads 32-bit words with no end check, and a run of 0xF
# nibbles makes its escape ("bypass") decoding read ~15x as many bytes as the run is long.  guard_rans_string
# rejects what no encoder writes and pads the rest so every read stays inside the buffer (docs/bitstream.md).
RANS_MIN_BYTES = 8  # the encoder's final flush writes the 64-bit state
RANS_MAX_BYTES_PER_SYMBOL = 8  # a symbol costs <= 16 bits + a 32-bit escape value + its 4-bit count
RANS_FORBIDDEN_RUN = b"\xff" * 8  # p = 2**-64 per position in real (random-looking) output; drives the 15x read
RANS_PAD_BYTES_PER_SYMBOL = 16  # >4x the worst measured on garbage (3.5): python test/test_bitstream_rans.py
RANS_PAD_MIN_BYTES = 64 * 1024
RANS_PAD_FILL = b"\x80"  # words >= 2**31 keep the decoder state large; no 0xF nibble, so escapes stay short

# magic(3s) version(B) hash(8s) height width rate_code (H H H) flags pad_multiple (B B) z_h z_w w_h w_w (4H)
# lengths (3I)
_HEADER = struct.Struct(">3sB8sHHHBB4H3I")
_GAIN_LENGTH = struct.Struct(">I")  # version 2: after the version-1 header
_STREAM_BLOCK = struct.Struct(">BIIII")  # version 3: frame type, stream id, seq, reference seq, reference CRC
_MOTION_LENGTH = struct.Struct(">I")  # version 3 with FLAG_MOTION: after the stream block (then FLAG_WARP's)
_WARP_HEAD = struct.Struct(">BI")  # flow grid, CRC-32 of the warped picture's latents
_FLAGS_OFFSET = 18
_CRC = struct.Struct(">I")
HEADER_BYTES = _HEADER.size  # 40 (version 1)
MIN_FRAME_BYTES = HEADER_BYTES + _CRC.size  # 44: a version-1 frame with three empty payloads
_LENGTHS_OFFSET = HEADER_BYTES - 12


def header_bytes(version: int, flags: int = 0) -> int:
    """Bytes before the payloads: 40 in version 1, 44 in version 2 (the gain map's length), 57 in version 3, 61 in
    a version-3 frame with a motion field (its length), 65 with a flow field too."""
    extra = len(_payload_names(version, flags)) - len(STREAM_NAMES) if version == STREAM_VERSION else 0
    return HEADER_BYTES + {2: _GAIN_LENGTH.size, 3: _STREAM_BLOCK.size}.get(version, 0) + extra * _MOTION_LENGTH.size


class BitstreamError(ValueError):
    """The bytes are not a frame this decoder can read: truncated, corrupted, foreign or unsupported."""


class MissingReferenceError(BitstreamError):
    """An inter frame arrived but the decoder does not hold the frame it references (lost, never received, or
    dropped by ``reset()``): nothing is output until the next keyframe."""


class PredictionMismatchError(MissingReferenceError):
    """A P-frame's prediction from the warped reference picture came out other than at the encoder (a CPU, device
    or library that computes the analysis transform differently): it is treated like a missing reference."""


def rate_to_code(rate: float) -> int:
    """Quantise the rate knob to the 16-bit code carried in the header.

    ``rate`` is clamped to [0, 1] and mapped to ``round(rate * 65535)``; NaN raises ``ValueError``.
    The step (1/65535 of the rate range) is far below any visible change; encoders should use
    ``code_to_rate(rate_to_code(rate))`` themselves so encoder and decoder condition on the same value.
    """
    rate = float(rate)
    if math.isnan(rate):
        raise ValueError("rate is NaN")
    return int(round(min(max(rate, 0.0), 1.0) * RATE_CODE_MAX))


def code_to_rate(code: int) -> float:
    """Inverse of ``rate_to_code``: the rate in [0, 1] for a code (clamped to 0..65535)."""
    return min(max(int(code), 0), RATE_CODE_MAX) / RATE_CODE_MAX


def padded_size(size: int, multiple: int) -> int:
    """``size`` rounded up to a multiple of ``multiple`` (the model's input size for an image side)."""
    return -(-size // multiple) * multiple


def latent_shape(height: int, width: int, pad_multiple: int) -> tuple[int, int]:
    """Shape (h, w) of z and w for an image of height x width padded to ``pad_multiple``."""
    return padded_size(height, pad_multiple) // Z_STRIDE, padded_size(width, pad_multiple) // Z_STRIDE


@dataclass(frozen=True)
class FrameHeader:
    """Everything the decoder needs besides the entropy-coded strings."""

    model_hash: bytes
    height: int
    width: int
    rate_code: int
    z_shape: tuple[int, int]
    w_shape: tuple[int, int]
    pad_multiple: int = 64
    flags: int = 0
    version: int = 1  # 2 = with a gain map (FLAG_LATENT_GAIN), 3 = a frame of a stream (below)
    # version 3 only
    frame_type: int = FRAME_I
    stream_id: int = 0
    seq: int = 0
    ref_seq: int = 0
    ref_crc: int = 0

    @property
    def rate(self) -> float:
        return code_to_rate(self.rate_code)

    @property
    def y_shape(self) -> tuple[int, int]:
        return self.z_shape[0] * Y_PER_Z, self.z_shape[1] * Y_PER_Z

    @property
    def padded_size(self) -> tuple[int, int]:
        return padded_size(self.height, self.pad_multiple), padded_size(self.width, self.pad_multiple)

    @property
    def has_features(self) -> bool:
        return bool(self.flags & FLAG_FEATURES)

    @property
    def has_roi(self) -> bool:
        return bool(self.flags & FLAG_ROI)

    @property
    def has_gain_map(self) -> bool:
        return bool(self.flags & FLAG_LATENT_GAIN)

    @property
    def has_motion(self) -> bool:
        return bool(self.flags & FLAG_MOTION)

    @property
    def has_flow(self) -> bool:
        return bool(self.flags & FLAG_WARP)

    @property
    def is_stream_frame(self) -> bool:
        return self.version == STREAM_VERSION

    @property
    def is_p_frame(self) -> bool:
        return self.is_stream_frame and self.frame_type == FRAME_P


@dataclass(frozen=True)
class GainMap:
    """Explicit latent scaling of one frame: a level 0..levels-1 per cell of y's grid (row-major bytes) and the
    gain code of the top level; ``gain(level)`` is what the encoder multiplies y (and its scales) by."""

    code: int
    levels: int
    cells: bytes

    def gain(self, level: int) -> float:
        """1 + code * level / (16 * (levels - 1)): one correctly rounded division, the same on every machine."""
        denominator = GAIN_CODE_SCALE * (self.levels - 1)
        return (denominator + self.code * int(level)) / denominator


@dataclass(frozen=True)
class MotionField:
    """A P-frame's block motion on y's grid (``codec/motion.py``): one choice per ``block`` x ``block`` cells, 0 = no
    prediction, else the reference shifted by whole cells (``motion.candidate``); with ``warped`` (a frame with a
    flow field) the last choice is the latents of the reference picture warped by the flow field."""

    block: int
    max_shift: int
    choices: bytes
    warped: bool = False

    @property
    def candidates(self) -> int:
        return (2 * self.max_shift + 1) ** 2 + 1 + int(self.warped)

    def blocks_shape(self, y_shape: tuple[int, int]) -> tuple[int, int]:
        return -(-int(y_shape[0]) // self.block), -(-int(y_shape[1]) // self.block)


def pack_motion(field: MotionField) -> bytes:
    """The ``m`` payload of a version-3 P-frame with ``FLAG_MOTION``."""
    return bytes((field.block, field.max_shift)) + zlib.compress(bytes(field.choices), 9)


def unpack_motion(payload: bytes, y_shape: tuple[int, int], warped: bool = False) -> MotionField:
    """Parse and check an ``m`` payload for y's grid (raises ``BitstreamError``); never inflates past the grid.
    ``warped``: the frame has a flow field (``FLAG_WARP``), so one more choice is valid."""
    payload = bytes(payload)
    if len(payload) < 3:
        raise BitstreamError(f"motion field of {len(payload)} bytes is truncated (block, max shift, zlib stream)")
    block, max_shift = payload[0], payload[1]
    if not 1 <= block <= MAX_MOTION_BLOCK:
        raise BitstreamError(f"motion block {block} out of range 1..{MAX_MOTION_BLOCK}")
    if max_shift > MAX_MOTION_SHIFT:
        raise BitstreamError(f"motion max shift {max_shift} out of range 0..{MAX_MOTION_SHIFT}")
    field = MotionField(block, max_shift, b"", bool(warped))
    rows, cols = field.blocks_shape(y_shape)
    choices = _inflate_map(payload, rows * cols, "motion field", "blocks", y_shape)
    if max(choices) >= field.candidates:
        raise BitstreamError(f"motion field holds choice {max(choices)}, but has only {field.candidates}")
    return MotionField(block, max_shift, choices, bool(warped))


@dataclass(frozen=True)
class FlowField:
    """A P-frame's flow on a coarse grid of the picture (``codec/warp.py``): per node of a ``grid`` x ``grid``
    pixel cell (row-major, ceil(H/grid) x ceil(W/grid)), where in the reference picture the cell's centre comes
    from, in 1/``WARP_UNITS_PER_PIXEL`` pixels: ``vectors`` holds every node's dx, then every node's dy, as
    little-endian int16 (the payload codes them as differences, ``pack_flow``); ``latents_crc``: CRC-32 of the
    latents of the warped reference picture (``stream.latent_crc``), by which a decoder tells that it computed the
    prediction the encoder did."""

    grid: int
    latents_crc: int
    vectors: bytes

    def nodes_shape(self, height: int, width: int) -> tuple[int, int]:
        return -(-int(height) // self.grid), -(-int(width) // self.grid)


def pack_flow(field: FlowField) -> bytes:
    """The ``f`` payload of a version-3 P-frame with ``FLAG_WARP``: grid, CRC, then one zlib stream of the vectors
    as differences to the value before them (wrapping int16), all low bytes, then all high bytes: a smooth field's
    differences are small, so the high bytes are nearly all 0x00 or 0xff and cost next to nothing."""
    values = struct.unpack(f"<{len(field.vectors) // 2}h", field.vectors)
    deltas = [(v - p) & 0xFFFF for v, p in zip(values, (0,) + values[:-1])]
    planes = bytes(d & 0xFF for d in deltas) + bytes(d >> 8 for d in deltas)
    return _WARP_HEAD.pack(field.grid, field.latents_crc) + zlib.compress(planes, 9)


def unpack_flow(payload: bytes, height: int, width: int) -> FlowField:
    """Parse and check an ``f`` payload for a picture of ``height`` x ``width`` (raises ``BitstreamError``)."""
    payload = bytes(payload)
    if len(payload) < _WARP_HEAD.size + 1:
        raise BitstreamError(f"flow field of {len(payload)} bytes is truncated (grid, CRC, zlib stream)")
    grid, crc = _WARP_HEAD.unpack_from(payload)
    if not MIN_WARP_GRID <= grid <= MAX_WARP_GRID:
        raise BitstreamError(f"flow grid {grid} out of range {MIN_WARP_GRID}..{MAX_WARP_GRID}")
    rows, cols = FlowField(grid, crc, b"").nodes_shape(height, width)
    n = 2 * rows * cols
    planes = _inflate_map(payload[_WARP_HEAD.size - 2:], 2 * n, "flow field", "bytes of vectors", (height, width))
    values, previous = [], 0
    for low, high in zip(planes[:n], planes[n:]):
        previous = (previous + (low | high << 8)) & 0xFFFF
        values.append(previous - 0x10000 if previous >= 0x8000 else previous)
    top = MAX_WARP_PIXELS * WARP_UNITS_PER_PIXEL
    if max(abs(v) for v in values) > top:
        raise BitstreamError(f"flow field holds a vector beyond {MAX_WARP_PIXELS} pixels")
    return FlowField(grid, crc, struct.pack(f"<{n}h", *values))


def gain_to_code(gain: float) -> int:
    """The gain code (0..MAX_GAIN_CODE) nearest to ``gain`` in [1, 1 + MAX_GAIN_CODE / 16]; raises ValueError outside."""
    gain = float(gain)
    top = 1.0 + MAX_GAIN_CODE / GAIN_CODE_SCALE
    if not 1.0 <= gain <= top:  # also NaN
        raise ValueError(f"ROI latent gain must be in [1, {top:g}], got {gain}")
    return int(round((gain - 1.0) * GAIN_CODE_SCALE))


def code_to_gain(code: int) -> float:
    return 1.0 + int(code) / GAIN_CODE_SCALE


def pack_gain_map(gain_map: GainMap) -> bytes:
    """The ``g`` payload of a version-2 frame."""
    return bytes((gain_map.code, gain_map.levels)) + zlib.compress(bytes(gain_map.cells), 9)


def _max_map_payload(cells: int) -> int:
    """Two leading bytes + zlib's worst case for ``cells`` bytes (stored blocks: 5 bytes per 16 KiB, 6 of framing)."""
    return 2 + cells + 5 * (cells // 16383 + 1) + 6 + 64


def _inflate_map(payload: bytes, n: int, what: str, unit: str, y_shape: tuple[int, int]) -> bytes:
    """The ``n`` bytes of a gain map's or motion field's zlib stream (after its two leading bytes), checked: no work
    on a payload longer than zlib ever needs for ``n`` bytes, never inflated past ``n + 1`` (no zlib bomb), exactly
    one stream of exactly ``n`` bytes."""
    if len(payload) > _max_map_payload(n):
        raise BitstreamError(f"{what} of {len(payload)} bytes is too long for {n} {unit}")
    inflater = zlib.decompressobj()
    try:
        cells = inflater.decompress(payload[2:], n + 1)
    except zlib.error as exc:
        raise BitstreamError(f"{what} is not a valid zlib stream: {exc}") from exc
    if len(cells) != n or not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        raise BitstreamError(f"{what} does not hold exactly {n} {unit} for y's grid {tuple(y_shape)} in one zlib stream")
    return cells


def unpack_gain_map(payload: bytes, y_shape: tuple[int, int]) -> GainMap:
    """Parse and check a ``g`` payload for y's grid (raises ``BitstreamError``); never inflates past the grid."""
    payload = bytes(payload)
    if len(payload) < 3:
        raise BitstreamError(f"gain map of {len(payload)} bytes is truncated (code, levels, zlib stream)")
    code, levels = payload[0], payload[1]
    if not 1 <= code <= MAX_GAIN_CODE:
        raise BitstreamError(f"gain code {code} out of range 1..{MAX_GAIN_CODE}")
    if not 2 <= levels <= MAX_GAIN_LEVELS:
        raise BitstreamError(f"gain map levels {levels} out of range 2..{MAX_GAIN_LEVELS}")
    cells = _inflate_map(payload, int(y_shape[0]) * int(y_shape[1]), "gain map", "cells", y_shape)
    if max(cells) >= levels:
        raise BitstreamError(f"gain map holds level {max(cells)}, but has only {levels} levels")
    return GainMap(code=code, levels=levels, cells=cells)


def _check_header(header: FrameHeader) -> None:
    """Raise ``BitstreamError`` unless every field is within the documented limits and consistent."""
    if header.version not in SUPPORTED_VERSIONS:
        raise BitstreamError(f"unsupported format version {header.version} (this decoder reads {_supported()})")
    if not isinstance(header.model_hash, bytes) or len(header.model_hash) != MODEL_HASH_BYTES:
        raise BitstreamError(f"model hash must be {MODEL_HASH_BYTES} bytes, got {header.model_hash!r}")
    h, w = header.height, header.width
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise BitstreamError(f"image size {h}x{w} out of range (each side 1..{MAX_SIDE})")
    if h * w > MAX_PIXELS:
        raise BitstreamError(f"image size {h}x{w} = {h * w} pixels exceeds the limit of {MAX_PIXELS}")
    if not 0 <= header.rate_code <= RATE_CODE_MAX:
        raise BitstreamError(f"rate code {header.rate_code} out of range 0..{RATE_CODE_MAX}")
    if header.flags & ~KNOWN_FLAGS & 0xFF or not 0 <= header.flags <= 0xFF:
        raise BitstreamError(f"flags 0x{header.flags:02x} set reserved bits (known: 0x{KNOWN_FLAGS:02x})")
    if header.has_gain_map != (header.version == 2):
        raise BitstreamError(f"version {header.version} frame {'with' if header.has_gain_map else 'without'} the gain-map "
                             "flag (a gain map is what version 2 adds)")
    stream = (header.frame_type, header.stream_id, header.seq, header.ref_seq, header.ref_crc)
    if not all(isinstance(v, int) and 0 <= v <= 0xFFFFFFFF for v in stream):
        raise BitstreamError(f"stream fields {stream} must be 32-bit unsigned integers")
    if header.has_motion and not header.is_p_frame:
        raise BitstreamError("only a version-3 P-frame carries a motion field")
    if header.has_flow and not header.has_motion:
        raise BitstreamError("a flow field comes only with a motion field (FLAG_WARP needs FLAG_MOTION)")
    if header.version != STREAM_VERSION and any(stream):
        raise BitstreamError(f"a version {header.version} frame has no stream fields, got {stream}")
    if header.version == STREAM_VERSION:
        if header.frame_type not in (FRAME_I, FRAME_P):
            raise BitstreamError(f"frame type {header.frame_type} is neither I (0) nor P (1)")
        if header.frame_type == FRAME_I and (header.ref_seq or header.ref_crc):
            raise BitstreamError("an I-frame has no reference (reference seq and CRC must be 0)")
        if header.frame_type == FRAME_P and header.ref_seq == header.seq:
            raise BitstreamError(f"P-frame {header.seq} cannot be its own reference")
    m = header.pad_multiple
    if not (0 < m <= 0xFF and m % Z_STRIDE == 0):
        raise BitstreamError(f"pad multiple {m} is not a positive multiple of {Z_STRIDE} below 256")
    expected = latent_shape(h, w, m)
    for name, shape in (("z", header.z_shape), ("w", header.w_shape)):
        if tuple(shape) != expected:
            raise BitstreamError(
                f"{name} latent shape {tuple(shape)} does not match image {h}x{w} padded to {m} (expected {expected})"
            )


def _supported() -> str:
    return ", ".join(str(v) for v in SUPPORTED_VERSIONS)


def pack_frame(header: FrameHeader, strings: Mapping[str, bytes]) -> bytes:
    """Serialise a header and the entropy-coded strings {"y", "z", "w"} into one ``.rcb`` frame.

    Raises ``BitstreamError`` (a ``ValueError``) for a header or strings the decoder would reject, so an
    encoder never writes a frame it cannot read back.
    """
    _check_header(header)
    names = _payload_names(header.version, header.flags)
    if set(strings) != set(names):
        raise BitstreamError(f"strings must have exactly the keys {names}, got {sorted(strings)}")
    payloads = [bytes(strings[name]) for name in names]
    for name, payload in zip(names, payloads):
        if len(payload) > MAX_STREAM_BYTES:
            raise BitstreamError(f"{name} string of {len(payload)} bytes exceeds the limit of {MAX_STREAM_BYTES}")
    if header.has_gain_map:
        unpack_gain_map(strings[GAIN_STREAM], header.y_shape)
    _check_motion(header, strings)
    head = _HEADER.pack(
        MAGIC,
        header.version,
        header.model_hash,
        header.height,
        header.width,
        header.rate_code,
        header.flags,
        header.pad_multiple,
        *header.z_shape,
        *header.w_shape,
        *(len(p) for p in payloads[:3]),
    )
    if header.version == 2:
        head += _GAIN_LENGTH.pack(len(payloads[3]))
    elif header.version == STREAM_VERSION:
        head += _STREAM_BLOCK.pack(header.frame_type, header.stream_id, header.seq, header.ref_seq, header.ref_crc)
        for payload in payloads[3:]:  # m, then f
            head += _MOTION_LENGTH.pack(len(payload))
    body = head + b"".join(payloads)
    return body + _CRC.pack(zlib.crc32(body))


def unpack_frame(data: bytes, expected_model_hash: bytes | None = None) -> tuple[FrameHeader, dict[str, bytes]]:
    """Parse and validate a ``.rcb`` frame -> (header, {"y": bytes, "z": bytes, "w": bytes} (+ "g" in version 2)).

    With ``expected_model_hash`` the frame must have been made by that model.  Raises ``BitstreamError``
    for anything truncated, corrupted, foreign, unsupported or out of the documented limits.
    """
    view = _as_bytes(data)
    _check_envelope(view)
    version = view[len(MAGIC)]
    lengths = struct.unpack_from(">3I", view, _LENGTHS_OFFSET)
    if version == 2:
        lengths += _GAIN_LENGTH.unpack_from(view, HEADER_BYTES)
    stream = _STREAM_BLOCK.unpack_from(view, HEADER_BYTES) if version == STREAM_VERSION else (FRAME_I, 0, 0, 0, 0)
    flags = view[_FLAGS_OFFSET]
    head_bytes = header_bytes(version, flags)
    if len(view) < head_bytes + _CRC.size:
        raise BitstreamError(f"truncated: {len(view)} bytes, a version-{version} frame with a motion field has at "
                             f"least {head_bytes + _CRC.size}")
    for offset in range(header_bytes(version), head_bytes, _MOTION_LENGTH.size):  # m's length, then f's
        lengths += _MOTION_LENGTH.unpack_from(view, offset)
    declared, present = sum(lengths), len(view) - head_bytes - _CRC.size
    if declared > present:
        raise BitstreamError(f"truncated: header says {declared} payload bytes, {present} present")
    if declared < present:
        raise BitstreamError(f"{present - declared} unexpected bytes after the payloads (header says {declared})")
    (stored_crc,) = _CRC.unpack_from(view, len(view) - _CRC.size)
    actual_crc = zlib.crc32(view[: len(view) - _CRC.size])
    if stored_crc != actual_crc:
        raise BitstreamError(f"CRC mismatch (stored 0x{stored_crc:08x}, computed 0x{actual_crc:08x}): data corrupted")

    fields = _HEADER.unpack_from(view, 0)
    _magic, version, model_hash, height, width, rate_code, flags, pad_multiple = fields[:8]
    z_h, z_w, w_h, w_w = fields[8:12]
    header = FrameHeader(
        model_hash=model_hash,
        height=height,
        width=width,
        rate_code=rate_code,
        z_shape=(z_h, z_w),
        w_shape=(w_h, w_w),
        pad_multiple=pad_multiple,
        flags=flags,
        version=version,
        frame_type=stream[0],
        stream_id=stream[1],
        seq=stream[2],
        ref_seq=stream[3],
        ref_crc=stream[4],
    )
    _check_header(header)
    names = _payload_names(version, flags)
    for name, length in zip(names, lengths):
        if length > MAX_STREAM_BYTES:
            raise BitstreamError(f"{name} string of {length} bytes exceeds the limit of {MAX_STREAM_BYTES}")
    if expected_model_hash is not None and model_hash != expected_model_hash:
        raise BitstreamError(
            f"made by model {model_hash.hex()} but this decoder has model {bytes(expected_model_hash).hex()}"
        )
    strings, offset = {}, head_bytes
    for name, length in zip(names, lengths):
        strings[name] = bytes(view[offset : offset + length])
        offset += length
    if header.has_gain_map:
        unpack_gain_map(strings[GAIN_STREAM], header.y_shape)
    _check_motion(header, strings)
    return header, strings


def _check_motion(header: FrameHeader, strings: Mapping[str, bytes]) -> None:
    if header.has_motion:
        unpack_motion(strings[MOTION_STREAM], header.y_shape, header.has_flow)
    if header.has_flow:
        unpack_flow(strings[WARP_STREAM], header.height, header.width)


def _payload_names(version: int, flags: int = 0) -> tuple[str, ...]:
    if version == 2:
        return STREAM_NAMES + (GAIN_STREAM,)
    if version == STREAM_VERSION and flags & FLAG_MOTION:
        return STREAM_NAMES + (MOTION_STREAM,) + ((WARP_STREAM,) if flags & FLAG_WARP else ())
    return STREAM_NAMES


def _as_bytes(data: bytes) -> memoryview:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"a bitstream must be bytes-like, got {type(data).__name__}")
    view = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
    return view


def _check_envelope(view: memoryview) -> None:
    """Magic, version and minimum length: the checks that identify a frame before anything is parsed."""
    n = len(view)
    if n == 0:
        raise BitstreamError("empty input: not a roi_codec bitstream")
    head = bytes(view[: len(MAGIC)])
    if head != MAGIC[: len(head)]:
        raise BitstreamError("not a roi_codec bitstream (bad magic)")
    if n <= len(MAGIC):
        raise BitstreamError(f"truncated: {n} bytes, a frame has at least {MIN_FRAME_BYTES}")
    version = view[len(MAGIC)]
    if version not in SUPPORTED_VERSIONS:
        raise BitstreamError(f"unsupported format version {version} (this decoder reads {_supported()})")
    minimum = header_bytes(version) + _CRC.size
    if n < minimum:
        raise BitstreamError(f"truncated: {n} bytes, a version-{version} frame has at least {minimum}")


def guard_rans_string(name: str, data: bytes, num_symbols: int) -> bytes:
    """Check one entropy-coded string and pad it before CompressAI's rANS decoder sees it.

    ``num_symbols`` is how many symbols the decoder will read from it (channels x height x width of the latent).
    Rejects (``BitstreamError``) strings no rANS encoder writes: not a whole number of 32-bit words, shorter than
    the final state flush, longer than ``RANS_MAX_BYTES_PER_SYMBOL`` per symbol, or holding 8 bytes of 0xff in a
    row.  Returns the string followed by ``RANS_PAD_BYTES_PER_SYMBOL * num_symbols + RANS_PAD_MIN_BYTES`` fill
    bytes; a real string is decoded from its own bytes only, so the padding never changes a correct decode.
    """
    n = len(data)
    if n % 4 or n < RANS_MIN_BYTES:
        raise BitstreamError(
            f"{name} string of {n} bytes is not an rANS stream (whole 32-bit words, >= {RANS_MIN_BYTES} bytes)"
        )
    if n > RANS_MIN_BYTES + RANS_MAX_BYTES_PER_SYMBOL * num_symbols:
        raise BitstreamError(f"{name} string of {n} bytes is too long for {num_symbols} symbols")
    if RANS_FORBIDDEN_RUN in data:
        raise BitstreamError(f"{name} string holds a run of 0xff bytes no rANS encoder writes")
    return bytes(data) + RANS_PAD_FILL * (RANS_PAD_BYTES_PER_SYMBOL * num_symbols + RANS_PAD_MIN_BYTES)


def header_info(data: bytes) -> dict:
    """Validated header fields and payload sizes of a frame, for ``roi-codec info`` (raises ``BitstreamError``)."""
    header, strings = unpack_frame(data)
    total = len(data)
    return {
        "format_version": header.version,
        "model_hash": header.model_hash.hex(),
        "height": header.height,
        "width": header.width,
        "rate_code": header.rate_code,
        "rate": header.rate,
        "flags": header.flags,
        "had_features": header.has_features,
        "had_roi_mask": header.has_roi,
        "pad_multiple": header.pad_multiple,
        "padded_size": header.padded_size,
        "y_shape": header.y_shape,
        "z_shape": header.z_shape,
        "w_shape": header.w_shape,
        "latent_gain": _gain_info(strings[GAIN_STREAM], header.y_shape) if header.has_gain_map else None,
        "stream": ({"frame_type": "P" if header.is_p_frame else "I", "stream_id": header.stream_id, "seq": header.seq,
                    "ref_seq": header.ref_seq, "ref_crc": header.ref_crc} if header.is_stream_frame else None),
        "motion": _motion_info(strings[MOTION_STREAM], header) if header.has_motion else None,
        "payload_bytes": {name: len(s) for name, s in strings.items()},
        "total_bytes": total,
        "bpp": 8.0 * total / (header.height * header.width),
    }


def _gain_info(payload: bytes, y_shape: tuple[int, int]) -> dict:
    gain_map = unpack_gain_map(payload, y_shape)
    counts = [gain_map.cells.count(level) for level in range(gain_map.levels)]
    return {"top_gain": gain_map.gain(gain_map.levels - 1), "levels": gain_map.levels, "cells_per_level": counts}


def _motion_info(payload: bytes, header: FrameHeader) -> dict:
    field = unpack_motion(payload, header.y_shape, header.has_flow)
    warp = field.candidates - 1 if field.warped else None
    moved = sum(1 for c in field.choices if c and c != warp and c != 1 + field.max_shift * (2 * field.max_shift + 2))
    return {"block": field.block, "max_shift": field.max_shift, "blocks": len(field.choices),
            "blocks_without_prediction": field.choices.count(0), "blocks_shifted": moved,
            "blocks_warped": field.choices.count(warp) if field.warped else 0}
