"""Streams (issue 11): I- and P-frames of ``RoiCodec.stream_encoder`` / ``stream_decoder``.  A P-frame codes the latent
residual to its reference and decodes to the very picture of the intra frame; a decoder never outputs a frame
decoded against another reference than the one it names."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from codec_helpers import check_stream_decodes_alike, decode_with_threads  # noqa: E402

from roi_codec_ros.codec import DEFAULT_MODEL_PATH, RoiCodec  # noqa: E402
from roi_codec_ros.codec import bitstream as bs  # noqa: E402
from roi_codec_ros.codec.bitstream import BitstreamError, MissingReferenceError  # noqa: E402


def _clip(n: int = 8, h: int = 64, w: int = 96) -> list[np.ndarray]:
    """A still, textured background with a small object moving over it."""
    rng = np.random.default_rng(2)
    base = (np.linspace(0, 200, w)[None, :, None] * np.array([1.0, 0.7, 0.4]) * np.ones((h, 1, 1))).astype(np.uint8)
    base[8:56, 8:88] += rng.integers(0, 40, (48, 80, 3), dtype=np.uint8)
    frames = []
    for t in range(n):
        image = base.copy()
        image[20:36, 10 + 4 * t : 26 + 4 * t] = (250, 30, 30)
        frames.append(image)
    return frames


@pytest.fixture(scope="module")
def stream(random_codec):
    encoder = random_codec.stream_encoder(keyframe_interval=4, stream_id=0x0BADF00D)
    return [encoder.encode(image, rate=0.6) for image in _clip()]


def test_p_frames_decode_to_the_intra_pictures_at_fewer_bits(random_codec, stream):
    assert [f.keyframe for f in stream] == [True, False, False, False, True, False, False, False]
    decoder = random_codec.stream_decoder()
    for image, frame in zip(_clip(), stream):
        header = bs.unpack_frame(frame.data)[0]
        assert header.is_stream_frame and header.stream_id == 0x0BADF00D and header.is_p_frame != frame.keyframe
        intra = random_codec.encode(image, rate=0.6)
        assert np.array_equal(decoder.decode(frame.data), random_codec.decode(intra.data))
        if not frame.keyframe:
            assert frame.num_bytes < 0.8 * intra.num_bytes, (frame.num_bytes, intra.num_bytes)
    assert [bs.unpack_frame(f.data)[0].seq for f in stream] == list(range(8))
    assert bs.unpack_frame(stream[2].data)[0].ref_seq == 1


def test_a_p_frame_decodes_only_against_its_reference(random_codec, stream):
    with pytest.raises(MissingReferenceError, match="stream decoder"):
        random_codec.decode(stream[1].data)  # the intra decoder holds no reference
    decoder = random_codec.stream_decoder()
    with pytest.raises(MissingReferenceError, match="no reference is held"):
        decoder.decode(stream[1].data)  # a decoder that joined late
    decoder.decode(stream[0].data)
    with pytest.raises(MissingReferenceError, match="the reference held is frame 0"):
        decoder.decode(stream[2].data)  # frame 1 was lost
    assert isinstance(MissingReferenceError("x"), BitstreamError)
    # another stream with the same id: its frame 0 has other latents, and the CRC refuses it as frame 1's reference
    impostor = random_codec.stream_encoder(stream_id=0x0BADF00D).encode(_clip()[5], rate=0.6)
    decoder = random_codec.stream_decoder()
    decoder.decode(impostor.data)
    with pytest.raises(MissingReferenceError, match="CRC mismatch"):
        decoder.decode(stream[1].data)
    foreign = random_codec.stream_decoder()
    foreign.decode(random_codec.stream_encoder(stream_id=7).encode(_clip()[0], rate=0.6).data)
    with pytest.raises(MissingReferenceError, match="of stream 00000007"):
        foreign.decode(stream[1].data)


def test_lost_frames_cost_only_the_frames_until_the_next_keyframe(random_codec, stream):
    clean = random_codec.stream_decoder()
    reference = [clean.decode(f.data) for f in stream]
    lossy, outputs = random_codec.stream_decoder(), {}
    for i, frame in enumerate(stream):
        if i == 2:
            continue  # dropped message
        try:
            outputs[i] = lossy.decode(frame.data)
        except MissingReferenceError:
            pass
    assert sorted(outputs) == [0, 1, 4, 5, 6, 7]  # 3 needs 2; 4 is the next keyframe
    assert all(np.array_equal(outputs[i], reference[i]) for i in outputs)  # never a wrong picture


def test_keyframes_on_request_at_size_changes_and_latent_gains(random_codec):
    clip = _clip()
    encoder = random_codec.stream_encoder(keyframe_interval=0)  # only the first and requested ones
    assert encoder.encode(clip[0], rate=0.5).keyframe and not encoder.encode(clip[1], rate=0.5).keyframe
    encoder.request_keyframe()
    assert encoder.next_is_keyframe and encoder.encode(clip[2], rate=0.5).keyframe
    assert encoder.encode(np.ascontiguousarray(clip[3][:, :64]), rate=0.5).keyframe  # another frame size
    mask = np.zeros(clip[0].shape[:2], np.float32)
    mask[16:48, 16:64] = 1.0
    gained = encoder.encode(clip[4], roi_mask=mask, rate=0.5, roi_gain=4.0)
    assert gained.keyframe and gained.data[3] == 2  # a version-2 intra frame of its own
    after = encoder.encode(clip[5], rate=0.5)
    assert after.keyframe  # the stream goes on with an I-frame
    decoder = random_codec.stream_decoder()
    assert decoder.decode(gained.data).shape == clip[4].shape and not decoder.has_reference
    assert decoder.decode(after.data).shape == clip[5].shape and decoder.has_reference


def test_hq_keyframes_are_coded_uniformly_and_p_frames_at_the_roi_weight(random_codec):
    clip = _clip(6)
    mask = np.zeros(clip[0].shape[:2], np.float32)
    mask[16:40, 8:60] = 1.0
    encoder = random_codec.stream_encoder(keyframe_interval=3, keyframe_roi_weight=1.0)
    frames = [encoder.encode(image, roi_mask=mask, rate=0.5, roi_weight=8.0) for image in clip[:5]]
    encoder.request_keyframe()
    frames.append(encoder.encode(clip[5], roi_mask=mask, rate=0.5, roi_weight=8.0))
    assert [f.keyframe for f in frames] == [True, False, False, True, False, True]
    weights = [f.roi_weight for f in frames]
    assert weights[0] == weights[3] == weights[5] == pytest.approx(1.0, abs=0.01)
    assert weights[1] == weights[2] == weights[4] == pytest.approx(8.0, rel=0.01)
    decoder = random_codec.stream_decoder()
    pictures = [decoder.decode(f.data) for f in frames]
    uniform = random_codec.encode(clip[0], roi_mask=mask, rate=0.5, roi_weight=1.0)
    assert np.array_equal(pictures[0], random_codec.decode(uniform.data))  # the I-frame is the alpha=1 picture
    weighted = random_codec.encode(clip[0], roi_mask=mask, rate=0.5, roi_weight=8.0)
    assert not np.array_equal(pictures[0], random_codec.decode(weighted.data))
    encoder.keyframe_roi_weight = None  # off again: the next keyframe takes the frame's weight
    encoder.request_keyframe()
    off = encoder.encode(clip[0], roi_mask=mask, rate=0.5, roi_weight=8.0)
    assert off.keyframe and off.roi_weight == pytest.approx(8.0, rel=0.01)
    with pytest.raises(ValueError, match="keyframe_roi_weight"):
        encoder.keyframe_roi_weight = 1000.0
    assert encoder.keyframe_roi_weight is None  # a refused value changes nothing


@pytest.mark.skipif(not DEFAULT_MODEL_PATH.is_file(), reason="the shipped model is not present")
def test_a_scene_cut_is_coded_as_an_i_frame():
    from PIL import Image
    from ultralytics.utils import ASSETS

    codec = RoiCodec.load("default")
    bus, zidane = (np.asarray(Image.open(Path(ASSETS) / name).convert("RGB").resize((256, 192))) for name in ("bus.jpg", "zidane.jpg"))
    encoder = codec.stream_encoder(keyframe_interval=0)
    assert encoder.encode(bus, rate=0.5).keyframe
    moved = bus.copy()
    moved[40:70, 40:90] = (250, 20, 20)  # the same scene with an object moved into it: a P-frame
    assert not encoder.encode(moved, rate=0.5).keyframe
    assert not encoder.next_is_keyframe and encoder.encode(zidane, rate=0.5).keyframe  # another scene: an I-frame


def test_stream_decoding_is_bit_exact_across_processes_and_threads(tmp_path, random_codec, stream):
    check_stream_decodes_alike(tmp_path, random_codec, [frame.data for frame in stream[:4]])


def test_intra_decoders_of_earlier_releases_keep_their_frames(random_codec):
    image = _clip()[0]
    assert random_codec.encode(image, rate=0.5).data[3] == 1  # encode() stays intra, version 1
    assert decode_with_threads(random_codec, random_codec.encode(image, rate=0.5).data, 1).shape == image.shape
