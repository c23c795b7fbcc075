"""``guard_rans_string``: CompressAI's rANS decoder must never read past the (padded) string it is given.

The C++ decoder has no end-of-buffer check, so it cannot tell us how far it read.  ``RansReadModel`` replays its
control flow (compressai/cpp_exts/rans/rans_interface.cpp, ``decode_with_indexes``, and ryg_rans' rans64.h) in
Python and records the furthest byte it touches.  It is checked against the real encoder (a valid string is read
exactly to its end), then used to measure how far garbage strings make the decoder read.

``python test/test_bitstream_rans.py`` prints those measurements (quoted in docs/bitstream.md).
"""
from __future__ import annotations

import bisect
import random
import struct
import sys

import pytest

torch = pytest.importorskip("torch")
from compressai.entropy_models import EntropyBottleneck, GaussianConditional  # noqa: E402

from roi_codec_ros.codec import bitstream as bs  # noqa: E402
from roi_codec_ros.codec.bitstream import BitstreamError, guard_rans_string  # noqa: E402

RANS64_L = 1 << 31
PRECISION = 16
BYPASS_BITS = 4
MASK64 = (1 << 64) - 1


class RansReadModel:
    """How far CompressAI's ``decode_with_indexes`` reads into ``buffer`` for these indexes and tables."""

    def __init__(self, cdfs: list[list[int]], cdf_sizes: list[int]):
        self.cdfs, self.cdf_sizes = cdfs, cdf_sizes

    def furthest_byte(self, buffer: bytes, indexes: list[int]) -> int:
        """Bytes consumed from the start of ``buffer``; words past its end read as 0x80808080 (the pad fill)."""
        self.buffer, self.pos = buffer, 0
        x = self._word() | (self._word() << 32)  # Rans64DecInit
        for index in indexes:
            cdf, max_value = self.cdfs[index], self.cdf_sizes[index] - 2
            cum = x & ((1 << PRECISION) - 1)
            s = bisect.bisect_right(cdf, cum, 0, self.cdf_sizes[index]) - 1  # first cdf[j] > cum, minus 1
            x = ((cdf[s + 1] - cdf[s]) * (x >> PRECISION) + (x & ((1 << PRECISION) - 1)) - cdf[s]) & MASK64
            if x < RANS64_L:  # Rans64DecAdvance renormalisation
                x = ((x << 32) | self._word()) & MASK64
            if s == max_value:  # bypass: 4-bit count nibbles (0xF = continue), then that many raw nibbles
                val, x = self._get_bits(x)
                count = val
                while val == 0xF:
                    val, x = self._get_bits(x)
                    count += val
                for _ in range(count):
                    _, x = self._get_bits(x)
        return self.pos

    def _word(self) -> int:
        chunk = self.buffer[self.pos : self.pos + 4]
        self.pos += 4
        return struct.unpack("<I", chunk)[0] if len(chunk) == 4 else 0x80808080

    def _get_bits(self, x: int) -> tuple[int, int]:
        val = x & ((1 << BYPASS_BITS) - 1)
        x >>= BYPASS_BITS
        if x < RANS64_L:
            x = ((x << 32) | self._word()) & MASK64
        return val, x


def entropy_bottleneck(channels=8, seed=0) -> EntropyBottleneck:
    torch.manual_seed(seed)
    eb = EntropyBottleneck(channels)
    with torch.no_grad():  # a heavier tail than the untrained default, so escapes happen often
        eb.quantiles[:, 0, :] = torch.tensor([-6.0, 0.0, 6.0])
    eb.update(force=True)
    return eb


def gaussian_conditional() -> GaussianConditional:
    gc = GaussianConditional(None)
    gc.update_scale_table(torch.exp(torch.linspace(torch.log(torch.tensor(0.11)), torch.log(torch.tensor(256.0)), 64)))
    gc.update()
    return gc


def model_for(coder) -> RansReadModel:
    cdfs = coder._quantized_cdf.tolist()
    return RansReadModel(cdfs, coder._cdf_length.tolist())


def eb_indexes(channels: int, h: int, w: int) -> list[int]:
    return [c for c in range(channels) for _ in range(h * w)]


def test_read_model_reads_valid_strings_exactly_to_their_end():
    eb = entropy_bottleneck()
    model = model_for(eb)
    rng = torch.Generator().manual_seed(1)
    for scale in (0.5, 3.0, 40.0):  # 40: many values outside the table, i.e. many escapes
        z = (torch.randn(1, 8, 5, 7, generator=rng) * scale).round()
        (string,) = eb.compress(z)
        assert model.furthest_byte(string, eb_indexes(8, 5, 7)) == len(string)
    gc = gaussian_conditional()
    y = (torch.randn(1, 4, 6, 6, generator=rng) * 30).round()
    scales = torch.rand(1, 4, 6, 6, generator=rng) * 3 + 0.05  # small scales: big values escape
    indexes = gc.build_indexes(scales)
    (string,) = gc.compress(y, indexes)
    assert model_for(gc).furthest_byte(string, indexes.flatten().tolist()) == len(string)


def test_read_model_matches_the_decoder_on_the_escape_values():
    # the model follows the decoder's control flow; check the decoded values agree where it matters: escapes
    eb = entropy_bottleneck()
    z = torch.zeros(1, 8, 2, 2)
    # CompressAI's encoder loops forever from |value| >= 2**27 (int32 shift by 32): stay below
    z[0, :, 0, 0] = torch.tensor([300.0, -300.0, 1e5, -1e5, 17, -17, 2.0**26, -(2.0**26)])
    (string,) = eb.compress(z)
    assert torch.equal(eb.decompress([string], (2, 2)), z)
    assert model_for(eb).furthest_byte(string, eb_indexes(8, 2, 2)) == len(string)


