"""The speed paths of the codec change no bits where they promise not to (issue 13):

- the cached rANS tables code exactly what CompressAI's own compress/decompress code (same bytes, same symbols);
- channels-last synthesis gives the same pixels as the contiguous layout (untrained and shipped model);
- bf16 analysis gives a valid stream that every decoder decodes, close to the fp32 one;
- the fast decoder is close to the exact one and deterministic; precision options are checked.

Timing targets are not tested here (benchmarks/codec_latency.py measures them against a baseline in the same run).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from roi_codec_ros.codec import DEFAULT_MODEL_PATH, RoiCodec
from roi_codec_ros.codec.api import cpu_supports_bf16, padded_size
from roi_codec_ros.codec.bitstream import unpack_frame
from roi_codec_ros.codec.latent_codec import RansTables

MODELS = ["random"] + (["default"] if DEFAULT_MODEL_PATH.is_file() else [])
needs_bf16 = pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bf16")


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    base = np.stack([(xx * 3 + yy) % 256, (yy * 2) % 256, (xx + yy * 5) % 256], axis=-1).astype(np.float32)
    base[h // 4 : h // 2, w // 4 : w // 2] = rng.integers(0, 256, (h // 2 - h // 4, w // 2 - w // 4, 3))
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def _load(model: str, **options) -> RoiCodec:
    return RoiCodec.random(seed=0, **options) if model == "random" else RoiCodec.load(model, **options)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module", params=MODELS)
def model(request) -> str:
    return request.param


# -- entropy coding ------------------------------------------------------------------------------------
def test_rans_tables_code_what_compressai_codes(random_codec):
    coder = copy.deepcopy(random_codec._coder)  # the tables are changed below
    conditional = coder.y.gaussian_conditional
    generator = torch.Generator().manual_seed(3)
    # symbols far outside the tables too (rANS bypass), all scale indexes
    y = torch.randn(1, 48, 8, 12, generator=generator, dtype=torch.float64) * torch.tensor([0.3, 4.0, 300.0]).repeat(16).view(1, 48, 1, 1).double()
    indexes = torch.randint(0, conditional._quantized_cdf.shape[0], y.shape, generator=generator).int()
    tables = RansTables(conditional)
    string = tables.encode(conditional.quantize(y, "symbols"), indexes)
    assert [string] == conditional.compress(y, indexes)
    decoded = tables.decode(string, indexes)
    assert torch.equal(decoded, conditional.decompress([string], indexes).int())
    assert torch.equal(decoded.double(), torch.round(y))
    # the cache follows the model's tables: new CDFs give new lists
    before = tables.lists()[0]
    conditional.update_scale_table(conditional.scale_table[::2].clone(), force=True)
    assert tables.lists()[0] != before
    assert [tables.encode(conditional.quantize(y, "symbols"), indexes.clamp(max=conditional._quantized_cdf.shape[0] - 1))] == conditional.compress(
        y, indexes.clamp(max=conditional._quantized_cdf.shape[0] - 1)
    )


@pytest.mark.parametrize("size", [(83, 150), (130, 450)])
def test_cached_tables_give_the_bytes_and_pixels_of_compressais_calls(random_codec, size):
    image = _image(*size)
    legacy = copy.deepcopy(random_codec)
    legacy._coder.use_cached_tables = False
    for rate in (0.1, 0.9):
        data = random_codec.encode(image, rate=rate, roi_weight=1.0).data
        assert data == legacy.encode(image, rate=rate, roi_weight=1.0).data
        assert np.array_equal(random_codec.decode(data), legacy.decode(data))


# -- synthesis layout ----------------------------------------------------------------------------------
def test_channels_last_synthesis_gives_the_same_pixels(model):
    fast_layout = _load(model, analysis_precision="fp32")
    contiguous = _load(model, analysis_precision="fp32", channels_last_synthesis=False)
    assert fast_layout.channels_last_synthesis and not contiguous.channels_last_synthesis
    assert fast_layout.model.g_s_convs[0].weight.is_contiguous(memory_format=torch.channels_last)
    image = _image(200, 333, seed=1)
    mask = np.zeros(image.shape[:2], np.float32)
    mask[50:150, 100:250] = 1
    for rate in (0.0, 0.5, 1.0):
        data = fast_layout.encode(image, roi_mask=mask, rate=rate, roi_weight=8.0).data
        assert data == contiguous.encode(image, roi_mask=mask, rate=rate, roi_weight=8.0).data
        assert np.array_equal(fast_layout.decode(data), contiguous.decode(data))


# -- bf16 analysis -------------------------------------------------------------------------------------
def test_auto_analysis_precision_follows_the_cpu():
    codec = RoiCodec.random(seed=0)
    assert codec.analysis_precision == ("bf16" if cpu_supports_bf16() else "fp32")
    assert RoiCodec.random(seed=0, analysis_precision="fp32").analysis_dtype is None


@needs_bf16
def test_bf16_analysis_stream_is_valid_and_close_to_fp32(model):
    bf16 = _load(model, analysis_precision="bf16")
    fp32 = _load(model, analysis_precision="fp32")
    assert bf16.analysis_dtype == torch.bfloat16
    image = _image(256, 384, seed=2)
    a = bf16.encode(image, rate=0.6)
    b = fp32.encode(image, rate=0.6)
    assert a.data != b.data  # bf16 really ran
    # any decoder decodes either stream; the decoder does not depend on the encoder's precision
    decoded_a, decoded_b = fp32.decode(a.data), fp32.decode(b.data)
    assert np.array_equal(decoded_a, bf16.decode(a.data))
    header_a, _ = unpack_frame(a.data)
    header_b, _ = unpack_frame(b.data)
    assert header_a.z_shape == header_b.z_shape and header_a.rate_code == header_b.rate_code
    # only a few symbols of round(y) differ: size and quality stay close
    assert abs(a.num_bytes - b.num_bytes) <= 0.05 * b.num_bytes + 16
    assert abs(_psnr(image, decoded_a) - _psnr(image, decoded_b)) < 0.3


def test_unsupported_precisions_raise():
    with pytest.raises(ValueError, match="precision"):
        RoiCodec.random(seed=0, precision="bf16")
    with pytest.raises(ValueError, match="analysis_precision"):
        RoiCodec.random(seed=0, analysis_precision="int8")
    with pytest.raises(ValueError, match="fp16"):
        RoiCodec.random(seed=0, analysis_precision="fp16")  # CUDA only
    with pytest.raises(ValueError, match="fp16"):
        RoiCodec.random(seed=0, fp16=True)
    if not cpu_supports_bf16():
        with pytest.raises(ValueError, match="bf16"):
            RoiCodec.random(seed=0, precision="fast")


# -- fast decoder --------------------------------------------------------------------------------------
@needs_bf16
def test_fast_decoder_is_close_to_exact_and_deterministic(model):
    exact = _load(model)
    fast = _load(model, precision="fast")
    assert exact.precision == "exact" and exact.synthesis_dtype is None
    assert fast.synthesis_dtype == torch.bfloat16
    image = _image(192, 320, seed=4)
    data = exact.encode(image, rate=0.7).data
    e, f = exact.decode(data), fast.decode(data)
    assert f.shape == e.shape and f.dtype == np.uint8
    assert not np.array_equal(e, f)  # bf16 really ran
    assert _psnr(e, f) > 35.0  # a few levels on some pixels, nothing structural
    assert np.array_equal(f, fast.decode(data))


def test_decode_timed_reports_the_stages(random_codec):
    data = random_codec.encode(_image(64, 96)).data
    image, timings = random_codec.decode_timed(data)
    assert np.array_equal(image, random_codec.decode(data))
    assert set(timings) == {"entropy", "g_s", "output", "total"}
    assert timings["total"] >= timings["entropy"] + timings["g_s"] > 0
    frame = random_codec.encode(_image(64, 96))
    assert {"input", "g_a", "side", "entropy"} <= set(frame.timings_ms)
    assert frame.timings_ms["analysis"] == pytest.approx(frame.timings_ms["input"] + frame.timings_ms["g_a"] + frame.timings_ms["side"], rel=1e-6)


@pytest.mark.parametrize("size, padded", [((1, 1), (64, 64)), ((64, 64), (64, 64)), ((375, 1242), (384, 1280)), ((65, 129), (128, 192))])
def test_padded_size(size, padded):
    assert padded_size(*size, 64) == padded


# -- encoder fast paths (issue 13, entropy and input stages) -------------------------------------------
@pytest.mark.parametrize("schedule", [False, "hs", "all"])
def test_encoder_entropy_schedules_code_the_same_bytes_with_a_gain_map(random_codec, schedule):
    """Explicit latent scaling (no CompressAI path to compare with): every schedule codes the serial path's bytes
    at 1 and 2 threads, and decodes them back to round(y * gain) / gain."""
    coder, serial = copy.deepcopy(random_codec._coder), copy.deepcopy(random_codec._coder)
    coder.parallel_side, serial.parallel_side = schedule, False
    generator = torch.Generator().manual_seed(6)
    y = torch.randn(1, coder.hyper.h_a[0].in_channels, 8, 12, generator=generator) * 4
    f = torch.randn(1, coder.object.h_a[0].in_channels - y.shape[1], 8, 12, generator=generator)
    with torch.no_grad():
        side = {k: v.float() for k, v in coder.analyse_side(y.double(), f.double()).items()}
    gain = 1.0 + torch.randint(0, 4, (1, 1, 8, 12), generator=generator).double()
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            with torch.inference_mode():
                out, ref = coder.compress(y, side=side, gain=gain), serial.compress(y, side=side, gain=gain)
                decoded = coder.decompress({k: [v[0]] for k, v in out["strings"].items()}, out["shape"], gain=gain)
            assert out["strings"] == ref["strings"]
            assert torch.equal(decoded["y_hat"], (torch.round(y.double() * gain) / gain).float())
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("schedule", [False, "hs", "all"])
def test_encoder_entropy_schedules_code_the_same_bytes_as_the_float64_path(random_codec, schedule):
    """The cached encoder path (y only rounded in float32, z/w to float64 inside, the two h_s on two Python threads
    with one torch thread each, the index lookup in two halves) codes the bytes of CompressAI's float64 calls, at 1
    and 2 torch threads, and leaves torch's thread count as it found it."""
    coder = copy.deepcopy(random_codec._coder)
    legacy = copy.deepcopy(random_codec._coder)
    legacy.use_cached_tables = False
    coder.parallel_side = schedule
    generator = torch.Generator().manual_seed(5)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            for spread in (0.5, 6.0, 300.0):
                y = torch.randn(1, coder.hyper.h_a[0].in_channels, 8, 12, generator=generator, dtype=torch.float64) * spread
                f = torch.randn(1, coder.object.h_a[0].in_channels - y.shape[1], 8, 12, generator=generator, dtype=torch.float64)
                with torch.no_grad():
                    side = {k: (v * spread).float() for k, v in coder.analyse_side(y, f).items()}
                y = y.float()  # as the encoder passes it
                for grad_mode in (torch.inference_mode, torch.no_grad):
                    with grad_mode():
                        out = coder.compress(y, side=side)
                        ref = legacy.compress(y.double(), side={k: v.double() for k, v in side.items()})
                    assert torch.get_num_threads() == n
                    assert out["strings"] == ref["strings"] and out["shape"] == ref["shape"]
                    assert torch.equal(out["y_hat"], torch.round(y)) and out["y_hat"].dtype == y.dtype
                    decoded = coder.decompress({k: [v[0]] for k, v in out["strings"].items()}, out["shape"])
                    assert torch.equal(decoded["y_hat"], torch.round(y))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(not DEFAULT_MODEL_PATH.is_file(), reason="no shipped model")
