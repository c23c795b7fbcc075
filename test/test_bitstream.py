"""The .rcb container: round trips, and every kind of bad input raising BitstreamError (no torch needed)."""
from __future__ import annotations

import random
import struct
import zlib

import pytest
from hypothesis import given, settings, strategies as st

from roi_codec_ros.codec import bitstream as bs
from roi_codec_ros.codec.bitstream import BitstreamError, FrameHeader, pack_frame, unpack_frame

HASH = bytes.fromhex("3fa2c0ffee001122")


def make_header(height=75, width=124, **overrides) -> FrameHeader:
    shape = bs.latent_shape(height, width, 64)
    fields = dict(
        model_hash=HASH, height=height, width=width, rate_code=bs.rate_to_code(0.5), z_shape=shape, w_shape=shape,
        pad_multiple=64, flags=bs.FLAG_ROI,
    )
    fields.update(overrides)
    return FrameHeader(**fields)


STRINGS = {"y": bytes(range(256)) * 3, "z": b"\x01\x02\x03\x04" * 5, "w": b"\xaa" * 12}
FRAME = pack_frame(make_header(), STRINGS)


def recrc(body: bytes) -> bytes:
    """A frame with a correct CRC for a (possibly tampered) body."""
    return body + struct.pack(">I", zlib.crc32(body))


def tamper_header(frame: bytes, fmt: str, offset: int, value) -> bytes:
    body = bytearray(frame[:-4])
    struct.pack_into(fmt, body, offset, value)
    return recrc(bytes(body))


def test_round_trip_and_header_fields():
    header, strings = unpack_frame(FRAME, expected_model_hash=HASH)
    assert header == make_header()
    assert strings == STRINGS
    assert header.y_shape == (8, 8) and header.padded_size == (128, 128)
    assert header.has_roi and not header.has_features
    assert len(FRAME) == bs.MIN_FRAME_BYTES + sum(map(len, STRINGS.values()))
    assert FRAME[:4] == b"RCB\x01"


def test_version_1_layout_is_pinned():
    # the bytes every earlier decoder reads: a change here breaks compatibility (bump the version instead)
    assert FRAME[:40].hex() == "524342013fa2c0ffee001122004b007c80000240000200020002000200000300000000140000000c"
    assert FRAME[40:-4] == STRINGS["y"] + STRINGS["z"] + STRINGS["w"]
    assert FRAME[-4:] == struct.pack(">I", zlib.crc32(FRAME[:-4]))


def test_accepts_bytearray_and_memoryview():
    assert unpack_frame(bytearray(FRAME))[1] == STRINGS
    assert unpack_frame(memoryview(FRAME))[1] == STRINGS


def test_empty_payloads_round_trip():
    empty = {"y": b"", "z": b"", "w": b""}
    frame = pack_frame(make_header(), empty)
    assert len(frame) == bs.MIN_FRAME_BYTES
    assert unpack_frame(frame)[1] == empty


def test_header_info():
    info = bs.header_info(FRAME)
    assert info["height"] == 75 and info["width"] == 124
    assert info["model_hash"] == HASH.hex()
    assert info["payload_bytes"] == {"y": 768, "z": 20, "w": 12}
    assert info["total_bytes"] == len(FRAME)
    assert info["bpp"] == pytest.approx(8 * len(FRAME) / (75 * 124))
    assert info["rate"] == pytest.approx(0.5, abs=1e-4)


def test_every_truncation_raises():
    for n in range(len(FRAME)):
        with pytest.raises(BitstreamError):
            unpack_frame(FRAME[:n])


def test_truncation_message_names_the_sizes():
    with pytest.raises(BitstreamError, match=r"truncated: header says 800 payload bytes, 700 present"):
        unpack_frame(FRAME[:-100])


def test_trailing_bytes_raise():
    with pytest.raises(BitstreamError, match="unexpected bytes"):
        unpack_frame(FRAME + b"\x00")


def test_every_single_bit_flip_raises():
    for i in range(len(FRAME)):
        for bit in range(8):
            corrupted = bytearray(FRAME)
            corrupted[i] ^= 1 << bit
            with pytest.raises(BitstreamError):
                unpack_frame(bytes(corrupted))