def test_unguarded_0xff_run_reads_far_past_the_end():
    # the reason for the guard: one escape symbol at the start of 1000 bytes of 0xff reads ~15 KB
    eb = entropy_bottleneck(1)
    furthest = model_for(eb).furthest_byte(b"\xff" * 1000, [0])
    assert furthest > 10_000


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "not an rANS stream"),
        (b"\x00" * 4, "not an rANS stream"),
        (b"\x00" * 13, "not an rANS stream"),
        (b"\x01" * 8 + b"\xff" * 8, "run of 0xff"),
        (b"\x01" * 200, "too long for 10 symbols"),
    ],
)
def test_guard_rejects_what_no_encoder_writes(data, message):
    with pytest.raises(BitstreamError, match=message):
        guard_rans_string("z", data, 10)


def test_guard_keeps_valid_decodes_identical():
    eb = entropy_bottleneck()
    z = (torch.randn(1, 8, 3, 5, generator=torch.Generator().manual_seed(3)) * 20).round()
    (string,) = eb.compress(z)
    guarded = guard_rans_string("z", string, 8 * 3 * 5)
    assert guarded.startswith(string)
    assert len(guarded) == len(string) + bs.RANS_PAD_BYTES_PER_SYMBOL * 120 + bs.RANS_PAD_MIN_BYTES
    assert torch.equal(eb.decompress([guarded], (3, 5)), z)


def garbage_strings(rng: random.Random, num_symbols: int, count: int):
    """Garbage an attacker or a bug could send that passes the guard's checks."""
    longest = min(bs.RANS_MAX_BYTES_PER_SYMBOL * num_symbols, 4096) // 4
    for i in range(count):
        words = rng.randrange(2, longest + 1)
        kind = i % 4
        if kind == 0:
            data = rng.randbytes(4 * words)
        elif kind == 1:  # longest allowed 0xff runs, everywhere
            data = ((b"\xff" * 7 + bytes([rng.randrange(0, 255)])) * words)[: 4 * words]
        elif kind == 2:  # mostly 0xf nibbles
            data = bytes(rng.choice((0xFF, 0xFF, 0xFF, 0xF0, 0x0F, 0xEF)) for _ in range(4 * words))
        else:  # a single constant byte
            data = bytes([rng.choice((0x00, 0x7F, 0x80, 0xFE))]) * (4 * words)
        if bs.RANS_FORBIDDEN_RUN not in data:
            yield data


def worst_guarded_overread(coder, indexes: list[int], count: int, seed: int) -> tuple[int, float]:
    """Max bytes read past the string end over ``count`` garbage strings (absolute, per symbol)."""
    model, rng, worst = model_for(coder), random.Random(seed), 0
    for data in garbage_strings(rng, len(indexes), count):
        guarded = guard_rans_string("x", data, len(indexes))
        worst = max(worst, model.furthest_byte(guarded, indexes) - len(data))
    return worst, worst / len(indexes)


def test_guard_padding_covers_garbage_entropy_bottleneck():
    indexes = eb_indexes(8, 4, 4)
    worst, _ = worst_guarded_overread(entropy_bottleneck(), indexes, 300, seed=0)
    assert worst <= bs.RANS_PAD_BYTES_PER_SYMBOL * len(indexes) + bs.RANS_PAD_MIN_BYTES
    assert worst <= bs.RANS_PAD_MIN_BYTES // 4  # for a few symbols the fixed part alone has a 4x margin


def test_guard_padding_covers_garbage_gaussian_conditional():
    gc = gaussian_conditional()
    rng = random.Random(1)
    indexes = [rng.randrange(0, 64) for _ in range(400)]
    worst, per_symbol = worst_guarded_overread(gc, indexes, 200, seed=1)
    assert worst <= bs.RANS_PAD_BYTES_PER_SYMBOL * len(indexes) + bs.RANS_PAD_MIN_BYTES
    assert per_symbol < bs.RANS_PAD_BYTES_PER_SYMBOL / 2


def _measure() -> None:
    """Print the over-read figures quoted in docs/bitstream.md."""
    print("unguarded: one escape symbol, n bytes of 0xff -> bytes read")
    eb1 = entropy_bottleneck(1)
    for n in (100, 1000, 10000):
        furthest = model_for(eb1).furthest_byte(b"\xff" * n, [0])
        print(f"  {n:>6} -> {furthest:>8}")
    eb = entropy_bottleneck()
    gc = gaussian_conditional()
    rng = random.Random(2)
    cases = {
        "EntropyBottleneck 8x16x16 (heavy tail)": (eb, eb_indexes(8, 16, 16)),
        "GaussianConditional 4096 symbols": (gc, [rng.randrange(0, 64) for _ in range(4096)]),
        "GaussianConditional 4096 smallest scale": (gc, [0] * 4096),
    }
    for name, (coder, indexes) in cases.items():
        worst, per_symbol = worst_guarded_overread(coder, indexes, 400, seed=3)
        print(f"guarded, {name}: worst read past the string {worst} bytes = {per_symbol:.2f} per symbol"
              f" (pad = {bs.RANS_PAD_BYTES_PER_SYMBOL} per symbol + {bs.RANS_PAD_MIN_BYTES})")


if __name__ == "__main__":
    sys.exit(_measure())