def test_parallel_hyper_synthesis_gives_the_decoders_float64_bits():
    """h_s/i_s on the worker thread (one torch thread) give bit for bit what the decoder computes at 2 threads."""
    from roi_codec_ros.codec.latent_codec import _SIDE_POOL, _without_grad

    coder = RoiCodec.load("default")._coder
    generator = torch.Generator().manual_seed(6)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for part, channels in ((coder.hyper, 64), (coder.object, coder.object.entropy_bottleneck.channels)):
            z_hat = torch.round(torch.randn(1, channels, 6, 20, generator=generator, dtype=torch.float64) * 4)
            with torch.inference_mode():
                main = part.h_s(z_hat)
                torch.set_num_threads(1)
                worker = _SIDE_POOL.pool().submit(_without_grad, True, part.h_s, z_hat).result()
                torch.set_num_threads(2)
            assert torch.equal(main, worker)
    finally:
        torch.set_num_threads(threads)


def test_encoder_analysis_for_coding_is_the_training_graphs_function(random_codec):
    """analysis(for_coding=True) (folded rate condition, split fusion convs, 1x1-conv GDN) computes ``analysis`` up to
    float rounding, with and without features and with the cached zero maps; the fold itself is exact maths."""
    model = random_codec.model
    torch.manual_seed(3)
    x, mask = torch.rand(1, 3, 128, 192), torch.rand(1, 1, 128, 192)
    feats = [torch.randn(1, c, 128 // s, 192 // s) for c, s in zip(model.config.feature_channels, (8, 16, 32))]
    embedding = model.rate_embedding(torch.tensor([0.37]))
    with torch.inference_mode():
        for features in (feats, model.zero_features(1, 128, 192, "cpu")):
            ref = model.analysis(x, mask, features, embedding, (128, 192))
            out = model.analysis(x, mask, features, embedding, (128, 192), for_coding=True)
            assert out.shape == ref.shape and float((out - ref).abs().max()) < 1e-3 * float(ref.abs().max())
        cond, layer = model.g_a_cond[1], model.g_a_convs[1]
        h = torch.randn(1, layer.in_channels, 16, 16)
        weight, bias = cond.fold(layer.weight, layer.bias, embedding)
        folded = torch.nn.functional.conv2d(h, weight, bias, layer.stride, layer.padding)
        assert torch.allclose(folded, cond(layer(h), embedding), atol=1e-5)
        with pytest.raises(ValueError, match="one frame"):
            cond.fold(layer.weight, layer.bias, embedding.repeat(2, 1))
        gdn = model.g_a_gdn[0]
        t = torch.rand(1, gdn.beta.shape[0], 8, 8)
        assert torch.allclose(gdn.forward_conv(t), gdn(t), rtol=1e-5, atol=1e-6)
    codec = copy.deepcopy(random_codec)
    image = np.random.default_rng(0).integers(0, 256, (128, 192, 3), dtype=np.uint8)
    codec.folded_analysis = False
    plain = codec.encode(image, rate=0.6)
    codec.folded_analysis = True
    folded_frame = codec.encode(image, rate=0.6)
    assert abs(folded_frame.num_bytes - plain.num_bytes) <= 0.02 * plain.num_bytes
    assert codec.decode(folded_frame.data).shape == image.shape
