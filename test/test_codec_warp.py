"""P-frame predictions from the warped reference picture (``codec/warp.py``) and their ``f`` payload."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from roi_codec_ros.codec import bitstream as bs  # noqa: E402
from roi_codec_ros.codec import motion, warp  # noqa: E402
from roi_codec_ros.codec.bitstream import (  # noqa: E402
    BitstreamError,
    FlowField,
    MissingReferenceError,
    MotionField,
    PredictionMismatchError,
    pack_flow,
    unpack_flow,
)


def _texture(h: int = 64, w: int = 320, seed: int = 7) -> np.ndarray:
    """Smooth texture (blurred noise): optical flow can follow it."""
    noise = np.random.default_rng(seed).normal(128, 60, (h, w, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 2.5) * 3 - 256, 0, 255).astype(np.uint8)


def test_flow_payload_round_trips_and_garbage_is_refused():
    cells = np.array([[[1.25, -2.0], [0.0, 3.5]], [[-0.75, 0.25], [511.0, -512.0]]], np.float32)  # 2 x 2 nodes
    field = warp.to_field(cells, 32, 0xDEADBEEF)
    assert field.nodes_shape(40, 64) == (2, 2)
    back = unpack_flow(pack_flow(field), 40, 64)
    assert back == field and np.array_equal(warp.from_field(back, 40, 64), cells)
    good = pack_flow(field)
    planes = lambda values: bytes(v & 0xFF for v in values) + bytes((v & 0xFFFF) >> 8 for v in values)  # noqa: E731
    bad = {
        "truncated": good[:5],
        "grid below 8": bytes([7]) + good[1:],
        "nodes of another grid": bytes([16]) + good[1:],
        "zlib": good[:5] + b"not zlib",
        "one byte short": good[:5] + zlib.compress(planes([0] * 8)[:-1]),
        "vector beyond 512 px": good[:5] + zlib.compress(planes([2049, 0, 0, 0, 0, 0, 0, 0])),
        "too long": good + bytes(300),
    }
    for what, payload in bad.items():
        with pytest.raises(BitstreamError):
            unpack_flow(payload, 40, 64)
    with pytest.raises(BitstreamError, match="exactly"):  # a zlib bomb inflates no further than the grid
        unpack_flow(good[:5] + zlib.compress(bytes(10**4)), 40, 64)


def test_warp_samples_where_the_flow_points():
    picture = _texture(64, 128)
    still = warp.warp(picture, np.zeros((2, 4, 2), np.float32), 32)
    assert np.array_equal(still, picture)
    moved = warp.warp(picture, np.full((2, 4, 2), [3.0, -2.0], np.float32), 32)  # content 3 px right, 2 px up
    assert np.array_equal(moved[4:-4, 4:-4], picture[2:-6, 7:-1])


def test_estimate_follows_a_pan_to_a_quarter_pixel():
    world = _texture(96, 400)
    frame, reference = world[:, 6:262].copy(), world[:, :256].copy()  # the camera moved 6 px right
    cells = warp.estimate(frame, reference, 64)
    assert cells.shape == (2, 4, 2)
    assert np.allclose(cells[..., 0], 6.0, atol=0.5) and np.allclose(cells[..., 1], 0.0, atol=0.5)
    assert np.array_equal(cells * bs.WARP_UNITS_PER_PIXEL, np.round(cells * bs.WARP_UNITS_PER_PIXEL))


def test_search_takes_the_warped_candidate_last_and_only_says_so_when_used():
    latents = torch.randint(-5, 6, (1, 4, 8, 8), generator=torch.Generator().manual_seed(3)).float()
    reference = torch.zeros_like(latents)
    field = motion.search(latents, reference, warped=latents.clone())
    assert field.warped and set(field.choices) == {field.candidates - 1}
    assert torch.equal(motion.predict(reference, field, latents), latents)
    with pytest.raises(ValueError, match="warped"):
        motion.predict(reference, field)
    assert not motion.search(latents, latents, warped=torch.zeros_like(latents)).warped  # still wins: no flow sent


def test_warp_flag_needs_a_motion_field_and_adds_a_length():
    common = dict(model_hash=bytes(8), height=64, width=64, rate_code=0, z_shape=(1, 1), w_shape=(1, 1), version=3,
                  frame_type=bs.FRAME_P, stream_id=1, seq=2, ref_seq=1)
    flow = pack_flow(warp.to_field(np.zeros((1, 1, 2), np.float32), 64, 0))
    with pytest.raises(BitstreamError, match="FLAG_WARP needs FLAG_MOTION"):
        bs.pack_frame(bs.FrameHeader(flags=bs.FLAG_WARP, **common), {"y": b"", "z": b"", "w": b""})
    header = bs.FrameHeader(flags=bs.FLAG_MOTION | bs.FLAG_WARP, **common)
    motion_field = bs.pack_motion(MotionField(4, 2, bytes([26]), warped=True))  # 26: the warped picture
    strings = {"y": b"", "z": b"", "w": b"", "m": motion_field, "f": flow}
    data = bs.pack_frame(header, strings)
    assert bs.header_bytes(3, bs.FLAG_MOTION | bs.FLAG_WARP) == 65
    back, parsed = bs.unpack_frame(data)
    assert back == header and parsed == strings
    assert bs.header_info(data)["motion"]["blocks_warped"] == 1
    with pytest.raises(BitstreamError, match="choice 26"):  # without the flag, choice 26 does not exist
        bs.unpack_motion(motion_field, (4, 4))
    for cut in (1, 5, 30):
        with pytest.raises(BitstreamError):
            bs.unpack_frame(data[:-cut])


def test_a_flow_field_is_sent_only_where_its_bytes_pay():
    from roi_codec_ros.codec.api import RoiCodec

    latents = torch.randint(-5, 6, (1, 4, 8, 8), generator=torch.Generator().manual_seed(3)).float()
    reference = torch.zeros_like(latents)
    flow = warp.to_field(np.zeros((1, 1, 2), np.float32), 64, 0)
    with_warp, plain, saved = motion.search_with_warp(latents, reference, latents.clone())
    assert with_warp.warped and not plain.warped and plain == motion.search(latents, reference)
    assert saved == pytest.approx(float(torch.log2(1 + latents.abs()).sum()))  # plain codes the latents as they are
    assert RoiCodec._flow_pays(saved, flow)  # a perfect prediction of 256 latents for a few bytes
    nearly = latents.clone()
    nearly[..., 0, 0] += 1  # no better than block motion from this reference: the flow would be wasted bytes
    with_warp, plain, saved = motion.search_with_warp(latents, latents - nearly + latents, nearly)
    assert not with_warp.warped and saved == 0.0 and not RoiCodec._flow_pays(saved, flow)


@pytest.fixture(params=["fp32", "bf16"])
def warping_codec(random_codec, monkeypatch, request):
    """The random test model with flow predictions, every block taking the warped picture whenever it is offered
    (an untrained model's latents rarely prefer it, and these tests are about the frames' form).  With the encoder's
    analysis in fp32 and in bf16 (the default on CPUs with native bf16; emulated elsewhere): the warped picture's
    latents must be the decoder's float32 ones either way (a bf16 encoder once computed them in bf16)."""
    monkeypatch.setattr(random_codec, "analysis_precision", request.param)
    monkeypatch.setattr(random_codec, "analysis_dtype", {"fp32": None, "bf16": torch.bfloat16}[request.param])
    search_with_warp = motion.search_with_warp

    def always_warp(latents, reference, warped, *args, **kwargs):  # ... and the flow pays whatever it saves
        _, plain, _ = search_with_warp(latents, reference, warped, *args, **kwargs)
        index = (2 * plain.max_shift + 1) ** 2 + 1  # the warped picture
        return MotionField(plain.block, plain.max_shift, bytes([index] * len(plain.choices)), warped=True), plain, float("inf")

    monkeypatch.setattr(motion, "search_with_warp", always_warp)
    monkeypatch.setattr(random_codec, "p_frame_warp", True)
    monkeypatch.setattr(random_codec, "p_frame_max_cost", 10.0)
    return random_codec


