"""The evaluation runner, task metric, label files and the `roi-codec eval` command on generated data."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from roi_codec_ros.detector import Detections
from roi_codec_ros.cli import evaluate as cli
from roi_codec_ros.evaluation.baselines import Codec, JpegCodec, VideoIntraCodec
from roi_codec_ros.evaluation.frames import iter_folder_frames, read_label_boxes
from roi_codec_ros.evaluation.runner import Frame, RoiSource, evaluate, summarize
from roi_codec_ros.evaluation.task import box_iou, match_detections

H, W = 96, 128
SQUARE = (30, 20, 70, 60)  # x1, y1, x2, y2 of the red square


def scene(seed: int) -> np.ndarray:
    """Textured background with a red square (a stand-in 'car')."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    image = np.stack([60 + 40 * np.sin(xx / 7.0), 120 + 30 * np.cos(yy / 5.0), 90 + 0 * xx], -1)
    image = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    x1, y1, x2, y2 = SQUARE
    image[y1:y2, x1:x2] = (235, 25, 25)
    return image


class RedSquareDetector:
    """A deterministic 'detector': the bounding box of strongly red pixels, class car (id 2)."""

    names = {0: "person", 2: "car"}
    detector_id = "test:red-square"

    def __call__(self, image):
        red = (image[..., 0] > 180) & (image[..., 1] < 90) & (image[..., 2] < 90)
        if red.sum() < 50:
            dets = Detections.empty(self.names)
        else:
            ys, xs = np.nonzero(red)
            dets = Detections(np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32),
                              np.array([2]), np.array([0.9], np.float32), self.names)

        class Result:
            features, detections = None, dets

        return Result()


class GrayCodec(Codec):
    """Sends only the frame size and shows a gray frame: every object is lost."""

    family, setting = "gray", "-"

    def encode(self, image, boxes=None, features=None) -> bytes:
        return np.array(image.shape[:2], np.uint16).tobytes()

    def decode(self, data: bytes) -> np.ndarray:
        h, w = np.frombuffer(data, np.uint16)
        return np.full((h, w, 3), 128, np.uint8)


def test_match_detections_counts_tp_fp_fn():
    ref = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], float)
    test = np.array([[1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10], [80, 80, 90, 90]], float)
    counts = match_detections(ref, [1, 1, 2], test, [1, 2, 1, 1], test_scores=[0.5, 0.9, 0.95, 0.3])
    # the 0.95 box takes ref 0 (IoU 1) first; the 0.5 box then has no free ref; class 2 box does not match class 1
    assert (counts.tp, counts.fp, counts.fn) == (1, 3, 2)
    assert counts.precision == pytest.approx(0.25) and counts.recall == pytest.approx(1 / 3)
    assert box_iou(ref[:1], np.array([[5, 0, 15, 10]]))[0, 0] == pytest.approx(50 / 150)
    empty = match_detections(np.zeros((0, 4)), [], test, [1, 2, 1, 1])
    assert (empty.tp, empty.fp, empty.fn) == (0, 4, 0) and math.isnan(empty.recall)


def test_task_metric_sees_objects_survive_or_vanish():
    frames = [Frame(name=f"{i}", image=scene(i)) for i in range(3)]
    source = RoiSource("detector", detector=RedSquareDetector())
    records = evaluate(frames, [JpegCodec(90), GrayCodec()], fps=10, roi_source=source, task_metric=True,
                       with_msssim=False, progress=False)
    rows = {row["family"]: row for row in summarize(records)}
    assert rows["JPEG"]["task_recall"] == 1.0 and rows["JPEG"]["task_precision"] == 1.0
    assert rows["gray"]["task_recall"] == 0.0 and rows["gray"]["task_fn"] == 3
    # the detector's ROI box (grown by the default 8 px margin) is what the ROI metrics use
    assert rows["JPEG"]["roi_fraction"] == pytest.approx((40 + 16) * (40 + 16) / (H * W))
    assert rows["JPEG"]["psnr_roi"] > 25 and math.isnan(rows["gray"]["task_precision"])


def test_label_files_pixel_and_yolo_formats(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("car 10 20 50 60\n# comment\n\n0 0.5 0.5 0.25 0.5\n")
    boxes = read_label_boxes(path, (100, 200))
    np.testing.assert_allclose(boxes, [[10, 20, 50, 60], [75, 25, 125, 75]])
    path.write_text("car 10 20 five 60\n")
    with pytest.raises(ValueError, match="a.txt:1"):
        read_label_boxes(path, (100, 200))


@pytest.fixture()
def labelled_folder(tmp_path) -> tuple[Path, Path]:
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"f{i}.png"), cv2.cvtColor(scene(i), cv2.COLOR_RGB2BGR))
        if i < 2:  # the last frame has no label file = no ROI
            (labels / f"f{i}.txt").write_text("car {} {} {} {}\n".format(*SQUARE))
    return images, labels


