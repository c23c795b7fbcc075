"""Annex-B access units of the classical engines: NAL unit types, keyframe test, and the display-size SEI.

H.264/HEVC 4:2:0 pictures have even sizes (the SPS crop window moves in steps of 2 luma samples), so a 1242x375
camera frame is coded as 1242x376 with its last row repeated.  The true size travels in a *user data unregistered*
SEI message (payload type 5, our UUID) in front of the first slice of every keyframe that needed padding; standard
decoders skip it (``ffmpeg`` / Foxglove show the padded 1242x376 picture), ours crops to it.  Payload after the
UUID: version (1 byte) = 1, width, height (uint16 big-endian each).
"""
from __future__ import annotations

import re
import struct

_START = re.compile(b"\x00\x00\x01")
# "roi_codec_ros sz" as a UUID: no zero bytes, so the UUID itself needs no emulation prevention
SIZE_SEI_UUID = b"roi_codec_ros sz"
SIZE_SEI_VERSION = 1
_SIZE = struct.Struct(">BHH")
_USER_DATA_UNREGISTERED = 5

H264_IDR = 5
H264_SEI = 6
HEVC_IRAP = range(16, 24)  # BLA, IDR, CRA (and reserved IRAP types): decodable without earlier pictures
HEVC_PREFIX_SEI = 39


def nal_units(data: bytes) -> list[tuple[int, int]]:
    """(start of the NAL header, end) of every NAL unit after a 00 00 01 start code (a 4-byte start code's leading
    zero belongs to the previous unit's end, which decoders ignore as trailing zero bits)."""
    starts = [m.end() for m in _START.finditer(data)]
    return [(s, (starts[i + 1] - 3) if i + 1 < len(starts) else len(data)) for i, s in enumerate(starts)]


def nal_type(data: bytes, start: int, codec: str) -> int:
    header = data[start] if start < len(data) else 0
    return header & 0x1F if codec == "h264" else (header >> 1) & 0x3F


def is_vcl(nal: int, codec: str) -> bool:
    return 1 <= nal <= 5 if codec == "h264" else nal < 32


def is_keyframe(data: bytes, codec: str) -> bool:
    """True when the access unit holds an IDR (H.264) / IRAP (HEVC) picture: it decodes without earlier frames."""
    for start, _ in nal_units(data):
        nal = nal_type(data, start, codec)
        if (codec == "h264" and nal == H264_IDR) or (codec == "hevc" and nal in HEVC_IRAP):
            return True
    return False


def _escape(rbsp: bytes) -> bytes:
    """Emulation prevention: 00 00 0x (x <= 3) inside a NAL unit becomes 00 00 03 0x."""
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _unescape(payload: bytes) -> bytes:
    return payload.replace(b"\x00\x00\x03", b"\x00\x00")


def size_sei(width: int, height: int, codec: str) -> bytes:
    """The display-size SEI NAL unit (with its start code) for ``codec`` (h264 | hevc)."""
    body = SIZE_SEI_UUID + _SIZE.pack(SIZE_SEI_VERSION, int(width), int(height))
    message = bytes([_USER_DATA_UNREGISTERED, len(body)]) + body + b"\x80"  # + rbsp trailing bits
    header = bytes([H264_SEI]) if codec == "h264" else bytes([HEVC_PREFIX_SEI << 1, 1])  # nuh_temporal_id_plus1 = 1
    return b"\x00\x00\x00\x01" + header + _escape(message)


def insert_before_first_slice(data: bytes, nal: bytes, codec: str) -> bytes:
    """``data`` with ``nal`` (a NAL unit with start code) placed before the first slice (SEI must precede it)."""
    for start, _ in nal_units(data):
        if is_vcl(nal_type(data, start, codec), codec):
            cut = start - 3
            if cut > 0 and data[cut - 1] == 0:
                cut -= 1  # keep the slice's 4-byte start code whole
            return data[:cut] + nal + data[cut:]
    raise ValueError("access unit without a slice")


def read_size_sei(data: bytes, codec: str) -> tuple[int, int] | None:
    """(width, height) from our display-size SEI in an access unit, or None when it has none."""
    sei_type = H264_SEI if codec == "h264" else HEVC_PREFIX_SEI
    header_len = 1 if codec == "h264" else 2
    for start, end in nal_units(data):
        if nal_type(data, start, codec) != sei_type:
            continue
        payload = _unescape(data[start + header_len:end])
        if len(payload) < 2 + len(SIZE_SEI_UUID) + _SIZE.size or payload[0] != _USER_DATA_UNREGISTERED:
            continue
        body = payload[2:2 + payload[1]]
        if body[:len(SIZE_SEI_UUID)] != SIZE_SEI_UUID or len(body) != len(SIZE_SEI_UUID) + _SIZE.size:
            continue
        version, width, height = _SIZE.unpack(body[len(SIZE_SEI_UUID):])
        if version == SIZE_SEI_VERSION:
            return width, height
    return None