def _pan(n: int = 3) -> list[np.ndarray]:
    world = _texture(64, 320)
    return [world[:, 5 * t : 5 * t + 192].copy() for t in range(n)]


def _unrounded_latents(codec, image: np.ndarray, rate: float = 0.5):
    from roi_codec_ros.codec.api import RoiHyperprior, padded_size

    image, _, _, (x, mask_alpha, feats, embedding) = codec._inputs(image, None, None, rate, 1.0)
    h, w = image.shape[:2]
    padded = padded_size(h, w, RoiHyperprior.PAD_MULTIPLE)
    return codec._torch_analysis(x, mask_alpha, feats, embedding, None, h, w, padded)[0].float().cpu()


def test_warped_p_frames_quantise_y_around_the_fractional_prediction(warping_codec):
    """A warped block codes round(y - prediction) against a prediction kept to 1/16: its latents are within half a
    step of y, like round(y), but on the prediction's grid, and the decoder gets exactly the encoder's picture."""
    from roi_codec_ros.codec.stream import LATENT_STEPS

    codec = warping_codec
    encoder, decoder = codec.stream_encoder(keyframe_interval=0), codec.stream_decoder()
    for t, image in enumerate(_pan()):
        frame = encoder.encode(image, rate=0.5)
        header = bs.unpack_frame(frame.data)[0]
        assert header.has_flow == (t > 0)
        y_hat, y = encoder._reference.y_hat, _unrounded_latents(codec, image)
        assert float((y_hat - y).abs().max()) <= 0.5 + 1e-4
        assert torch.equal(y_hat * LATENT_STEPS, torch.round(y_hat * LATENT_STEPS))
        assert bool((y_hat != torch.round(y_hat)).any()) == (t > 0)  # an I-frame is round(y)
        picture = codec._synthesize(y_hat, frame.rate, *image.shape[:2])[0]
        assert np.array_equal(decoder.decode(frame.data), picture)


