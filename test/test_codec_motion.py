"""Block motion of P-frames on y's grid (``codec/motion.py``) and its ``m`` payload in version-3 frames."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from roi_codec_ros.codec import bitstream as bs  # noqa: E402
from roi_codec_ros.codec import motion  # noqa: E402
from roi_codec_ros.codec.bitstream import BitstreamError, MotionField, pack_motion, unpack_motion  # noqa: E402


def _latents(seed: int = 0, shape=(1, 8, 12, 16)) -> torch.Tensor:
    return torch.randint(-6, 7, shape, generator=torch.Generator().manual_seed(seed)).float()


def test_shifted_moves_by_whole_cells_and_repeats_the_border():
    ref = torch.arange(12.0).reshape(1, 1, 3, 4)
    out = motion.shifted(ref, 1, -1)
    assert out[0, 0].tolist() == [[1, 2, 3, 3], [1, 2, 3, 3], [5, 6, 7, 7]]
    assert torch.equal(motion.shifted(ref, 0, 0), ref)


def test_search_finds_the_shift_and_the_prediction_is_exact_inside():
    ref = _latents()
    moved = motion.shifted(ref, 1, -2)
    field = motion.search(moved, ref, block=4, max_shift=2)
    assert field.blocks_shape((12, 16)) == (3, 4) and len(field.choices) == 12
    assert motion.candidate(field.choices[5], 2) == (1, -2)  # an inner block
    prediction = motion.predict(ref, field)
    assert torch.equal(prediction, prediction.round())  # integers: exact on every machine
    assert torch.equal(prediction[..., 4:8, 4:12], moved[..., 4:8, 4:12])


def test_a_still_block_keeps_no_motion_and_new_content_takes_no_prediction():
    ref = _latents(1)
    latents = ref.clone()
    latents[..., :4, :4] = 0  # the first block: nothing like the reference (cheapest coded as it is)
    latents[..., :4, :4][..., 0, 0] = 1
    field = motion.search(latents, ref, block=4, max_shift=1)
    still = 1 + 1 * 3 + 1
    assert field.choices[0] == 0 and set(field.choices[1:]) == {still}
    assert motion.candidate(0, 1) is None and motion.candidate(still, 1) == (0, 0)


def test_motion_payload_round_trips_and_garbage_is_refused():
    field = MotionField(block=4, max_shift=2, choices=bytes([0, 13, 25, 1] * 3))
    assert unpack_motion(pack_motion(field), (12, 16)) == field
    good = pack_motion(field)
    bad = {
        "truncated": good[:2],
        "block": bytes([0, 2]) + good[2:],
        "shift": bytes([4, 9]) + good[2:],
        "exactly 12 blocks": bytes([4, 2]) + zlib.compress(bytes(11)),
        "choice 26": bytes([4, 2]) + zlib.compress(bytes([26] * 12)),
        "zlib": bytes([4, 2]) + b"not zlib",
        "too long": bytes([4, 2]) + zlib.compress(bytes(12)) + bytes(400),
    }
    for what, payload in bad.items():
        with pytest.raises(BitstreamError):
            unpack_motion(payload, (12, 16))
    # a zlib bomb inflates no further than the grid
    with pytest.raises(BitstreamError, match="exactly"):
        unpack_motion(bytes([1, 0]) + zlib.compress(bytes(10**5)), (12, 16))


def _pan(n: int = 4, h: int = 64, w: int = 192) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    world = np.clip(rng.normal(128, 50, (h, w + 16 * n, 3)), 0, 255).astype(np.uint8)
    return [world[:, 16 * t : 16 * t + w].copy() for t in range(n)]


def test_p_frames_carry_motion_and_decode_to_the_intra_pictures(random_codec):
    frames = _pan()
    random_codec.p_frame_max_cost = 10.0  # P-frames whatever they cost: this test is about their form
    try:
        for with_motion in (True, False):
            random_codec.p_frame_motion = with_motion
            encoder, decoder = random_codec.stream_encoder(keyframe_interval=0), random_codec.stream_decoder()
            for t, image in enumerate(frames):
                frame = encoder.encode(image, rate=0.5)
                header = bs.unpack_frame(frame.data)[0]
                assert header.is_p_frame == (t > 0) and header.has_motion == (t > 0 and with_motion)
                assert np.array_equal(decoder.decode(frame.data), random_codec.decode(random_codec.encode(image, rate=0.5).data))
                if header.has_motion:
                    info = bs.header_info(frame.data)["motion"]
                    assert info["blocks"] == 1 * 3 and info["block"] == motion.DEFAULT_BLOCK
    finally:
        random_codec.p_frame_motion, random_codec.p_frame_max_cost = True, 0.6


def test_motion_flag_only_in_p_frames():
    header = bs.FrameHeader(model_hash=bytes(8), height=64, width=64, rate_code=0, z_shape=(1, 1), w_shape=(1, 1),
                            flags=bs.FLAG_MOTION, version=3, frame_type=bs.FRAME_I, stream_id=1)
    strings = {"y": b"", "z": b"", "w": b"", "m": pack_motion(MotionField(4, 2, bytes(1)))}
    with pytest.raises(BitstreamError, match="only a version-3 P-frame"):
        bs.pack_frame(header, strings)
    p = bs.FrameHeader(model_hash=bytes(8), height=64, width=64, rate_code=0, z_shape=(1, 1), w_shape=(1, 1),
                       flags=bs.FLAG_MOTION, version=3, frame_type=bs.FRAME_P, stream_id=1, seq=2, ref_seq=1)
    data = bs.pack_frame(p, strings)
    assert bs.header_bytes(3, bs.FLAG_MOTION) == 61
    back, parsed = bs.unpack_frame(data)
    assert back == p and parsed["m"] == strings["m"]
    for cut in (1, 5, 20, 40):
        with pytest.raises(BitstreamError):
            bs.unpack_frame(data[:-cut])
