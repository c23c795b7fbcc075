#!/usr/bin/env python3
"""Fuzz ``RoiCodec.decode`` with mutated, truncated and structure-aware garbage bitstreams.

Seeds are real frames from ``RoiCodec.random(seed=0)`` on small images.  Each input is one mutation of a seed:

- raw mutations (bit/byte flips, truncation, insertion, deletion, splicing, random bytes): exercise the container
  checks (magic, version, lengths, CRC);
- structure-aware mutations that rebuild a valid header/CRC around garbage: random, truncated, extended,
  swapped or constant-filled entropy-coded strings and changed image sizes / latent shapes / rate / flags, so
  CompressAI's rANS decoder (C++) and the synthesis transform get garbage.

Decoding runs in a worker subprocess with a watchdog: a crash (signal) or a hang (no answer within
``--timeout`` seconds) is recorded, the offending input is saved to ``--out-dir`` and the worker restarted.
Any exception other than ``BitstreamError``, or a decoded image of the wrong shape/dtype, is a failure too.
Exit code 0 only if every input either decoded to an image of the header's size or raised ``BitstreamError``.

    python scripts/fuzz_decode.py --inputs 100000 --seed 0          # the full run (see docs/bitstream.md)
    python scripts/fuzz_decode.py --inputs 2000 --container-only    # unpack_frame only, in-process
    python scripts/fuzz_decode.py --replay fuzz_failures/crash-....rcb

Inputs are a pure function of ``--seed`` and the input index, so a run is reproducible.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import importlib
import multiprocessing as mp
import random
import re
import struct
import sys
import time
import traceback
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from roi_codec_ros.codec import bitstream as bs
from roi_codec_ros.codec.bitstream import BitstreamError, pack_frame, unpack_frame

# --- seeds ----------------------------------------------------------------------------------------------------

# (height, width, rate, roi_weight, with ROI mask, roi_gain): small images keep a garbage decode at ~10 ms; the
# last two are version-2 frames (explicit latent scaling: a gain map)
SEED_IMAGES = [(16, 16, 0.5, 1.0, False, 1.0), (48, 80, 0.0, 1.0, False, 1.0), (1, 70, 1.0, 1.0, False, 1.0),
               (65, 33, 1.0, 8.0, True, 1.0), (65, 33, 1.0, 8.0, True, 4.0), (48, 130, 0.3, 4.0, True, 8.0)]
MAX_FUZZ_SIDE = 256  # structure-aware size changes stay small so a garbage decode stays fast
FUZZ_STREAM_ID = 0x5EED5EED  # the seed stream (an I-frame and two P-frames): P inputs are decoded against it


def make_seeds(codec) -> list[bytes]:
    import numpy as np

    rng = np.random.default_rng(0)
    seeds = []
    for h, w, rate, roi_weight, with_roi, roi_gain in SEED_IMAGES:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), np.float32)
        mask[: h // 2, : w // 2] = 1.0
        mask[h // 2 :, w // 2 :] = 0.4  # a second weight: a second gain level
        seeds.append(codec.encode(image, roi_mask=mask if with_roi else None, rate=rate, roi_weight=roi_weight,
                                  roi_gain=roi_gain).data)
    stream = codec.stream_encoder(keyframe_interval=0, stream_id=FUZZ_STREAM_ID)
    base = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    stream.flow_prediction = True
    for t in range(4):  # version-3 frames: I, P, P (a small object moving over a still background), P with flow
        image = base.copy()
        image[10:20, 5 + 8 * t : 15 + 8 * t] = 255
        seeds.append(_encode_warped(stream, image) if t == 3 else stream.encode(image, rate=0.5).data)
    return seeds


def _encode_warped(stream, image) -> bytes:
    """A P-frame predicted from the warped reference picture in every block (an untrained model's latents seldom
    choose it on their own, and the decoder must take any valid choice)."""
    from roi_codec_ros.codec import motion

    search_with_warp = motion.search_with_warp

    def every_block_warped(latents, reference, warped, *args, **kwargs):  # and the flow pays whatever it saves
        _, plain, _ = search_with_warp(latents, reference, warped, *args, **kwargs)
        index = (2 * plain.max_shift + 1) ** 2 + 1
        return bs.MotionField(plain.block, plain.max_shift, bytes([index] * len(plain.choices)), warped=True), plain, float("inf")

    codec, max_cost = stream.codec, stream.codec.p_frame_max_cost
    motion.search_with_warp, codec.p_frame_max_cost = every_block_warped, float("inf")  # a P-frame whatever it costs
    stream._flow_wait = 0  # and try the flow now, though the frames before did not send one
    try:
        data = stream.encode(image, rate=0.5).data
    finally:
        motion.search_with_warp, codec.p_frame_max_cost = search_with_warp, max_cost
    if not unpack_frame(data)[0].has_flow:
        raise RuntimeError("the flow seed came out without a flow field")
    return data


def seed_stream(seeds: list[bytes]) -> list[bytes]:
    """The frames of the seed stream in order (what a P input's reference is rebuilt from)."""
    frames = [s for s in seeds if s[3] == bs.STREAM_VERSION and unpack_frame(s)[0].stream_id == FUZZ_STREAM_ID]
    return sorted(frames, key=lambda s: unpack_frame(s)[0].seq)


def fuzz_codec():
    """The default codec fuzzed: ``RoiCodec.random``'s small untrained model with a P-frame entropy model, so P-frame
    inputs reach the decoder's inter path (its context from the motion-compensated reference)."""
    from dataclasses import replace as _replace

    from roi_codec_ros.codec import RoiCodec
    from roi_codec_ros.codec.api import RANDOM_MODEL_CONFIG

    return RoiCodec.random(config=_replace(RANDOM_MODEL_CONFIG, inter_prior=True))


def load_factory(spec: str):
    """``module:attr.attr`` -> callable returning a codec (default: ``fuzz_codec``)."""
    module, _, attrs = spec.partition(":")
    obj = sys.modules[__name__] if module == "__main__" else importlib.import_module(module)
    for attr in attrs.split("."):
        obj = getattr(obj, attr)
    return obj


# --- mutations ------------------------------------------------------------------------------------------------


def with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def raw_bitflip(rng, seed, seeds):
    data = bytearray(seed)
    for _ in range(rng.choice((1, 1, 2, 8))):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def raw_byteset(rng, seed, seeds):
    data = bytearray(seed)
    for _ in range(rng.choice((1, 2, 4))):
        data[rng.randrange(len(data))] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
    return bytes(data)


def raw_truncate(rng, seed, seeds):
    return seed[: rng.randrange(len(seed))]


def raw_insert(rng, seed, seeds):
    i = rng.randrange(len(seed) + 1)
    return seed[:i] + rng.randbytes(rng.choice((1, 4, rng.randrange(1, 64)))) + seed[i:]


def raw_delete(rng, seed, seeds):
    i = rng.randrange(len(seed))
    return seed[:i] + seed[i + rng.randrange(1, 16) :]


def raw_splice(rng, seed, seeds):
    other = rng.choice(seeds)
    return seed[: rng.randrange(len(seed))] + other[rng.randrange(len(other)) :]


def raw_random(rng, seed, seeds):
    data = rng.randbytes(rng.choice((0, 1, 3, 4, 43, 44, 47, 48, rng.randrange(200))))
    return (rng.choice((b"RCB\x01", b"RCB\x02")) + data) if rng.random() < 0.5 else data


def _garbage_string(rng, original: bytes) -> bytes:
    n = rng.choice((0, 1, 4, 7, 8, 12, len(original), len(original) + 4, rng.randrange(1, 4096)))
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(n)
    if kind == 1:
        return bytes([rng.choice((0x00, 0xFF, 0x80, 0x7F))]) * n
    if kind == 2:  # long runs of 0xff: the pattern that makes the rANS escape decoding read far
        return b"\xff" * rng.choice((8, 64, 4096, 100_000, 400_000))
    return ((b"\xff" * 7 + b"\x7f") * (n // 8 + 1))[:n]


def struct_payload(rng, seed, seeds):
    header, strings = unpack_frame(seed)
    name = rng.choice(bs.STREAM_NAMES)  # the gain map has its own mutator (struct_gain_map)
    s = strings[name]
    op = rng.randrange(5)
    if op == 0:
        s = _garbage_string(rng, s)
    elif op == 1 and s:  # flip bits inside the string
        b = bytearray(s)
        for _ in range(rng.choice((1, 2, 8))):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        s = bytes(b)
    elif op == 2:
        s = s[: rng.randrange(len(s) + 1)]
    elif op == 3:
        s = s + rng.randbytes(rng.choice((1, 4, 64)))
    else:  # another stream's string, possibly from another seed
        s = unpack_frame(rng.choice(seeds))[1][rng.choice(bs.STREAM_NAMES)]
    strings[name] = s
    return pack_frame(header, strings)


def struct_resize(rng, seed, seeds):
    """Another image size with consistent latent shapes: garbage strings for a different symbol count."""
    header, strings = unpack_frame(seed)
    h, w = rng.randrange(1, MAX_FUZZ_SIDE + 1), rng.randrange(1, MAX_FUZZ_SIDE + 1)
    shape = bs.latent_shape(h, w, header.pad_multiple)
    header = replace(header, height=h, width=w, z_shape=shape, w_shape=shape)
    return pack_frame(header, _refit_maps(rng, header, strings))


def _random_motion(rng, y_shape, warped: bool = False) -> bytes:
    """A valid motion field for y's grid, block size and choices at random."""
    field = bs.MotionField(block=rng.randrange(1, bs.MAX_MOTION_BLOCK + 1), max_shift=rng.randrange(bs.MAX_MOTION_SHIFT + 1),
                           choices=b"", warped=warped)
    rows, cols = field.blocks_shape(y_shape)
    return bs.pack_motion(bs.MotionField(field.block, field.max_shift,
                                         bytes(rng.randrange(field.candidates) for _ in range(rows * cols)), warped))


def _random_flow(rng, header) -> bytes:
    """A valid flow field for the header's picture: grid, CRC and vectors at random (small or up to the limit)."""
    grid = rng.choice((bs.MIN_WARP_GRID, 16, 64, bs.MAX_WARP_GRID))
    rows, cols = -(-header.height // grid), -(-header.width // grid)
    top = rng.choice((8, bs.MAX_WARP_PIXELS * bs.WARP_UNITS_PER_PIXEL))
    vectors = struct.pack(f"<{2 * rows * cols}h", *(rng.randint(-top, top) for _ in range(2 * rows * cols)))
    return bs.pack_flow(bs.FlowField(grid, rng.randrange(2**32), vectors))


def _with_payload(header, strings, name: str, payload: bytes) -> bytes:
    """The frame with payload ``name`` replaced by any bytes, its length fixed up, with a correct CRC (pack_frame
    would refuse an invalid gain map, motion or flow field)."""
    names = bs._payload_names(header.version, header.flags)
    payloads = [payload if n == name else strings[n] for n in names]
    head = bytearray(pack_frame(header, strings)[: bs.header_bytes(header.version, header.flags)])
    struct.pack_into(">3I", head, bs.HEADER_BYTES - 12, *(len(p) for p in payloads[:3]))
    extra = bs.HEADER_BYTES if header.version == 2 else bs.header_bytes(3)  # the lengths of g, or of m then f
    for k, p in enumerate(payloads[3:]):
        struct.pack_into(">I", head, extra + 4 * k, len(p))
    return with_crc(bytes(head) + b"".join(payloads))


def _refit_maps(rng, header, strings):
    """A frame's gain map (version 2) or motion field (version-3 P-frame) redrawn for the header's (changed) y grid,
    so the frame stays packable."""
    if header.has_flow:
        strings = {**strings, bs.WARP_STREAM: _random_flow(rng, header)}
    if header.has_motion:
        return {**strings, bs.MOTION_STREAM: _random_motion(rng, header.y_shape, header.has_flow)}
    if not header.has_gain_map:
        return strings
    levels = rng.randrange(2, bs.MAX_GAIN_LEVELS + 1)
    cells = bytes(rng.randrange(levels) for _ in range(header.y_shape[0] * header.y_shape[1]))
    return {**strings, "g": bs.pack_gain_map(bs.GainMap(code=rng.randrange(1, bs.MAX_GAIN_CODE + 1), levels=levels, cells=cells))}


def struct_fields(rng, seed, seeds):
    header, strings = unpack_frame(seed)
    change = rng.randrange(4)
    if change == 0:
        header = replace(header, rate_code=rng.choice((0, 65535, rng.randrange(65536))))
    elif change == 1:
        # the gain-map and motion flags belong to the payloads (pack_frame refuses a mismatch; struct_header_bytes
        # tries it)
        kept = bs.FLAG_LATENT_GAIN | bs.FLAG_MOTION | bs.FLAG_WARP
        header = replace(header, flags=(rng.randrange(bs.KNOWN_FLAGS + 1) & ~kept) | (header.flags & kept))
    elif change == 2:
        header = replace(header, model_hash=rng.randbytes(8))
    else:
        shape = bs.latent_shape(header.height, header.width, 128)
        header = replace(header, pad_multiple=128, z_shape=shape, w_shape=shape)
        strings = _refit_maps(rng, header, strings)
    return pack_frame(header, strings)


def struct_header_bytes(rng, seed, seeds):
    """Random bytes in the fixed header (after magic+version) with a correct CRC."""
    body = bytearray(seed[:-4])
    for _ in range(rng.choice((1, 2, 4))):
        body[rng.randrange(3, bs.header_bytes(seed[3], seed[18]))] = rng.randrange(256)  # the version byte too
    return with_crc(bytes(body))


def struct_lengths(rng, seed, seeds):
    """Move bytes between the strings (lengths still add up) with a correct CRC."""
    body = bytearray(seed[:-4])
    count = len(bs._payload_names(seed[3], seed[18]))  # y, z, w (+ the gain map, or the motion and flow fields)
    left, lengths = len(body) - bs.header_bytes(seed[3], seed[18]), []
    for _ in range(count - 1):
        lengths.append(rng.randrange(left + 1))
        left -= lengths[-1]
    lengths.append(left)
    struct.pack_into(">3I", body, bs.HEADER_BYTES - 12, *lengths[:3])
    extra = bs.HEADER_BYTES if seed[3] == 2 else bs.header_bytes(3)
    for k, length in enumerate(lengths[3:]):
        struct.pack_into(">I", body, extra + 4 * k, length)
    return with_crc(bytes(body))


def struct_gain_map(rng, seed, seeds):
    """A version-2 frame whose gain map is garbage, truncated, of another size or level count (correct CRC)."""
    header, strings = unpack_frame(seed)
    if not header.has_gain_map:
        return struct_payload(rng, seed, seeds)
    cells = header.y_shape[0] * header.y_shape[1]
    op = rng.randrange(6)
    if op == 0:
        g = rng.randbytes(rng.choice((0, 1, 2, 3, 16, 200)))
    elif op == 1:  # a valid stream of the wrong cell count
        g = strings["g"][:2] + zlib.compress(bytes(rng.randrange(4) for _ in range(max(0, cells + rng.choice((-1, 1, 64))))))
    elif op == 2:  # code and levels anywhere in 0..255
        g = bytes((rng.randrange(256), rng.randrange(256))) + strings["g"][2:]
    elif op == 3:  # levels above the declared count
        g = strings["g"][:2] + zlib.compress(bytes(rng.randrange(256) for _ in range(cells)))
    elif op == 4:
        g = strings["g"][: rng.randrange(len(strings["g"]))]
    else:  # a valid map with other levels: decodes (a different gain), never crashes
        levels = rng.randrange(2, bs.MAX_GAIN_LEVELS + 1)
        g = bytes((rng.randrange(1, bs.MAX_GAIN_CODE + 1), levels)) + zlib.compress(bytes(rng.randrange(levels) for _ in range(cells)))
    return _with_payload(header, strings, "g", g)


def struct_motion(rng, seed, seeds):
    """A P-frame whose motion field is garbage, truncated, of another size or out of range, or valid but other
    (decodes against another prediction, never crashes) (correct CRC)."""
    header, strings = unpack_frame(seed)
    if not header.has_motion:
        return struct_stream(rng, seed, seeds)
    m = strings[bs.MOTION_STREAM]
    op = rng.randrange(5)
    if op == 0:
        m = rng.randbytes(rng.choice((0, 1, 2, 3, 16, 200)))
    elif op == 1:  # a valid stream of the wrong block count
        count = len(bs.unpack_motion(m, header.y_shape, header.has_flow).choices)
        m = m[:2] + zlib.compress(bytes(rng.randrange(4) for _ in range(max(0, count + rng.choice((-1, 1, 64))))))
    elif op == 2:  # block and max shift anywhere in 0..255
        m = bytes((rng.randrange(256), rng.randrange(256))) + m[2:]
    elif op == 3:
        m = m[: rng.randrange(len(m))]
    else:
        m = _random_motion(rng, header.y_shape, header.has_flow)
    return _with_payload(header, strings, bs.MOTION_STREAM, m)


def struct_flow(rng, seed, seeds):
    """A P-frame whose flow field is garbage, truncated, of another grid or out of range, or valid but other: other
    vectors or CRC (the decoder's prediction then fails the CRC: a PredictionMismatchError, never a picture)."""
    header, strings = unpack_frame(seed)
    if not header.has_flow:
        return struct_motion(rng, seed, seeds)
    f = strings[bs.WARP_STREAM]
    op = rng.randrange(6)
    if op == 0:
        f = rng.randbytes(rng.choice((0, 1, 5, 6, 16, 200)))
    elif op == 1:  # grid anywhere in 0..255
        f = bytes([rng.randrange(256)]) + f[1:]
    elif op == 2:  # another CRC
        f = f[:1] + rng.randbytes(4) + f[5:]
    elif op == 3:
        f = f[: rng.randrange(len(f))]
    elif op == 4:  # a valid stream of the wrong size, or vectors beyond the limit
        n = len(zlib.decompress(f[5:])) + rng.choice((-2, 2, 0))
        f = f[:5] + zlib.compress(bytes(rng.randrange(256) for _ in range(max(0, n))))
    else:
        f = _random_flow(rng, header)
    return _with_payload(header, strings, bs.WARP_STREAM, f)


def struct_stream(rng, seed, seeds):
    """A version-3 frame with other stream fields (valid CRC): another frame type, stream id, sequence numbers or
    reference CRC, in range or not."""
    header, strings = unpack_frame(seed)
    if not header.is_stream_frame:
        return struct_fields(rng, seed, seeds)
    body = bytearray(seed[:-4])
    field = rng.randrange(5)
    offset = bs.HEADER_BYTES + (0, 1, 5, 9, 13)[field]
    if field == 0:
        body[offset] = rng.choice((0, 1, 2, 255))
    else:
        struct.pack_into(">I", body, offset, rng.choice((0, 1, 2, header.seq, header.ref_seq, 0xFFFFFFFF,
                                                          rng.randrange(2**32))))
    return with_crc(bytes(body))


MUTATORS = {  # name -> (function, weight)
    "bitflip": (raw_bitflip, 8),
    "byteset": (raw_byteset, 6),
    "truncate": (raw_truncate, 6),
    "insert": (raw_insert, 4),
    "delete": (raw_delete, 4),
    "splice": (raw_splice, 3),
    "random": (raw_random, 4),
    "payload": (struct_payload, 30),
    "resize": (struct_resize, 10),
    "fields": (struct_fields, 8),
    "header_bytes": (struct_header_bytes, 8),
    "lengths": (struct_lengths, 9),
    "gain_map": (struct_gain_map, 6),
    "stream": (struct_stream, 6),
    "motion": (struct_motion, 5),
    "flow": (struct_flow, 4),
}


def make_input(seed: int, index: int, seeds: list[bytes]) -> tuple[str, bytes]:
    rng = random.Random(f"{seed}:{index}")
    names = list(MUTATORS)
    name = rng.choices(names, weights=[MUTATORS[n][1] for n in names])[0]
    data = MUTATORS[name][0](rng, rng.choice(seeds), seeds)
    if rng.random() < 0.05:  # stack a second raw mutation now and then
        data = raw_bitflip(rng, data, seeds) if data else data
    return name, data


# --- outcomes -------------------------------------------------------------------------------------------------


def error_kind(message: str) -> str:
    """A BitstreamError message without its numbers: groups outcomes in the summary."""
    text = re.sub(r"\d+x\d+\b|0x[0-9a-f]+|[0-9a-f]{16}|\d+", "#", message)  # HxW sizes before hex
    return text.split("(")[0].split(":")[0].strip()[:60]


def decode_one(codec, data: bytes, stream: list[bytes] = ()) -> tuple[str, str]:
    """Decode one input; a P-frame naming the seed stream is decoded by a stream decoder holding its reference (the
    seed frames up to it), so garbage residuals reach the decoder, not just the missing-reference check."""
    try:
        header = unpack_frame(data)[0]
    except BitstreamError:
        header = None
    try:
        if header is not None and header.is_p_frame and stream and header.stream_id == FUZZ_STREAM_ID:
            decoder = codec.stream_decoder()
            for frame in stream[: header.ref_seq + 1]:
                decoder.decode(frame)
            image = decoder.decode(data)
        else:
            image = codec.decode(data)
    except BitstreamError as exc:
        return "rejected", error_kind(str(exc))
    except Exception:  # noqa: BLE001 - anything else is what we are looking for
        return "FAIL-exception", traceback.format_exc(limit=6)
    header, _ = unpack_frame(data)
    if getattr(image, "shape", None) != (header.height, header.width, 3) or str(image.dtype) != "uint8":
        got = getattr(image, "shape", type(image))
        return "FAIL-output", f"decoded {got} for a {header.height}x{header.width} header"
    return "decoded", "an image of the header's size"


def worker(conn, codec_factory: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    codec = load_factory(codec_factory)()
    seeds = make_seeds(codec)
    conn.send(("ready", seeds))  # the seeds come from the worker: one torch start-up, not two
    stream = seed_stream(seeds)
    while True:
        data = conn.recv_bytes()
        conn.send(decode_one(codec, data, stream))


class Worker:
    """A decoding subprocess with a watchdog."""

    def __init__(self, codec_factory: str, threads: int, startup_timeout: float):
        self.ctx = mp.get_context("spawn")
        self.args = (codec_factory, threads)
        self.startup_timeout = startup_timeout
        self.process = None
        self.restarts = -1

    def start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        self.process = self.ctx.Process(target=worker, args=(child, *self.args), daemon=True)
        self.process.start()
        child.close()
        message = self.conn.recv() if self.conn.poll(self.startup_timeout) else None
        if not (isinstance(message, tuple) and message[0] == "ready"):
            raise RuntimeError("decode worker did not start")
        self.seeds = message[1]
        self.restarts += 1

    def decode(self, data: bytes, timeout: float) -> tuple[str, str]:
        if self.process is None or not self.process.is_alive():
            self.start()
        try:
            self.conn.send_bytes(data)
            if self.conn.poll(timeout):
                return self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            pass
        self.process.join(0.5)
        if self.process.exitcode is None:  # still running: a hang
            self.process.kill()
            self.process.join()
            return "FAIL-hang", f"no answer within {timeout:g} s (killed)"
        return "FAIL-crash", f"worker died with exit code {self.process.exitcode}"

    def stop(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join()


def container_only(data: bytes) -> tuple[str, str]:
    try:
        unpack_frame(data)
    except BitstreamError as exc:
        return "rejected", error_kind(str(exc))
    except Exception:  # noqa: BLE001
        return "FAIL-exception", traceback.format_exc(limit=6)
    return "decoded", "valid container"


@dataclass
class Summary:
    inputs: int = 0
    seconds: float = 0.0
    restarts: int = 0

    def __post_init__(self):
        self.outcomes = collections.Counter()
        self.kinds = collections.Counter()
        self.by_mutator = collections.defaultdict(collections.Counter)
        self.failures: list[tuple[int, str, str, Path | None]] = []

    @property
    def ok(self) -> bool:
        return not self.failures

    def print(self, out=sys.stdout) -> None:
        rate = self.inputs / self.seconds if self.seconds else 0.0
        print(f"\n{self.inputs} inputs in {self.seconds:.1f} s ({rate:.0f} inputs/s), "
              f"worker restarts: {self.restarts}", file=out)
        print("outcomes:", file=out)
        for outcome, n in self.outcomes.most_common():
            print(f"  {outcome:<16} {n:>8}", file=out)
        print("rejections and decodes by kind:", file=out)
        for kind, n in self.kinds.most_common():
            print(f"  {n:>8}  {kind}", file=out)
        print("by mutator (decoded / rejected / failed):", file=out)
        for name, counts in sorted(self.by_mutator.items()):
            failed = sum(n for k, n in counts.items() if k.startswith("FAIL"))
            print(f"  {name:<13} {counts['decoded']:>7} {counts['rejected']:>8} {failed:>6}", file=out)
        print(f"FAILURES: {len(self.failures)}", file=out)
        for index, outcome, detail, path in self.failures[:20]:
            print(f"  input {index}: {outcome}: {detail.strip().splitlines()[-1]} -> {path}", file=out)


def run(args) -> Summary:
    out_dir = Path(args.out_dir)
    summary = Summary()
    worker_proc = None
    if args.container_only:
        seeds = make_seeds(load_factory(args.codec_factory)())
    else:
        worker_proc = Worker(args.codec_factory, args.threads, startup_timeout=max(120.0, args.timeout))
        worker_proc.start()
        seeds = worker_proc.seeds
    start = time.perf_counter()
    try:
        for index in range(args.inputs):
            name, data = make_input(args.seed, index, seeds)
            outcome, detail = container_only(data) if worker_proc is None else worker_proc.decode(data, args.timeout)
            summary.outcomes[outcome] += 1
            summary.by_mutator[name]["rejected" if outcome == "rejected" else outcome] += 1
            if outcome.startswith("FAIL"):
                out_dir.mkdir(parents=True, exist_ok=True)
                path = out_dir / f"{outcome.lower()}-{index}-{hashlib.sha1(data).hexdigest()[:10]}.rcb"
                path.write_bytes(data)
                note = f"seed {args.seed} input {index} mutator {name}\n{outcome}\n{detail}\n"
                path.with_suffix(".txt").write_text(note)
                summary.failures.append((index, outcome, detail, path))
                print(f"input {index} ({name}): {outcome}, saved to {path}", file=sys.stderr, flush=True)
                if len(summary.failures) >= args.max_failures:
                    print(f"stopping after {args.max_failures} failures", file=sys.stderr)
                    summary.inputs = index + 1
                    break
            else:
                summary.kinds[f"{outcome}: {detail}"] += 1
            summary.inputs = index + 1
            if args.progress and summary.inputs % args.progress == 0:
                elapsed = time.perf_counter() - start
                print(f"{summary.inputs} inputs, {elapsed:.0f} s, {summary.inputs / elapsed:.0f}/s, "
                      f"failures {len(summary.failures)}", file=sys.stderr, flush=True)
    finally:
        summary.seconds = time.perf_counter() - start
        if worker_proc is not None:
            summary.restarts = worker_proc.restarts
            worker_proc.stop()
    return summary


def replay(args) -> int:
    data = Path(args.replay).read_bytes()
    worker_proc = Worker(args.codec_factory, args.threads, startup_timeout=max(120.0, args.timeout))
    try:
        outcome, detail = worker_proc.decode(data, args.timeout)
    finally:
        worker_proc.stop()
    print(f"{args.replay}: {outcome}: {detail}")
    return 1 if outcome.startswith("FAIL") else 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="number of mutated inputs (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="mutation seed (inputs are a function of seed and index)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a decode counts as a hang")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the decode worker")
    parser.add_argument("--out-dir", default="fuzz_failures", help="where offending inputs are saved")
    parser.add_argument("--max-failures", type=int, default=20, help="stop after this many failures")
    parser.add_argument("--progress", type=int, default=5000, help="print progress every N inputs (0 = never)")
    parser.add_argument("--container-only", action="store_true", help="fuzz unpack_frame in-process, no decoder")
    parser.add_argument("--codec-factory", default="__main__:fuzz_codec",
                        help="module:callable returning the codec to fuzz (default: %(default)s)")
    parser.add_argument("--replay", help="decode one saved input in a worker and print the outcome")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.replay:
        return replay(args)
    summary = run(args)
    summary.print()
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