def _frames_and_reference(codec):
    encoder = codec.stream_encoder(keyframe_interval=0)
    first, second = (encoder.encode(image, rate=0.5) for image in _pan(2))
    decoder = codec.stream_decoder()
    decoder.decode(first.data)
    return second.data, decoder


def test_a_decoder_without_the_reference_picture_refuses(warping_codec):
    data, decoder = _frames_and_reference(warping_codec)
    with pytest.raises(MissingReferenceError, match="picture"):
        warping_codec._decode(data, decoder._reference.y_hat)


def test_another_prediction_than_the_encoders_is_refused_not_shown(warping_codec):
    """Flow vectors that are valid but not the encoder's give other latents: the CRC in the flow payload catches it."""
    data, decoder = _frames_and_reference(warping_codec)
    header, strings = bs.unpack_frame(data)
    flow = unpack_flow(strings["f"], header.height, header.width)
    vectors = struct.unpack(f"<{len(flow.vectors) // 2}h", flow.vectors)
    other = FlowField(flow.grid, flow.latents_crc, struct.pack(f"<{len(vectors)}h", *(v + 40 for v in vectors)))
    tampered = bs.pack_frame(header, {**strings, "f": pack_flow(other)})
    with pytest.raises(PredictionMismatchError, match="CRC mismatch"):
        decoder.decode(tampered)
    assert isinstance(PredictionMismatchError("x"), MissingReferenceError)  # decoders ask for a keyframe
    decoder.decode(data)  # the reference is still held: the real frame decodes


def test_warped_stream_decoding_is_bit_exact_across_processes_and_threads(tmp_path, warping_codec):
    from codec_helpers import check_stream_decodes_alike

    encoder = warping_codec.stream_encoder(keyframe_interval=0)
    frames = [encoder.encode(image, rate=0.5).data for image in _pan()]
    assert bs.unpack_frame(frames[-1])[0].has_flow
    check_stream_decodes_alike(tmp_path, warping_codec, frames)


def test_flow_predictions_are_the_same_at_one_and_two_threads(warping_codec):
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            cv2.setNumThreads(threads)
            encoder = warping_codec.stream_encoder(keyframe_interval=0, stream_id=9)
            outs.append([encoder.encode(image, rate=0.5).data for image in _pan()])
        assert outs[0] == outs[1]
    finally:
        torch.set_num_threads(before)
        cv2.setNumThreads(-1)


def test_flow_prediction_is_a_per_stream_setting_of_the_neural_engine(random_codec):
    from roi_codec_ros.engine import create_engine
    from roi_codec_ros.engine.neural import NeuralEngine
    from roi_codec_ros.nodes.encoder_core import EncoderSettings

    engine = NeuralEngine(random_codec, flow_prediction=True)
    stream = engine.stream_encoder(keyframe_interval=10)
    assert stream.flow_prediction and stream.stream.flow_prediction
    stream.flow_prediction = False
    assert not stream.stream.flow_prediction and engine.describe()["flow_prediction"]
    assert not NeuralEngine(random_codec).flow_prediction  # the model file's default: off
    EncoderSettings(flow_prediction=True).check(engine, None)
    with pytest.raises(ValueError, match="flow_prediction needs the neural engine"):
        EncoderSettings(flow_prediction=True).check(create_engine("x264"), None)


def test_eval_engine_spec_takes_flow():
    from roi_codec_ros.cli.evaluate import _engine_codecs

    (codec,) = _engine_codecs("engine:neural:flow=1:model=random", "neural:flow=1:model=random", [0.5], [1.0], "cpu")
    assert codec.engine.flow_prediction and "flow=1" in codec.name
    for bad, message in (("x264:flow=1", "option of the neural engine"), ("neural:flow=yes", "0 or 1")):
        with pytest.raises(ValueError, match=message):
            _engine_codecs(f"engine:{bad}", bad, [0.5], [1.0], "cpu")


def test_a_stream_whose_flow_does_not_pay_tries_it_only_every_few_frames(random_codec, monkeypatch):
    from roi_codec_ros.codec import stream as stream_module

    tries = []
    picture_latents = type(random_codec)._picture_latents

    def counted(self, picture, rate_code):
        tries.append(len(frames))
        return picture_latents(self, picture, rate_code)

    monkeypatch.setattr(type(random_codec), "_picture_latents", counted)
    monkeypatch.setattr(random_codec, "p_frame_max_cost", 10.0)
    encoder = random_codec.stream_encoder(keyframe_interval=0)
    encoder.flow_prediction = True
    frames = []
    for image in [_texture(64, 192)] * 12:  # a still camera: the flow never pays
        frames.append(encoder.encode(image, rate=0.5))
    assert not any(bs.unpack_frame(f.data)[0].has_flow for f in frames)
    retry = stream_module.FLOW_RETRY_FRAMES
    assert tries == [1, 2 + retry, 3 + 2 * retry]  # P-frames 1, 6, 11 (frame 0 is the I-frame)
