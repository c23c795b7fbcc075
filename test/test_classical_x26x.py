"""The reusable classical coder: colour conversion, x264/x265 encoder/decoder, streams, keyframes, ROI regions."""
from __future__ import annotations

import numpy as np
import pytest

from roi_codec_ros.classical import ColourConversion, RoiRegion, X26xConfig, X26xDecoder, X26xEncoder, pad_to_even
from roi_codec_ros.classical.x26x import regions_from_boxes, split_access_units, strip_sei
from roi_codec_ros.evaluation.metrics import boxes_to_mask, psnr


def scene(shift: int = 0, height: int = 96, width: int = 128) -> np.ndarray:
    """A smooth coloured scene with texture and a bright block; ``shift`` pans it (motion for P-frames)."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:height, 0:width + 64].astype(np.float32)
    base = np.stack([120 + 80 * np.sin(xx / 11), 110 + 60 * np.cos(yy / 9), 90 + 50 * np.sin((xx + yy) / 15)], -1)
    base += rng.normal(0, 4, base.shape[:2] + (1,))  # luma-like noise: 4:2:0 does not cap the PSNR
    base[30:60, 40:80] = (230, 40, 40)
    return np.clip(base[:, shift:shift + width], 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------- colour
def test_full_range_bt601_code_values_are_the_jfif_ones():
    full, limited = ColourConversion("bt601", "full", "444"), ColourConversion("bt601", "limited", "444")
    pixels = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 0, 255]]], np.uint8)
    y, cb, cr = full.rgb_to_planes(pixels)
    assert y.tolist() == [[255, 0, 76, 29]] and cb.tolist() == [[128, 128, 85, 255]]
    assert cr.tolist() == [[128, 128, 255, 107]]
    y, cb, cr = limited.rgb_to_planes(pixels)
    assert y.tolist() == [[235, 16, 81, 41]] and cb.tolist()[0][:2] == [128, 128] and cr.tolist()[0][2] == 240


def test_full_range_keeps_more_of_the_frame_than_limited_range():
    image = scene()
    for chroma in ("444", "420"):
        full = ColourConversion("bt601", "full", chroma)
        limited = ColourConversion("bt601", "limited", chroma)
        p_full = psnr(image, full.planes_to_rgb(full.rgb_to_planes(image)))
        p_limited = psnr(image, limited.planes_to_rgb(limited.rgb_to_planes(image)))
        assert p_full > p_limited, (chroma, p_full, p_limited)
    assert psnr(image, ColourConversion(chroma="444").planes_to_rgb(ColourConversion(chroma="444").rgb_to_planes(
        image))) > 50.0


@pytest.mark.parametrize("siting", ["center", "left"])
def test_chroma_resampling_is_exact_for_linear_ramps(siting):
    """A horizontal ramp in chroma survives 2x down/up-sampling exactly away from the edges (bilinear is exact on ramps)."""
    colour = ColourConversion("bt601", "full", "420", siting)
    ramp = np.tile(np.linspace(40, 200, 64, dtype=np.float32), (16, 1))
    from roi_codec_ros.classical.colour import _downsample, _upsample

    restored = _upsample(_downsample(ramp, siting), ramp.shape, siting)
    np.testing.assert_allclose(restored[:, 2:-2], ramp[:, 2:-2], atol=1e-3)
    assert colour.pix_fmt == "yuv420p"


def test_colour_validation():
    with pytest.raises(ValueError, match="range"):
        ColourConversion(range="studio")
    with pytest.raises(ValueError, match="even"):
        ColourConversion().rgb_to_planes(np.zeros((5, 6, 3), np.uint8))
    padded, pad_w, pad_h = pad_to_even(np.zeros((5, 7, 3), np.uint8))
    assert padded.shape == (6, 8, 3) and (pad_w, pad_h) == (1, 1)


# ------------------------------------------------------------------------------------------------------ coder
def _code(config: X26xConfig, frames, regions=None, keyframes=()):
    """Stream (zerolatency) or, for other configs, one fresh encoder + flush per frame (as the intra baseline)."""
    height, width = frames[0].shape[:2]
    encoder = X26xEncoder(config, width, height, want_roi=regions is not None)
    decoder = X26xDecoder(config.codec_name)
    packets, decoded = [], []
    for i, frame in enumerate(frames):
        if not config.low_delay:
            encoder = X26xEncoder(config, width, height, want_roi=regions is not None)
            decoder = X26xDecoder(config.codec_name)
        out = encoder.encode(frame, regions or (), keyframe=i in keyframes)
        if not config.low_delay:
            out += encoder.flush()
        assert len(out) == 1, "one packet per frame"
        packets += out
        decoded += decoder.decode(out[0].data) + ([] if config.low_delay else decoder.flush())
    return packets, decoded, decoder


@pytest.mark.parametrize("encoder", ["x264", "x265"])
def test_zerolatency_stream_one_packet_per_frame_with_keyframes(encoder):
    frames = [scene(2 * i) for i in range(7)]
    config = X26xConfig(encoder=encoder, preset="veryfast", tune="zerolatency", crf=26, keyint=3)
    packets, decoded, decoder = _code(config, frames, keyframes={5})
    assert [p.keyframe for p in packets] == [True, False, False, True, False, True, False]
    assert [p.index for p in packets] == list(range(7))
    assert all(p.data[:3] == b"\x00\x00\x01" for p in packets)
    assert max(len(p.data) for p in packets if not p.keyframe) < min(len(p.data) for p in packets if p.keyframe)
    assert len(decoded) == len(frames)
    for frame, out in zip(frames, decoded):
        assert out.shape == frame.shape and psnr(frame, out) > 30.0
    assert decoder.last_colour == ColourConversion()  # full-range BT.601 read back from the stream's VUI


def test_intra_config_and_444_and_limited_range_are_signalled():
    image = scene()
    for colour in (ColourConversion(chroma="444"), ColourConversion(range="limited"),
                   ColourConversion(matrix="bt709")):
        config = X26xConfig(crf=20, keyint=1, colour=colour)
        packets, decoded, decoder = _code(config, [image, image])
        assert all(p.keyframe for p in packets) and b"x264 - core" not in packets[0].data
        assert decoder.last_colour.range == colour.range and decoder.last_colour.matrix == colour.matrix
        assert decoder.last_colour.chroma == colour.chroma
        assert psnr(image, decoded[0]) > 32.0


def test_roi_regions_refine_the_boxes_even_with_aq_off():
    image = scene()
    mask = boxes_to_mask(np.array([[32, 16, 96, 64]]), image.shape[:2])
    # PSNR tuning: AQ off (ROI keeps it barely on); 4:4:4 because 4:2:0 itself caps the red block's edges at ~31 dB
    config = X26xConfig(crf=36, keyint=1, psy=False, aq_mode=0, colour=ColourConversion(chroma="444"))
    assert "aq-mode=0" in config.codec_params() and "aq-strength=0.01" in config.codec_params(want_roi=True)
    _, plain, _ = _code(config, [image])
    packets, roi, _ = _code(config, [image], [RoiRegion(32, 16, 64, 48, -0.5)])
    assert psnr(image, roi[0], mask) > psnr(image, plain[0], mask) + 2.0
    with pytest.raises(ValueError, match="want_roi"):
        X26xEncoder(config, 128, 96).encode(image, [RoiRegion(0, 0, 16, 16, -0.2)])
    with pytest.raises(ValueError, match="qoffset"):
        X26xEncoder(config, 128, 96, want_roi=True).encode(image, [RoiRegion(0, 0, 16, 16, -2.0)])


def test_config_validation_and_cli_arguments():
    with pytest.raises(ValueError, match="exactly one"):
        X26xConfig(crf=20, bitrate_kbps=500)
    with pytest.raises(ValueError, match="keyint"):
        X26xConfig(keyint=0)
    with pytest.raises(ValueError, match="encoder"):
        X26xConfig(encoder="vp9")
    with pytest.raises(ValueError, match="even"):
        X26xEncoder(X26xConfig(), 127, 96)
    args = X26xConfig(encoder="x265", tune="zerolatency", crf=30).ffmpeg_args()
    assert args[:2] == ["-c:v", "libx265"] and "-x265-params" in args and "zerolatency" in args
    assert "range=full" in args[args.index("-x265-params") + 1]
    abr = X26xConfig(crf=None, bitrate_kbps=800, vbv_maxrate_kbps=800, vbv_bufsize_kbit=80, tune="zerolatency")
    assert "vbv-maxrate=800" in abr.codec_params() and "-b:v" in abr.ffmpeg_args()


def test_abr_stream_tracks_its_target():
    frames = [scene(i) for i in range(20)]
    sizes = {}
    for kbps in (30, 60):
        config = X26xConfig(preset="veryfast", tune="zerolatency", crf=None, bitrate_kbps=kbps, keyint=None)
        packets, _, _ = _code(config, frames)
        sizes[kbps] = sum(len(p.data) for p in packets[1:]) * 8 / 1000 / (19 / 10.0)
    assert sizes[30] < sizes[60]
    for kbps, measured in sizes.items():
        assert 0.6 * kbps < measured < 1.4 * kbps, sizes


def test_decoder_rejects_garbage_and_streams_split_into_pictures():
    with pytest.raises(ValueError):
        X26xDecoder("h264").decode(b"\x00\x00\x01\x65 definitely not a slice")
    with pytest.raises(ValueError, match="h264 or hevc"):
        X26xDecoder("vp8")
    config = X26xConfig(preset="veryfast", tune="zerolatency", crf=30)
    packets, decoded, _ = _code(config, [scene(i) for i in range(4)])
    units = split_access_units(b"".join(p.data for p in packets), "h264")
    assert len(units) == 4
    assert strip_sei(packets[0].data, "h264") == packets[0].data  # already SEI-free


def test_regions_from_boxes_cover_exactly_the_roi_mask_pixels():
    boxes = np.array([[10.4, 5.6, 30.5, 20.0], [50, 50, 50, 60], [-5, -5, 8, 8]])
    regions = regions_from_boxes(boxes, 40, 64, -0.3, background_qoffset=0.1)
    mask = boxes_to_mask(boxes, (40, 64))
    rebuilt = np.zeros_like(mask)
    for r in regions[:-1]:
        rebuilt[r.y:r.y + r.h, r.x:r.x + r.w] = True
    np.testing.assert_array_equal(rebuilt, mask)  # the empty box is dropped, the others match pixel for pixel
    assert [r.qoffset for r in regions] == [-0.3, -0.3, 0.1] and regions[-1] == RoiRegion(0, 0, 64, 40, 0.1)
    assert regions_from_boxes(boxes, 40, 64, None) == [] and regions_from_boxes(None, 40, 64, -0.3) == []
    assert regions[0] == RoiRegion(10, 5, 21, 15, -0.3)  # every pixel the fractional box touches
