"""Detector adapter: hooks, frame-aligned features, detections, weights handling, threads.

Shapes and geometry use an untrained model built from ultralytics' bundled yolov8n.yaml; the test with real
weights (COCO YOLOv8n) takes the ``detector_weights`` fixture (test/conftest.py) and skips when they are absent.
"""
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from roi_codec_ros.detector import (
    DetectorAdapter,
    DetectorWeightsError,
    default_weights_path,
    RoiMaskConfig,
    keep_torch_threads,
    roi_mask_from_detections,
)



@pytest.fixture(scope="module")
def det():
    return DetectorAdapter.random_init("yolov8n.yaml", seed=0)


def frame(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def bus_image():
    from PIL import Image
    from ultralytics.utils import ASSETS

    with Image.open(ASSETS / "bus.jpg") as im:
        return np.asarray(im.convert("RGB"))


def test_random_init_is_explicit_and_described(det):
    assert det.weights_sha256 is None and det.weights_path is None
    assert det.detector_id == "random-init:yolov8n.yaml:seed=0"
    assert det.feature_layers == (15, 18, 21)
    assert det.strides == (8, 16, 32)
    assert det.feature_channels == (64, 128, 256)
    assert det.names[2] == "car" and len(det.names) == 80


# expected frame-aligned (h, w) per stride 8/16/32 at imgsz 640
EXPECTED = {
    (375, 1242): [(24, 80), (12, 40), (6, 20)],  # 193x640 inside a 224x640 input
    (1080, 1920): [(45, 80), (23, 40), (11, 20)],  # 360x640 inside 384x640
    (450, 800): [(45, 80), (23, 40), (11, 20)],
    (640, 640): [(80, 80), (40, 40), (20, 20)],
    (1200, 400): [(80, 27), (40, 13), (20, 7)],  # portrait: 640x213 inside 640x224
}


@pytest.mark.parametrize("hw", list(EXPECTED))
def test_features_per_stride_are_frame_aligned(det, hw):
    res = det(frame(*hw))
    assert res.geometry.frame_hw == hw
    assert res.strides == (8, 16, 32)
    assert [tuple(f.shape) for f in res.features] == [
        (1, c, *s) for c, s in zip(det.feature_channels, EXPECTED[hw])
    ]
    assert [tuple(f.shape[2:]) for f in res.features] == [res.geometry.feature_size(s) for s in res.strides]
    assert all(f.dtype == torch.float32 and torch.isfinite(f).all() for f in res.features)
    assert res.latency_ms > 0 and set(res.timings_ms) == {"preprocess", "forward", "postprocess"}
    b = res.detections.boxes
    assert b.dtype == np.float32 and b.shape[1] == 4
    if len(b):
        assert b[:, [0, 2]].min() >= 0 and b[:, [0, 2]].max() <= hw[1]
        assert b[:, [1, 3]].min() >= 0 and b[:, [1, 3]].max() <= hw[0]


def test_hooks_capture_exactly_the_detect_head_inputs(det):
    captured = {}
    handle = det.head.register_forward_pre_hook(lambda m, inp: captured.update(x=[t.clone() for t in inp[0]]))
    try:
        res = det(frame(640, 640, seed=3))  # square: no padding, the crop is the identity
    finally:
        handle.remove()
    assert len(captured["x"]) == 3
    for ours, head_input in zip(res.features, captured["x"]):
        assert torch.equal(ours, head_input)


def test_features_for_padded_frames_are_the_head_inputs_without_padding(det):
    captured = {}
    handle = det.head.register_forward_pre_hook(lambda m, inp: captured.update(x=[t.clone() for t in inp[0]]))
    try:
        res = det(frame(360, 640, seed=4))  # 360 rows + 12 rows of padding above and below in a 384x640 input
    finally:
        handle.remove()
    assert res.geometry.pad_top == 12 and res.geometry.input_hw == (384, 640)
    f32 = res.features[2]  # stride 32: window rows 0.375 .. 11.625, resampled onto 11 rows
    assert f32.shape[2:] == (11, 20)
    # stride 8 window rows 1.5 .. 46.5 -> 45 rows; bilinear samples at cell boundaries = mean of two rows
    f8, raw8 = res.features[0], captured["x"][0]
    assert f8.shape[2:] == (45, 80)
    torch.testing.assert_close(f8[0, :, 0], (raw8[0, :, 1] + raw8[0, :, 2]) / 2)
    torch.testing.assert_close(f8[0, :, -1], (raw8[0, :, 45] + raw8[0, :, 46]) / 2)


def test_batch_matches_single_calls(det):
    a, b = frame(375, 1242, seed=1), frame(375, 1242, seed=2)
    batch = det.features_and_detections_batch([a, b])
    for single, batched in zip([det(a), det(b)], batch):
        for fs, fb in zip(single.features, batched.features):
            torch.testing.assert_close(fs, fb, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="same shape"):
        det.features_and_detections_batch([a, frame(100, 100)])
    assert det.features_and_detections_batch([]) == []


def test_torch_thread_count_is_kept(det):
    before = torch.get_num_threads()
    with keep_torch_threads():
        torch.set_num_threads(1)  # what ultralytics' predict() does behind our back
    assert torch.get_num_threads() == before
    det(frame(100, 160))
    assert torch.get_num_threads() == before


def test_bad_frames_are_rejected(det):
    with pytest.raises(ValueError, match="uint8"):
        det(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="HxWx3"):
        det(np.zeros((64, 64), np.uint8))
    with pytest.raises(TypeError):
        det(torch.zeros(64, 64, 3, dtype=torch.uint8))


def test_missing_weights_fail_with_instructions(monkeypatch, tmp_path):
    monkeypatch.delenv("ROI_CODEC_DETECTOR_WEIGHTS", raising=False)
    for missing in (tmp_path / "vehicle_yolo.pt", "yolov8n.pt", None):
        with pytest.raises(DetectorWeightsError) as info:
            DetectorAdapter.from_weights(missing)
        text = str(info.value)
        assert "--weights" in text and "ROI_CODEC_DETECTOR_WEIGHTS" in text and "random_init" in text
        assert isinstance(info.value, FileNotFoundError)
    # a model yaml is never silently turned into an untrained detector
    with pytest.raises(ValueError, match="random_init"):
        DetectorAdapter.from_weights("yolov8n.yaml")
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DetectorWeightsError, match="Could not load"):
        DetectorAdapter.from_weights(bad)