def test_payload_corruption_is_a_crc_mismatch():
    corrupted = bytearray(FRAME)
    corrupted[bs.HEADER_BYTES + 10] ^= 0x40
    with pytest.raises(BitstreamError, match="CRC mismatch"):
        unpack_frame(bytes(corrupted))


PNG_HEAD = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000100000001008060000001ff3ff61")


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty input"),
        (PNG_HEAD, "bad magic"),
        (b"RC", "truncated"),
        (b"RCB", "truncated"),
        (b"RCB\x01" + b"\x00" * 10, "truncated"),
        (b"RCB\x09" + b"\x00" * 100, r"unsupported format version 9 \(this decoder reads 1, 2, 3\)"),
        (b"RCB\x00" + b"\x00" * 100, "unsupported format version 0"),
        (b"\x00" * 1000, "bad magic"),
        (b"GIF89a" + b"\x00" * 100, "bad magic"),
    ],
)
def test_foreign_data_raises(data, message):
    with pytest.raises(BitstreamError, match=message):
        unpack_frame(data)


def test_random_bytes_raise():
    rng = random.Random(0)
    for _ in range(2000):
        data = rng.randbytes(rng.randrange(0, 300))
        with pytest.raises(BitstreamError):
            unpack_frame(data)


def test_not_bytes_is_a_type_error():
    with pytest.raises(TypeError):
        unpack_frame("RCB\x01")  # type: ignore[arg-type]


def test_model_hash_mismatch():
    other = bytes.fromhex("77b1000000000000")
    with pytest.raises(BitstreamError, match="made by model 3fa2c0ffee001122 but this decoder has model 77b1"):
        unpack_frame(FRAME, expected_model_hash=other)


@pytest.mark.parametrize(
    "fmt, offset, value, message",
    [
        (">H", 12, 0, r"image size 0x124 out of range"),
        (">H", 14, 0, r"image size 75x0 out of range"),
        (">H", 12, 16385, "out of range"),
        (">H", 12, 65535, "out of range"),
        (">B", 18, 0x80, "reserved bits"),
        (">B", 19, 0, "pad multiple 0"),
        (">B", 19, 32, "pad multiple 32"),
        (">H", 20, 3, r"z latent shape \(3, 2\) does not match image 75x124 padded to 64 \(expected \(2, 2\)\)"),
        (">H", 26, 0, "w latent shape"),
    ],
)
def test_out_of_range_header_fields_raise(fmt, offset, value, message):
    with pytest.raises(BitstreamError, match=message):
        unpack_frame(tamper_header(FRAME, fmt, offset, value))


def test_pixel_limit():
    side = 8192  # each side is allowed, the product exceeds MAX_PIXELS
    assert side <= bs.MAX_SIDE and side * side > bs.MAX_PIXELS
    shape = bs.latent_shape(side, side, 64)
    body = bytearray(FRAME[:-4])
    struct.pack_into(">HH", body, 12, side, side)
    struct.pack_into(">4H", body, 20, *shape, *shape)
    with pytest.raises(BitstreamError, match="exceeds the limit"):
        unpack_frame(recrc(bytes(body)))
    with pytest.raises(BitstreamError, match="exceeds the limit"):
        pack_frame(make_header(side, side), STRINGS)


