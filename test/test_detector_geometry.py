"""Letterbox geometry: frame <-> detector input <-> feature-map coordinates (no model needed)."""
import numpy as np
import pytest
import torch

from roi_codec_ros.detector import LetterboxGeometry, crop_features_to_frame, letterbox

SIZES = [(375, 1242), (1080, 1920), (450, 800), (640, 640), (1200, 400), (33, 517)]


def test_letterbox_shapes_match_ultralytics_rect_rule():
    _, g = letterbox(np.zeros((375, 1242, 3), np.uint8), 640, rect=True)
    assert g.input_hw == (224, 640) and g.resized_hw == (193, 640)
    assert (g.pad_top, g.pad_left) == (15, 0)  # 31 rows of padding: 15 above, 16 below
    _, g = letterbox(np.zeros((1080, 1920, 3), np.uint8), 640, rect=True)
    assert g.input_hw == (384, 640) and g.resized_hw == (360, 640) and g.pad_top == 12
    _, g = letterbox(np.zeros((1080, 1920, 3), np.uint8), 640, rect=False)
    assert g.input_hw == (640, 640) and g.pad_top == 140


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("rect", [True, False])
def test_known_box_round_trip_and_lands_on_the_letterboxed_pixels(hw, rect):
    h, w = hw
    box = np.array([[0.2 * w, 0.3 * h, 0.7 * w, 0.9 * h]]).round()
    frame = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box[0].astype(int)
    frame[y1:y2, x1:x2] = 255
    out, g = letterbox(frame, 640, rect=rect)
    assert out.shape[:2] == g.input_hw
    assert out.shape[0] % 32 == 0 and out.shape[1] % 32 == 0

    # the mapped box is where the white rectangle actually ended up in the detector input (within a pixel)
    mapped = g.frame_to_input(box)[0]
    rows, cols = np.nonzero(out[..., 0] > 127)
    found = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], float)
    assert np.abs(found - mapped).max() <= 1.0, (found, mapped)

    # the padding is ultralytics' grey and sits exactly outside the resized frame
    top, left, (rh, rw) = g.pad_top, g.pad_left, g.resized_hw
    assert top + rh <= g.input_hw[0] and left + rw <= g.input_hw[1]
    if top > 0:
        assert np.all(out[:top] == 114)
    if left > 0:
        assert np.all(out[:, :left] == 114)

    # exact inverse (ultralytics scale_boxes with our ratio_pad), numpy and torch
    back = g.input_to_frame(mapped[None])
    np.testing.assert_allclose(back, box, atol=1e-6)
    back_t = g.input_to_frame(torch.tensor(mapped[None]))
    np.testing.assert_allclose(back_t.numpy(), box, atol=1e-6)


def test_input_to_frame_clips_unless_asked_not_to():
    g = LetterboxGeometry(frame_hw=(375, 1242), input_hw=(224, 640), resized_hw=(193, 640), pad_top=15, pad_left=0)
    box = np.array([[-10.0, 0.0, 650.0, 224.0]])  # reaches into the padding and past the right edge
    clipped = g.input_to_frame(box)
    assert clipped.min() >= 0 and clipped[0, 2] == 1242 and clipped[0, 3] == 375
    raw = g.input_to_frame(box, clip=False)
    assert raw[0, 0] < 0 and raw[0, 1] < 0 and raw[0, 2] > 1242 and raw[0, 3] > 375


def test_input_to_frame_agrees_with_ultralytics_default_padding_guess():
    from ultralytics.utils.ops import scale_boxes

    for h, w in SIZES:
        _, g = letterbox(np.zeros((h, w, 3), np.uint8), 640, rect=False)
        b = np.array([[100.0, 150.0, 400.0, 500.0]])
        ours = g.input_to_frame(b)
        theirs = scale_boxes(g.input_hw, b.copy(), g.frame_hw)
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("stride", [8, 16, 32])
def test_feature_crop_covers_exactly_the_frame(hw, stride):
    _, g = letterbox(np.zeros((*hw, 3), np.uint8), 640, rect=True)
    hi, wi = g.input_hw[0] // stride, g.input_hw[1] // stride
    # a feature map whose value is the input-pixel x (channel 0) / y (channel 1) of each cell centre
    xs = (torch.arange(wi, dtype=torch.float32) + 0.5) * stride
    ys = (torch.arange(hi, dtype=torch.float32) + 0.5) * stride
    feat = torch.stack([xs.expand(hi, wi), ys[:, None].expand(hi, wi)])[None]
    out = crop_features_to_frame(feat, g, stride)
    oh, ow = g.feature_size(stride)
    assert out.shape == (1, 2, oh, ow)
    # output cell (i, j) centre, in frame pixels, mapped to input pixels, is what the cell holds
    fx = (torch.arange(ow) + 0.5) * g.frame_hw[1] / ow
    fy = (torch.arange(oh) + 0.5) * g.frame_hw[0] / oh
    exp_x = g.pad_left + fx * g.scale_x
    exp_y = g.pad_top + fy * g.scale_y
    # bilinear sampling of a linear ramp is exact except where a sample falls outside the outermost cell centres
    tol = 0.03 * stride
    assert torch.allclose(out[0, 0], exp_x.expand(oh, ow), atol=tol)
    assert torch.allclose(out[0, 1], exp_y[:, None].expand(oh, ow), atol=tol)


def test_feature_crop_is_identity_without_padding():
    _, g = letterbox(np.zeros((640, 640, 3), np.uint8), 640)
    feat = torch.randn(2, 5, 20, 20)
    assert torch.equal(crop_features_to_frame(feat, g, 32), feat)


def test_feature_crop_of_whole_cells_is_bit_exact():
    # 1242x375 at 640: 15 rows of padding on top = 1.875 cells at stride 8 (fractional) but the stride-1 crop is whole
    g = LetterboxGeometry(frame_hw=(375, 1242), input_hw=(224, 640), resized_hw=(193, 640), pad_top=15, pad_left=0)
    feat = torch.randn(1, 3, 224, 640)
    assert torch.equal(crop_features_to_frame(feat, g, 1), feat[:, :, 15:208])


def test_bad_images_are_rejected_clearly():
    with pytest.raises(ValueError, match="uint8"):
        letterbox(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="HxWx3"):
        letterbox(np.zeros((10, 10), np.uint8))
    with pytest.raises(TypeError, match="numpy"):
        letterbox([[0, 0, 0]])
