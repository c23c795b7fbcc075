"""The P-frames' own entropy model (issue 11): ``RoiHyperprior.inter_codec``, trained on latent residuals by
``roi_codec_ros.training.inter`` / ``roi-codec train-inter``.  P-frames still decode to the intra pictures; only
their bits change, and a model with one is another model (its id) than the model without."""
from __future__ import annotations

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from roi_codec_ros.codec import RoiCodec  # noqa: E402
from roi_codec_ros.codec import bitstream as bs  # noqa: E402
from roi_codec_ros.codec.checkpoint import export_model, load_model_file  # noqa: E402
from roi_codec_ros.codec.model import ModelConfig  # noqa: E402
from roi_codec_ros.training.inter import (  # noqa: E402
    coded_bytes,
    collect_latents,
    residual_batch,
    split_clips,
    train_inter_codec,
    with_inter_codec,
)


def _clip(n: int = 7, h: int = 64, w: int = 128, seed: int = 3) -> list[np.ndarray]:
    """A textured background panning by 3 pixels per frame, with a block moving across it."""
    rng = np.random.default_rng(seed)
    world = rng.integers(0, 255, (h, w + 3 * n, 3), dtype=np.uint8)
    world = np.clip(np.cumsum(world.astype(np.int32) - 127, axis=1) // 8 + 128, 0, 255).astype(np.uint8)
    frames = []
    for t in range(n):
        image = world[:, 3 * t : 3 * t + w].copy()
        image[16:40, 8 + 6 * t : 32 + 6 * t] = (240, 40, 40)
        frames.append(image)
    return frames


@pytest.fixture(scope="module")
def trained(random_codec):
    clips = collect_latents(random_codec, [("pan", _clip()), ("pan2", _clip(seed=4))], rates=[0.3, 0.8], log=None)
    model = train_inter_codec(with_inter_codec(random_codec.model), clips, steps=60, batch=4, crop=8, lr=1e-3, log=None)
    return clips, RoiCodec(model)


def test_config_without_an_inter_prior_keeps_its_dict_and_id(random_codec):
    assert "inter_prior" not in ModelConfig().to_dict()
    assert ModelConfig(inter_prior=True).to_dict()["inter_prior"] is True
    assert ModelConfig.from_dict(ModelConfig().to_dict()).inter_prior is False
    copy = with_inter_codec(random_codec.model)
    assert copy.config.inter_prior and RoiCodec(copy).model_id != random_codec.model_id
    # it starts as the intra entropy model: same state under the other name, the context's combiner columns zero
    inter = copy.inter_codec.state_dict()
    for name, tensor in random_codec.model.latent_codec.state_dict().items():
        if name == "y.entropy_parameters.mix.weight":
            width = tensor.shape[1]
            assert torch.equal(inter[name][:, :width], tensor) and not inter[name][:, width:].any()
        else:
            assert torch.equal(inter[name], tensor)
    assert {n.split(".")[0] for n in inter} - {n.split(".")[0] for n in random_codec.model.latent_codec.state_dict()} == {"context"}


def test_frame_latents_are_what_an_intra_frame_codes(random_codec):
    image = _clip()[0]
    y, f = random_codec.frame_latents(image, rate=0.5)
    _, y_hat = random_codec._encode(image, None, None, 0.5, 1.0)
    assert torch.equal(y, y_hat) and y.shape[1] == random_codec.config.M and f.shape[-2:] == y.shape[-2:]
    continuous, _ = random_codec.frame_latents(image, rate=0.5, rounded=False)
    assert torch.equal(torch.round(continuous), y) and not torch.equal(continuous, y)  # y before quantisation


def test_residual_batches_are_aligned_crops_of_consecutive_latents(trained):
    clips, _ = trained
    r, f, reference = residual_batch(clips, batch=5, crop=4, rng=random.Random(1))
    assert r.shape[0] == f.shape[0] == reference.shape[0] == 5 and r.shape[-2:] == (4, 4) == f.shape[-2:]
    assert torch.equal(r, r.round()) and torch.equal(reference, reference.round())  # integer latents
    train, val = split_clips(clips)
    assert all(c.latents.shape[0] == 5 for c in train) and all(c.latents.shape[0] == 2 for c in val)


def test_training_lowers_the_bytes_of_held_out_residuals(random_codec):
    clips = collect_latents(random_codec, [("pan", _clip(n=9)), ("pan2", _clip(n=9, seed=5))], rates=[0.5], log=None)
    train, val = split_clips(clips)
    model = train_inter_codec(with_inter_codec(random_codec.model), train, steps=80, batch=4, crop=8, lr=2e-3, log=None)
    before, after = coded_bytes(random_codec, val), coded_bytes(RoiCodec(model), val)
    assert after < before, (before, after)


def test_p_frames_use_it_and_still_decode_to_the_intra_pictures(random_codec, trained):
    _, codec = trained
    frames = _clip()
    for c, other in ((codec, random_codec), (random_codec, codec)):
        encoder, decoder = c.stream_encoder(keyframe_interval=0), c.stream_decoder()
        coded = [encoder.encode(image, rate=0.6) for image in frames]
        assert [f.keyframe for f in coded] == [True] + [False] * (len(frames) - 1)
        for image, frame in zip(frames, coded):
            assert np.array_equal(decoder.decode(frame.data), c.decode(c.encode(image, rate=0.6).data))
            with pytest.raises(bs.BitstreamError, match="made by model"):  # the other model's frames are refused
                other.stream_decoder().decode(frame.data)
    # the intra frames of both are the same bytes but for the model hash; the P-frames differ
    a, b = codec.stream_encoder(stream_id=7), random_codec.stream_encoder(stream_id=7)
    fa, fb = [a.encode(i, rate=0.6) for i in frames[:2]], [b.encode(i, rate=0.6) for i in frames[:2]]
    assert fa[0].data[12:-4] == fb[0].data[12:-4] and fa[1].data[12:-4] != fb[1].data[12:-4]


def test_a_model_file_with_an_inter_prior_round_trips(tmp_path, trained):
    _, codec = trained
    path = export_model(codec.model, tmp_path / "inter.pt", fp16=False)
    model, _ = load_model_file(path)
    assert model.config.inter_prior
    assert RoiCodec(model).model_id == codec.model_id
    image = _clip()[1]
    assert RoiCodec(model).encode(image, rate=0.4).data == codec.encode(image, rate=0.4).data


def test_the_cli_trains_and_writes_a_model_file(tmp_path, capsys):
    from PIL import Image

    from roi_codec_ros.cli.train_inter import main

    for s, name in enumerate(("a", "b")):
        folder = tmp_path / "seq" / name
        folder.mkdir(parents=True)
        for t, image in enumerate(_clip(n=6, seed=s)):
            Image.fromarray(image).save(folder / f"im{t}.png")
    out = tmp_path / "inter.pt"
    assert main(["train-inter", "--model", "random", "--sequences", str(tmp_path / "seq"), "--rates", "0.5",
                 "--steps", "3", "--batch", "2", "--crop", "4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "validation: 2 residuals" in text and "wrote" in text
    model, info = load_model_file(out)
    assert model.config.inter_prior and info["metadata"]["inter_prior"]["steps"] == 3
    assert main(["train-inter", "--model", "random", "--sequences", str(tmp_path / "nothing"), "--out", str(out)]) == 1
    assert "not found" in capsys.readouterr().err


def test_the_p_frame_threshold_is_where_p_frames_stop_saving_bytes():
    from roi_codec_ros.training.inter import calibrate_max_cost

    rows = [{"proxy": 0.2, "p_bytes": 50, "i_bytes": 100}, {"proxy": 0.5, "p_bytes": 90, "i_bytes": 100},
            {"proxy": 0.7, "p_bytes": 120, "i_bytes": 100}, {"proxy": 0.9, "p_bytes": 150, "i_bytes": 100}]
    assert calibrate_max_cost(rows) == 0.6
    assert calibrate_max_cost(rows[2:]) == 0.0  # P-frames never paid: all I-frames
    assert calibrate_max_cost(rows[:1]) == pytest.approx(0.205)
    # P-frames that still save bytes where they predict nothing (proxy >= 1): capped, those are I-frames
    assert calibrate_max_cost([{"proxy": 0.98, "p_bytes": 90, "i_bytes": 100},
                               {"proxy": 1.05, "p_bytes": 95, "i_bytes": 100}]) == 1.0


def test_a_calibrated_threshold_above_one_is_capped_at_load(random_codec):
    from roi_codec_ros.codec.api import MAX_P_FRAME_COST, RoiCodec

    info = {**random_codec.info, "metadata": {"inter_prior": {"p_frame_max_cost": 1.0232}}}
    assert RoiCodec(random_codec.model, info=info).p_frame_max_cost == MAX_P_FRAME_COST == 1.0


def test_a_model_files_calibrated_threshold_reaches_the_encoder(tmp_path, trained):
    _, codec = trained
    path = export_model(codec.model, tmp_path / "inter.pt", fp16=False,
                        metadata={"inter_prior": {"p_frame_max_cost": 0.83}})
    assert RoiCodec.load(path).p_frame_max_cost == 0.83
    assert RoiCodec.random().p_frame_max_cost == 0.6
