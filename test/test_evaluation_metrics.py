"""Metric correctness: known MSE -> known PSNR, ROI/background split (TUM eq. 9), MS-SSIM, rate units."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim as reference_ms_ssim

from roi_codec_ros.evaluation.metrics import (
    MSSSIM_MIN_SIDE,
    PSNR_CAP_DB,
    bitrate_bps,
    bits_per_pixel,
    boxes_to_mask,
    frame_quality,
    ms_ssim,
    ms_ssim_regions,
    mse,
    psnr,
    psnr_regions,
)


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth-plus-noise RGB test image (values away from 0/255 so offsets do not clip)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 50 * np.sin(xx / 9.0)[..., None] * np.cos(yy / 13.0)[..., None] * np.array([1.0, 0.7, -0.8])
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 40, 215).astype(np.uint8)


def test_known_mse_gives_known_psnr():
    original = textured(32, 48)
    decoded = original + np.uint8(5)  # every sample off by exactly 5 -> MSE 25
    assert mse(original, decoded) == pytest.approx(25.0)
    # 10 log10(255^2 / 25) = 20 log10(51) = 34.1514 dB
    assert psnr(original, decoded) == pytest.approx(34.15140352, abs=1e-6)


def test_psnr_regions_match_psnr_per_mask_and_empty_regions_are_nan():
    original = textured(40, 60)
    decoded = np.clip(original.astype(np.int16) + np.random.default_rng(1).integers(-9, 10, original.shape), 0, 255).astype(np.uint8)
    masks = {"car": boxes_to_mask(np.array([[5, 5, 30, 20]]), (40, 60)),
             "light": boxes_to_mask(np.array([[40, 2, 44.5, 15]]), (40, 60)), "none": np.zeros((40, 60), bool)}
    got = psnr_regions(original, decoded, masks)
    assert got["car"] == pytest.approx(psnr(original, decoded, masks["car"]), abs=1e-12)
    assert got["light"] == pytest.approx(psnr(original, decoded, masks["light"]), abs=1e-12)
    assert got["car"] != got["light"] and math.isnan(got["none"])
    assert psnr_regions(original, decoded, {}) == {}
    with pytest.raises(ValueError, match="mask shape"):
        psnr_regions(original, decoded, {"bad": np.ones((4, 4), bool)})


def test_identical_images_are_capped_not_infinite():
    image = textured(16, 16)
    assert psnr(image, image) == PSNR_CAP_DB


def test_roi_and_background_psnr_use_only_their_pixels():
    original = textured(60, 80)
    boxes = np.array([[10, 20, 30, 50]], np.float32)  # 20 x 30 = 600 of 4800 pixels
    roi = boxes_to_mask(boxes, (60, 80))
    decoded = original.astype(np.int16)
    decoded[roi] += 2  # ROI error 2 -> MSE 4
    decoded[~roi] -= 10  # background error 10 -> MSE 100
    decoded = decoded.astype(np.uint8)
    q = frame_quality(original, decoded, roi, with_msssim=False)
    assert q.psnr_roi == pytest.approx(10 * math.log10(255**2 / 4))
    assert q.psnr_bg == pytest.approx(10 * math.log10(255**2 / 100))
    whole_mse = (600 * 4 + 4200 * 100) / 4800
    assert q.psnr == pytest.approx(10 * math.log10(255**2 / whole_mse))
    assert q.roi_fraction == pytest.approx(600 / 4800)


def test_no_roi_gives_nan_roi_and_background_equal_to_whole():
    original = textured(20, 20)
    decoded = original + np.uint8(3)
    q = frame_quality(original, decoded, None, with_msssim=False)
    assert math.isnan(q.psnr_roi)
    assert q.psnr_bg == pytest.approx(q.psnr)
    assert q.roi_fraction == 0.0


def test_boxes_to_mask_is_the_codec_rasteriser():
    """The region metrics measure the pixels the codec was told are ROI: every pixel a box touches."""
    from roi_codec_ros.detector import rasterise_boxes

    mask = boxes_to_mask(np.array([[1.4, 0.0, 3.6, 2.0]]), (4, 6))
    # columns 1..3 (touched by 1.4..3.6), rows 0, 1
    expected = np.zeros((4, 6), bool)
    expected[0:2, 1:4] = True
    np.testing.assert_array_equal(mask, expected)
    boxes = np.array([[0.2, 1.7, 2.1, 3.0], [4.5, 0.5, 5.5, 1.5]])
    np.testing.assert_array_equal(boxes_to_mask(boxes, (4, 6)), rasterise_boxes(boxes, 4, 6) > 0)
    clipped = boxes_to_mask(np.array([[-10, -10, 100, 1.0]]), (4, 6))
    assert clipped[0].all() and not clipped[1:].any()
    assert not boxes_to_mask(np.zeros((0, 4)), (4, 6)).any() and not boxes_to_mask(None, (4, 6)).any()
    assert boxes_to_mask(boxes, (4, 6)).dtype == bool


@pytest.mark.parametrize("height, width", [(200, 240), (203, 245)])  # even and odd sizes at every scale
def test_whole_frame_ms_ssim_equals_pytorch_msssim(height, width):
    original = textured(height, width, seed=1)
    rng = np.random.default_rng(2)
    decoded = np.clip(original.astype(int) + rng.integers(-25, 26, original.shape), 0, 255).astype(np.uint8)
    ours = ms_ssim(original, decoded)
    x = torch.from_numpy(original.copy()).permute(2, 0, 1)[None].float()
    y = torch.from_numpy(decoded).permute(2, 0, 1)[None].float()
    assert ours == pytest.approx(float(reference_ms_ssim(x, y, data_range=255)), abs=1e-5)
    assert ours < 0.99


def test_region_ms_ssim_sees_where_the_error_is():
    original = textured(200, 240, seed=3)
    roi = boxes_to_mask(np.array([[60, 50, 180, 150]]), (200, 240))
    rng = np.random.default_rng(4)
    noisy = np.clip(original.astype(int) + rng.integers(-40, 41, original.shape), 0, 255).astype(np.uint8)
    decoded = np.where(roi[..., None], original, noisy)  # only the background is damaged
    values = ms_ssim_regions(original, decoded, {"whole": None, "roi": roi, "bg": ~roi})
    assert values["roi"] > values["whole"] > values["bg"]
    assert values["roi"] > 0.95 and values["bg"] < 0.9
    assert ms_ssim(original, decoded, roi) == pytest.approx(values["roi"])


def test_ms_ssim_is_nan_for_small_frames_and_empty_regions():
    small = textured(MSSSIM_MIN_SIDE - 1, 300)
    assert math.isnan(ms_ssim(small, small))
    big = textured(MSSSIM_MIN_SIDE, MSSSIM_MIN_SIDE)
    assert ms_ssim(big, big) == pytest.approx(1.0, abs=1e-5)
    assert math.isnan(ms_ssim(big, big, np.zeros(big.shape[:2], bool)))


def test_rate_units():
    assert bits_per_pixel(1000, 100, 80) == pytest.approx(1.0)
    assert bitrate_bps(1250, 10.0) == pytest.approx(100_000.0)
    with pytest.raises(ValueError):
        bitrate_bps(10, 0)


def test_bad_inputs_are_rejected_with_clear_errors():
    image = textured(10, 10)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        psnr(image.astype(np.float32), image)
    with pytest.raises(ValueError, match="differs"):
        psnr(image, textured(10, 12))
    with pytest.raises(ValueError, match="mask shape"):
        psnr(image, image, np.ones((5, 5), bool))
