"""The entropy side on integers (codec/integer_side.py): exact in float32, close to the float64 scales in bytes,
calibrated by ``roi-codec quantize-side``, refused when its sums could leave float32's exact range."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from roi_codec_ros.cli import main as cli_main
from roi_codec_ros.codec import RoiCodec
from roi_codec_ros.codec.checkpoint import ModelFileError, export_model, load_model_file
from roi_codec_ros.codec.integer_side import ACC_LIMIT, ACT_MAX
from roi_codec_ros.codec.latent_codec import _quantize_side
from roi_codec_ros.training.integer import intra_samples, with_integer_side
from roi_codec_ros.training.inter import with_inter_codec

from codec_helpers import decode_with_threads


def _bus() -> np.ndarray:
    from ultralytics.utils import ASSETS

    with Image.open(Path(ASSETS) / "bus.jpg") as im:
        return np.asarray(im.convert("RGB").resize((540, 405)))


@pytest.fixture(scope="module")
def shipped() -> RoiCodec:
    return RoiCodec.load("default")


@torch.no_grad()
def _side_hats(codec: RoiCodec, rgb: np.ndarray, rate: float):
    y, f = codec.frame_latents(rgb, rate=rate, rounded=False)
    side = codec.model.latent_codec.analyse_side(y, f)
    return _quantize_side(codec._coder.hyper, side["z"])[0], _quantize_side(codec._coder.object, side["w"])[0]


def test_shipped_model_has_integer_sides_within_the_exact_bound(shipped):
    assert shipped.config.integer_side
    for part in shipped.model.entropy_models():
        part.integer.check()
        for synthesis in (part.integer.hyper, part.integer.object):
            in_max = float(synthesis.input_max)
            for layer in synthesis.layers:
                assert float(layer.bound(in_max).max()) < ACC_LIMIT
                in_max = ACT_MAX


@pytest.mark.parametrize("threads", [1, 2])
@torch.no_grad()
def test_float32_sums_equal_float64_sums(shipped, threads):
    """The integer network's float32 result equals its float64 one exactly (any summation order is exact below
    2**24), at 1 and 2 threads and on channels-last input; so does a P-frame model's with its context."""
    z_hat, w_hat = _side_hats(shipped, _bus(), 0.7)
    integer = shipped._coder.integer
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        exact = integer(z_hat, w_hat, dtype=torch.float64)
        assert torch.equal(integer(z_hat, w_hat), exact)
        assert torch.equal(integer(z_hat.to(memory_format=torch.channels_last), w_hat.to(memory_format=torch.channels_last)), exact)
        inter = shipped._inter_coder.integer
        context = torch.round(torch.randn(1, shipped.config.M, *exact.shape[-2:], dtype=torch.float64) * 160) / 16
        assert torch.equal(inter(z_hat, w_hat, context), inter(z_hat, w_hat, context, dtype=torch.float64))
    finally:
        torch.set_num_threads(previous)
    assert bool(torch.isfinite(exact).all()) and float(exact.min()) > -1e6


@torch.no_grad()
def test_garbage_side_latents_stay_exact_and_finite(shipped):
    """Decoded garbage (huge symbols) is clamped at the input: the sums stay exact, the scales finite."""
    z_hat, w_hat = _side_hats(shipped, _bus(), 0.3)
    z_hat[..., 0, 0] = 1e12
    w_hat[..., -1, -1] = -1e9
    integer = shipped._coder.integer
    scales = integer(z_hat, w_hat)
    assert torch.equal(scales, integer(z_hat, w_hat, dtype=torch.float64)) and bool(torch.isfinite(scales).all())


def test_integer_side_costs_almost_no_bytes_and_changes_no_picture(shipped):
    rgb = _bus()
    float_side = RoiCodec.load("default")
    float_side._coder.integer = None  # the same model's float networks, in float64
    for rate in (0.0, 1.0):
        frame, reference = shipped.encode(rgb, rate=rate), float_side.encode(rgb, rate=rate)
        assert frame.data != reference.data  # other scales, other bytes
        assert abs(len(frame.data) / len(reference.data) - 1) < 0.005
        picture = shipped.decode(frame.data)
        assert np.array_equal(picture, float_side.decode(reference.data))


def test_quantize_side_cli_writes_a_model_that_codes(tmp_path, capsys):
    rng = np.random.default_rng(3)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(6):
        gradient = np.linspace(0, 255, 96)[None, :, None] * rng.uniform(0.2, 1.0, 3)
        image = np.clip(gradient + rng.normal(0, 20, (80, 96, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{i}.png")
    out = tmp_path / "integer.pt"
    assert cli_main(["quantize-side", "--model", "random", "--images", str(folder), "--rates", "0,1",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "held-out images: 1 x 2 rates" in printed and "wrote" in printed
    model, info = load_model_file(out)
    assert model.config.integer_side and info["metadata"]["integer_side"]["held_out_images"] == 1
    codec = RoiCodec(model, info=info)
    image = np.asarray(Image.open(folder / "0.png"))
    frame = codec.encode(image, rate=0.5)
    assert np.array_equal(decode_with_threads(codec, frame.data, 2), codec.decode(frame.data))
    assert codec.decode(frame.data).shape == image.shape
    # a model without a P-frame entropy model needs no clips; the usage error without images
    with pytest.raises(SystemExit) as usage:
        cli_main(["quantize-side", "--model", "random", "--out", str(out)])
    assert usage.value.code == 2


def test_sums_beyond_float32s_exact_range_are_refused(tmp_path):
    codec = RoiCodec.random(seed=1)
    image = np.asarray(_bus()[:128, :192])
    model = with_integer_side(codec.model, intra_samples(codec, [image], [0.0, 1.0]))
    good = tmp_path / "good.pt"
    export_model(model, good, update_tables=False)
    assert load_model_file(good)[0].config.integer_side
    with torch.no_grad():
        model.latent_codec.integer.hyper.layers[1].weight.fill_(30000)  # |sums| up to ~2**35
    bad = tmp_path / "bad.pt"
    export_model(model, bad, update_tables=False)  # a valid hash: the bound is what refuses it
    with pytest.raises(ModelFileError, match="2\\*\\*24"):
        load_model_file(bad)


def test_retraining_the_p_frame_model_drops_the_integer_side():
    codec = RoiCodec.random(seed=2)
    image = np.asarray(_bus()[:128, :192])
    model = with_integer_side(codec.model, intra_samples(codec, [image], [0.5]))
    assert model.latent_codec.integer is not None and not codec.config.integer_side
    retrained = with_inter_codec(model)
    assert not retrained.config.integer_side and retrained.latent_codec.integer is None
    assert not [name for name in retrained.state_dict() if ".integer." in name]
    with pytest.raises(ValueError, match="P-frame entropy model"):
        with_integer_side(retrained, intra_samples(codec, [image], [0.5]))