def test_default_weights_come_from_the_environment_only(monkeypatch, tmp_path):
    """The library knows no development layout: no variable, no weights (and a message saying how to set them)."""
    monkeypatch.delenv("ROI_CODEC_DETECTOR_WEIGHTS", raising=False)
    monkeypatch.setenv("ROI_CODEC_ROOT", str(tmp_path / "repo"))
    (tmp_path / "shared" / "models").mkdir(parents=True)
    (tmp_path / "shared" / "models" / "yolov8n_coco.pt").write_bytes(b"beside the repository")
    assert default_weights_path() is None
    with pytest.raises(DetectorWeightsError, match="ROI_CODEC_DETECTOR_WEIGHTS is not set"):
        DetectorAdapter.from_weights(None)
    monkeypatch.setenv("ROI_CODEC_DETECTOR_WEIGHTS", str(tmp_path / "vehicle.pt"))
    assert default_weights_path() == tmp_path / "vehicle.pt"
    source = (Path(__file__).resolve().parents[1] / "roi_codec_ros" / "detector" / "adapter.py").read_text()
    assert "shared" not in source


def test_from_weights_loads_a_checkpoint_and_records_its_sha256(tmp_path, monkeypatch):
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(1)
    model = DetectionModel("yolov8n.yaml", nc=3, verbose=False).eval()
    model.names = {0: "car", 1: "pedestrian", 2: "cone"}  # a "fine-tuned" vehicle model with its own classes
    path = tmp_path / "vehicle.pt"
    torch.save({"model": model, "train_args": {}}, path)
    monkeypatch.setenv("ROI_CODEC_DETECTOR_WEIGHTS", str(path))
    det = DetectorAdapter.from_weights(None)  # found through the environment variable
    assert det.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert det.detector_id == f"sha256:{det.weights_sha256}"
    assert det.names == {0: "car", 1: "pedestrian", 2: "cone"}
    res = det(frame(375, 1242))
    assert [tuple(f.shape[1:]) for f in res.features] == [(64, 24, 80), (128, 12, 40), (256, 6, 20)]
    assert res.detections.names == det.names
    det.close()  # hooks removed: the adapter refuses to run rather than return stale features
    with pytest.raises(RuntimeError, match="closed"):
        det(frame(64, 64))


def test_auto_device_and_cuda_refused_clearly_when_absent():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="CUDA"):
        DetectorAdapter.random_init("yolov8n.yaml", device="cuda")
    before = torch.get_num_threads()
    assert DetectorAdapter.random_init("yolov8n.yaml", device="auto").device.type == "cpu"
    assert torch.get_num_threads() == before  # building (ultralytics code) leaves torch's threads alone


def test_real_weights_on_bus_match_ultralytics_predict(detector_weights):
    det = DetectorAdapter.from_weights(detector_weights)
    assert det.weights_sha256 == hashlib.sha256(detector_weights.read_bytes()).hexdigest()
    image = bus_image()  # 1080x810
    res = det(image)
    names = [res.detections.label(i) for i in range(len(res.detections))]
    assert "bus" in names and names.count("person") >= 3
    assert [tuple(f.shape[2:]) for f in res.features] == [(80, 60), (40, 30), (20, 15)]

    # same boxes as ultralytics' own pipeline (which we avoid at run time because it lowers torch's threads)
    from ultralytics import YOLO

    with keep_torch_threads():
        ref = YOLO(str(detector_weights)).predict(image[..., ::-1].copy(), verbose=False, device="cpu")[0]
    ref_boxes = ref.boxes.xyxy.numpy()
    assert len(ref_boxes) == len(res.detections)
    order = np.argsort(-ref.boxes.conf.numpy())
    np.testing.assert_allclose(res.detections.boxes, ref_boxes[order], atol=0.5)
    np.testing.assert_array_equal(res.detections.class_ids, ref.boxes.cls.numpy()[order].astype(int))

    # the ROI mask covers the bus and the people, not the sky above the bus
    mask = roi_mask_from_detections(res.detections, image.shape[:2], RoiMaskConfig())
    bus = res.detections.boxes[names.index("bus")]
    cx, cy = int((bus[0] + bus[2]) / 2), int((bus[1] + bus[3]) / 2)
    assert mask[cy, cx] == 1.0 and mask[50, 400] == 0.0
    assert res.roi_mask(shape_hw=(540, 405))[cy // 2, cx // 2] == 1.0
