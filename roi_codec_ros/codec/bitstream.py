"""The ``.rcb`` container: a versioned, self-describing frame of the ROI codec (pure Python, no torch).

One encoded frame is one ``.rcb`` byte string.  All integers are big-endian::

    offset size  field
    ------ ----  -----------------------------------------------------------------------------
         0    3  magic  b"RCB"
         3    1  format version (uint8)                                  -> FORMAT_VERSION
         4    8  model hash: first 8 bytes of the sha256 of the model (computed by the API)
        12    2  height  (uint16, image pixels before padding)
        14    2  width   (uint16)
        16    2  rate code (uint16): the rate knob in [0, 1] quantised to 0..65535 (carries beta)
        18    1  flags (uint8): bit0 = encoder had detector features, bit1 = had an ROI mask
        19    1  pad multiple (uint8): the image was padded to a multiple of this (64)
        20    8  z shape (h, w), w shape (h, w)  (uint16 each); y's shape is 4x z's
        28   12  payload lengths of y, z, w (uint32 each)
        40    *  payloads y, z, w (entropy-coded strings, in that order)
     end-4    4  CRC-32 (zlib.crc32) of every byte before it

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
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MODEL_HASH_BYTES = 8
STREAM_NAMES = ("y", "z", "w")  # payload order in the container

MAX_SIDE = 16384  # height and width, pixels
MAX_PIXELS = 4096 * 4096  # height * width; bounds the decoder's memory (synthesis runs at full resolution)
MAX_STREAM_BYTES = 64 * 1024 * 1024  # per entropy-coded string
Z_STRIDE = 64  # image pixels per z (and w) latent element: g_a downsamples 16x, h_a / i_a another 4x
Y_PER_Z = 4  # y's grid is 4x z's in each direction

FLAG_FEATURES = 0x01
FLAG_ROI = 0x02
KNOWN_FLAGS = FLAG_FEATURES | FLAG_ROI

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
_CRC = struct.Struct(">I")
HEADER_BYTES = _HEADER.size  # 40
MIN_FRAME_BYTES = HEADER_BYTES + _CRC.size  # 44: a frame with three empty payloads
_LENGTHS_OFFSET = HEADER_BYTES - 12


class BitstreamError(ValueError):
    """The bytes are not a frame this decoder can read: truncated, corrupted, foreign or unsupported."""


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
    version: int = FORMAT_VERSION

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
    if set(strings) != set(STREAM_NAMES):
        raise BitstreamError(f"strings must have exactly the keys {STREAM_NAMES}, got {sorted(strings)}")
    payloads = [bytes(strings[name]) for name in STREAM_NAMES]
    for name, payload in zip(STREAM_NAMES, payloads):
        if len(payload) > MAX_STREAM_BYTES:
            raise BitstreamError(f"{name} string of {len(payload)} bytes exceeds the limit of {MAX_STREAM_BYTES}")
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
        *(len(p) for p in payloads),
    )
    body = head + b"".join(payloads)
    return body + _CRC.pack(zlib.crc32(body))


def unpack_frame(data: bytes, expected_model_hash: bytes | None = None) -> tuple[FrameHeader, dict[str, bytes]]:
    """Parse and validate a ``.rcb`` frame -> (header, {"y": bytes, "z": bytes, "w": bytes}).

    With ``expected_model_hash`` the frame must have been made by that model.  Raises ``BitstreamError``
    for anything truncated, corrupted, foreign, unsupported or out of the documented limits.
    """
    view = _as_bytes(data)
    _check_envelope(view)
    lengths = struct.unpack_from(">3I", view, _LENGTHS_OFFSET)
    declared, present = sum(lengths), len(view) - MIN_FRAME_BYTES
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
    )
    _check_header(header)
    for name, length in zip(STREAM_NAMES, lengths):
        if length > MAX_STREAM_BYTES:
            raise BitstreamError(f"{name} string of {length} bytes exceeds the limit of {MAX_STREAM_BYTES}")
    if expected_model_hash is not None and model_hash != expected_model_hash:
        raise BitstreamError(
            f"made by model {model_hash.hex()} but this decoder has model {bytes(expected_model_hash).hex()}"
        )
    strings, offset = {}, HEADER_BYTES
    for name, length in zip(STREAM_NAMES, lengths):
        strings[name] = bytes(view[offset : offset + length])
        offset += length
    return header, strings


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
    if n < MIN_FRAME_BYTES:
        raise BitstreamError(f"truncated: {n} bytes, a frame has at least {MIN_FRAME_BYTES}")


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
        "payload_bytes": {name: len(s) for name, s in strings.items()},
        "total_bytes": total,
        "bpp": 8.0 * total / (header.height * header.width),
    }