def test_largest_legal_frame_header_is_accepted():
    header = make_header(bs.MAX_SIDE, bs.MAX_PIXELS // bs.MAX_SIDE)
    assert unpack_frame(pack_frame(header, STRINGS))[0] == header


def test_declared_lengths_do_not_drive_allocation():
    # a huge declared length with a matching CRC is reported as truncation, never allocated
    body = bytearray(FRAME[:-4])
    struct.pack_into(">I", body, 28, 0xFFFFFFFF)
    with pytest.raises(BitstreamError, match="truncated: header says"):
        unpack_frame(recrc(bytes(body)))


def test_pack_rejects_bad_input():
    with pytest.raises(BitstreamError, match="keys"):
        pack_frame(make_header(), {"y": b"", "z": b""})
    with pytest.raises(BitstreamError, match="model hash"):
        pack_frame(make_header(model_hash=b"short"), STRINGS)
    with pytest.raises(BitstreamError, match="rate code"):
        pack_frame(make_header(rate_code=70000), STRINGS)
    with pytest.raises(BitstreamError, match="unsupported format version"):
        pack_frame(make_header(version=4), STRINGS)
    with pytest.raises(BitstreamError, match="z latent shape"):
        pack_frame(make_header(z_shape=(1, 1)), STRINGS)


def test_rate_code_mapping():
    assert bs.rate_to_code(0.0) == 0 and bs.rate_to_code(1.0) == 65535
    assert bs.rate_to_code(-3) == 0 and bs.rate_to_code(7) == 65535  # clamped
    assert bs.code_to_rate(0) == 0.0 and bs.code_to_rate(65535) == 1.0
    assert bs.code_to_rate(10**6) == 1.0
    with pytest.raises(ValueError):
        bs.rate_to_code(float("nan"))


@given(st.floats(min_value=0.0, max_value=1.0))
def test_rate_code_round_trip_error_is_half_a_step(rate):
    code = bs.rate_to_code(rate)
    assert abs(bs.code_to_rate(code) - rate) <= 0.5 / 65535 + 1e-12
    assert bs.rate_to_code(bs.code_to_rate(code)) == code


sides = st.integers(min_value=1, max_value=bs.MAX_SIDE)


@st.composite
def headers(draw):
    height = draw(sides)
    width = draw(st.integers(min_value=1, max_value=min(bs.MAX_SIDE, bs.MAX_PIXELS // height)))
    multiple = draw(st.sampled_from([64, 128, 192]))
    shape = bs.latent_shape(height, width, multiple)
    return FrameHeader(
        model_hash=draw(st.binary(min_size=8, max_size=8)), height=height, width=width,
        rate_code=draw(st.integers(0, 65535)), z_shape=shape, w_shape=shape, pad_multiple=multiple,
        flags=draw(st.integers(0, bs.FLAG_FEATURES | bs.FLAG_ROI)),  # version 1: no gain map
    )


payloads = st.fixed_dictionaries({name: st.binary(max_size=200) for name in bs.STREAM_NAMES})


@settings(max_examples=300, deadline=None)
@given(headers(), payloads)
def test_property_round_trip(header, strings):
    frame = pack_frame(header, strings)
    assert unpack_frame(frame, expected_model_hash=header.model_hash) == (header, strings)
    assert len(frame) == bs.MIN_FRAME_BYTES + sum(map(len, strings.values()))


@settings(max_examples=300, deadline=None)
@given(headers(), payloads, st.data())
def test_property_corruption_always_raises(header, strings, data):
    with pytest.raises(BitstreamError):
        unpack_frame(mutate(pack_frame(header, strings), data))


def mutate(frame: bytes, data) -> bytes:
    """One hypothesis-drawn truncation, byte flip, insertion or deletion of a frame."""
    kind = data.draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
    if kind == "truncate":
        return frame[: data.draw(st.integers(0, len(frame) - 1))]
    if kind == "flip":
        i = data.draw(st.integers(0, len(frame) - 1))
        return frame[:i] + bytes([frame[i] ^ data.draw(st.integers(1, 255))]) + frame[i + 1 :]
    if kind == "insert":
        i = data.draw(st.integers(0, len(frame)))
        return frame[:i] + data.draw(st.binary(min_size=1, max_size=8)) + frame[i:]
    i = data.draw(st.integers(0, len(frame) - 1))
    return frame[:i] + frame[i + data.draw(st.integers(1, 8)) :]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_property_arbitrary_bytes_never_escape(data):
    try:
        unpack_frame(data)
    except BitstreamError:
        pass


@pytest.mark.parametrize("version", [1, 2, 3])
@settings(max_examples=300, deadline=None)
@given(body=st.binary(min_size=bs.header_bytes(3), max_size=bs.header_bytes(3) + 64))
def test_property_valid_crc_garbage_raises_or_parses_consistently(version, body):
    # structure-aware: right magic/version and a correct CRC over garbage; either a clean error or a frame
    # whose fields satisfy every documented limit (version 2: with a gain map that parses)
    frame = recrc(b"RCB" + bytes([version]) + body[4:])
    try:
        header, strings = unpack_frame(frame)
    except BitstreamError:
        return
    assert 1 <= header.height <= bs.MAX_SIDE and 1 <= header.width <= bs.MAX_SIDE
    assert header.height * header.width <= bs.MAX_PIXELS
    assert header.z_shape == header.w_shape == bs.latent_shape(header.height, header.width, header.pad_multiple)
    assert sum(map(len, strings.values())) == len(frame) - bs.header_bytes(version) - 4
    assert header.has_gain_map == (version == 2) and ("g" in strings) == (version == 2)
    if version == 2:
        bs.unpack_gain_map(strings["g"], header.y_shape)  # parses: unpack_frame checked it


# -- version 2: the gain map of explicit latent scaling ------------------------------------------------
def gain_header(**overrides) -> FrameHeader:
    return make_header(version=2, flags=bs.FLAG_ROI | bs.FLAG_LATENT_GAIN, **overrides)


def gain_payload(code=48, levels=4, cells=None, y_shape=(8, 8)) -> bytes:
    cells = bytes((i * 7) % levels for i in range(y_shape[0] * y_shape[1])) if cells is None else cells
    return bs.pack_gain_map(bs.GainMap(code=code, levels=levels, cells=cells))


def test_version_2_round_trip_with_gain_map():
    strings = {**STRINGS, "g": gain_payload()}
    frame = pack_frame(gain_header(), strings)
    assert frame[:4] == b"RCB\x02"
    header, parsed = unpack_frame(frame, expected_model_hash=HASH)
    assert header == gain_header() and parsed == strings and header.has_gain_map
    assert len(frame) == bs.header_bytes(2) + 4 + sum(map(len, strings.values()))
    gain_map = bs.unpack_gain_map(parsed["g"], header.y_shape)
    assert gain_map.code == 48 and gain_map.levels == 4 and len(gain_map.cells) == 64
    assert gain_map.gain(0) == 1.0 and gain_map.gain(3) == 4.0 and gain_map.gain(1) == 2.0
    assert bs.header_info(frame)["format_version"] == 2


def test_gain_codes():
    assert bs.gain_to_code(1.0) == 0 and bs.gain_to_code(4.0) == 48 and bs.gain_to_code(8.0) == bs.MAX_GAIN_CODE
    assert bs.code_to_gain(bs.gain_to_code(2.53)) == 2.5 and bs.code_to_gain(bs.gain_to_code(2.55)) == 2.5625
    for bad in (0.99, 8.01, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="gain"):
            bs.gain_to_code(bad)


def test_version_and_gain_flag_must_agree():
    with pytest.raises(BitstreamError, match="gain-map flag"):
        pack_frame(make_header(flags=bs.FLAG_LATENT_GAIN), STRINGS)
    with pytest.raises(BitstreamError, match="gain-map flag"):
        pack_frame(make_header(version=2), {**STRINGS, "g": gain_payload()})
    with pytest.raises(BitstreamError, match="keys"):
        pack_frame(gain_header(), STRINGS)  # version 2 needs the g payload
    with pytest.raises(BitstreamError, match="keys"):
        pack_frame(make_header(), {**STRINGS, "g": gain_payload()})


@pytest.mark.parametrize("payload, message", [
    (b"", "truncated"),
    (b"\x30\x04", "truncated"),
    (bytes((0, 4)) + zlib.compress(bytes(64)), "gain code 0"),
    (bytes((113, 4)) + zlib.compress(bytes(64)), "gain code 113"),
    (bytes((48, 1)) + zlib.compress(bytes(64)), "levels 1"),
    (bytes((48, 17)) + zlib.compress(bytes(64)), "levels 17"),
    (bytes((48, 4)) + b"not zlib at all", "zlib"),
    (bytes((48, 4)) + zlib.compress(bytes(63)), "exactly 64 cells"),
    (bytes((48, 4)) + zlib.compress(bytes(65)), "exactly 64 cells"),
    (bytes((48, 4)) + zlib.compress(bytes(10**4)), "exactly 64 cells"),  # a small bomb is cut after 65 bytes
    (bytes((48, 4)) + zlib.compress(bytes(10**7)), "too long for 64 cells"),  # a large one is not even inflated
    (bytes((48, 4)) + bytes(200), "too long for 64 cells"),
    (bytes((48, 4)) + zlib.compress(bytes(64)) + b"x", "exactly 64 cells"),  # bytes after the stream
    (bytes((48, 4)) + zlib.compress(bytes(64))[:-3], "exactly 64 cells"),  # stream not finished
    (bytes((48, 4)) + zlib.compress(bytes([4]) * 64), "level 4"),
])
def test_bad_gain_maps_raise(payload, message):
    with pytest.raises(BitstreamError, match=message):
        bs.unpack_gain_map(payload, (8, 8))
    with pytest.raises(BitstreamError, match=message):
        pack_frame(gain_header(), {**STRINGS, "g": payload})  # the encoder never writes what it cannot read
    # and a decoder given a frame (correct CRC) that carries it
    good = gain_payload()
    body = bytearray(pack_frame(gain_header(), {**STRINGS, "g": good})[: -4 - len(good)] + payload)
    struct.pack_into(">I", body, bs.HEADER_BYTES, len(payload))
    with pytest.raises(BitstreamError, match=message):
        unpack_frame(recrc(bytes(body)))


gain_maps = st.builds(
    lambda code, levels, seed: bs.GainMap(code=code, levels=levels, cells=bytes(random.Random(seed).randrange(levels) for _ in range(64))),
    st.integers(1, bs.MAX_GAIN_CODE), st.integers(2, bs.MAX_GAIN_LEVELS), st.integers(0, 10**6),
)


@settings(max_examples=200, deadline=None)
@given(payloads, gain_maps, st.data())
def test_property_version_2_corruption_always_raises(strings, gain_map, data):
    frame = pack_frame(gain_header(), {**strings, "g": bs.pack_gain_map(gain_map)})
    assert unpack_frame(frame)[1]["g"] == bs.pack_gain_map(gain_map)
    with pytest.raises(BitstreamError):
        unpack_frame(mutate(frame, data))


# -- version 3: frames of a stream ----------------------------------------------------------------------
def stream_header(frame_type=bs.FRAME_P, **overrides) -> FrameHeader:
    fields = dict(version=3, frame_type=frame_type, stream_id=0xDEADBEEF, seq=7, ref_seq=6 if frame_type else 0,
                  ref_crc=0x1234ABCD if frame_type else 0)
    fields.update(overrides)
    return make_header(**fields)


def test_version_3_round_trip_and_stream_fields():
    for header in (stream_header(), stream_header(bs.FRAME_I)):
        frame = pack_frame(header, STRINGS)
        assert frame[:4] == b"RCB\x03" and len(frame) == bs.header_bytes(3) + 4 + sum(map(len, STRINGS.values()))
        parsed, strings = unpack_frame(frame, expected_model_hash=HASH)
        assert parsed == header and strings == STRINGS and parsed.is_stream_frame
        assert parsed.is_p_frame == (header.frame_type == bs.FRAME_P)
    info = bs.header_info(pack_frame(stream_header(), STRINGS))
    assert info["stream"] == {"frame_type": "P", "stream_id": 0xDEADBEEF, "seq": 7, "ref_seq": 6, "ref_crc": 0x1234ABCD}
    assert bs.header_info(FRAME)["stream"] is None


@pytest.mark.parametrize("overrides, message", [
    (dict(frame_type=2), "neither I"),
    (dict(frame_type=bs.FRAME_I, ref_seq=3), "no reference"),
    (dict(frame_type=bs.FRAME_I, ref_crc=1), "no reference"),
    (dict(ref_seq=7), "its own reference"),
    (dict(seq=2**32), "32-bit"),
    (dict(version=1), "has no stream fields"),
    (dict(flags=bs.FLAG_LATENT_GAIN), "gain-map flag"),
])
def test_bad_stream_fields_raise(overrides, message):
    with pytest.raises(BitstreamError, match=message):
        pack_frame(stream_header(**overrides), STRINGS)


def test_version_3_stream_block_tampering_with_a_valid_crc_raises():
    body = bytearray(pack_frame(stream_header(), STRINGS)[:-4])
    body[bs.HEADER_BYTES] = 9  # frame type
    with pytest.raises(BitstreamError, match="neither I"):
        unpack_frame(recrc(bytes(body)))
    body = bytearray(pack_frame(stream_header(), STRINGS)[:-4])
    struct.pack_into(">I", body, bs.HEADER_BYTES + 9, 7)  # its own seq as reference
    with pytest.raises(BitstreamError, match="its own reference"):
        unpack_frame(recrc(bytes(body)))


@settings(max_examples=200, deadline=None)
@given(payloads, st.data())
def test_property_version_3_corruption_always_raises(strings, data):
    with pytest.raises(BitstreamError):
        unpack_frame(mutate(pack_frame(stream_header(), strings), data))