def test_eval_command_writes_report_tables_and_plots(labelled_folder, tmp_path):
    images, labels = labelled_folder
    out = tmp_path / "report"
    code = cli.main(["eval", str(images), "--labels", str(labels), "--codec", "jpeg:q=30,60,90",
                     "--codec", "x264:crf=22,30,38", "--codec", "x264-roi:crf=22,30,38:q=-0.3", "--no-detector",
                     "--no-msssim", "--quiet", "--fps", "30", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["anchor"] == "JPEG" and report["meta"]["frames"] == 3
    assert len(report["records"]) == 3 * 9
    first = report["records"][0]
    assert first["bitrate_bps"] == pytest.approx(first["num_bytes"] * 8 * 30)
    roi_row = next(r for r in report["summary"] if r["family"] == "x264 420 ROI q-0.3" and r["setting"] == "crf=30")
    plain_row = next(r for r in report["summary"] if r["family"] == "x264 420" and r["setting"] == "crf=30")
    assert roi_row["frames_with_roi"] == 2
    assert roi_row["psnr_roi"] > plain_row["psnr_roi"]
    bd = {row["family"]: row for row in report["bd"]}
    assert set(bd) == {"x264 420", "x264 420 ROI q-0.3"}
    # BD-PSNR compares over the common bit-rate range, which exists even where the PSNR ranges do not overlap
    assert bd["x264 420 ROI q-0.3"]["bd_psnr_psnr_roi"] > bd["x264 420"]["bd_psnr_psnr_roi"]
    assert bd["x264 420"]["bd_rate_psnr"] < 0  # x264 intra beats JPEG on the whole frame
    for name in ("report.md", "rd_psnr_whole.png", "rd_psnr_roi.png", "rd_psnr_bg.png"):
        assert (out / name).stat().st_size > 1000
    markdown = (out / "report.md").read_text()
    assert "| x264 420 ROI q-0.3 | crf=30 |" in markdown and "BD-rate against JPEG" in markdown


def test_eval_command_rejects_bad_specs(labelled_folder, tmp_path):
    images, _ = labelled_folder
    assert cli.main(["eval", str(images), "--codec", "jpeg2000", "--no-detector", "--quiet",
                     "--out", str(tmp_path / "r")]) == 2
    assert cli.main(["eval", str(images), "--codec", f"ours:{tmp_path / 'missing.pt'}", "--no-detector",
                     "--quiet", "--out", str(tmp_path / "r")]) == 2
    with pytest.raises(ValueError, match="given twice"):
        cli.build_codecs(["jpeg:q=50", "jpeg:q=50"], [0.5], [1.0])
    with pytest.raises(ValueError, match="unknown option"):
        cli.build_codecs(["x264:speed=3"], [0.5], [1.0])
    codecs = cli.build_codecs(["x264-roi:26,30:q=-0.4:bg=0.1", "webp:q=40"], [0.5], [1.0])
    assert [c.label for c in codecs] == ["x264 420 ROI q-0.4/bg+0.1 crf=26", "x264 420 ROI q-0.4/bg+0.1 crf=30",
                                         "WebP q=40"]
    assert isinstance(codecs[0], VideoIntraCodec) and codecs[0].bg_qoffset == 0.1


def test_detector_adapter_contract_through_the_runner(random_codec):
    """An untrained YOLO (random init) exercises the real adapter types: features reach our codec."""
    from roi_codec_ros.detector import DetectorAdapter
    from roi_codec_ros.evaluation.ours import OursCodec

    detector = DetectorAdapter.random_init("yolov8n.yaml", imgsz=128)
    source = RoiSource("detector", detector=detector)
    context = source(Frame(name="0", image=scene(0)))
    assert [tuple(f.shape[:2]) for f in context.features] == [(1, 64), (1, 128), (1, 256)]
    assert context.boxes.shape[1] == 4
    records = evaluate([Frame(name="0", image=scene(0))], [OursCodec(random_codec, 0.5)], roi_source=source,
                       task_metric=True, with_msssim=False, progress=False)
    assert records[0].num_bytes > 0 and records[0].task_tp is not None


def test_real_detector_on_bus_image(detector_weights, tmp_path):
    """With the real YOLOv8n weights: ROI boxes come from people/bus, and JPEG q=90 keeps them detectable."""
    import ultralytics

    from roi_codec_ros.detector import DetectorAdapter

    bus = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    frame = next(iter_folder_frames(bus.parent, max_frames=1))
    assert frame.name == "bus.jpg"
    source = RoiSource("detector", detector=DetectorAdapter.from_weights(detector_weights))
    records = evaluate([frame], [JpegCodec(90)], roi_source=source, task_metric=True, progress=False)
    row = summarize(records)[0]
    assert 0.2 < row["roi_fraction"] < 0.9
    assert row["task_recall"] >= 0.75 and row["task_precision"] >= 0.75


def test_anchor_by_prefix_and_an_unknown_anchor_falls_back(caplog):
    from roi_codec_ros.cli.evaluate import _anchor

    names = ["ours[default] α=1", "x264 420", "JPEG"]
    assert _anchor(None, names) == "JPEG" and _anchor("x264 420", names) == "x264 420"
    assert _anchor("x264", names) == "x264 420"  # the only family it starts
    assert _anchor("x265", names) == "JPEG" and "not one of the evaluated families" in caplog.text
    assert _anchor("ours", ["ours[a] α=1", "ours[b] α=1"]) == "ours[a] α=1"  # ambiguous: the default (first)
