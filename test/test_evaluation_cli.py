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
    both = [r for r in report["bd"] if r.get("bd_rate_psnr_roi") is not None and r.get("bd_rate_psnr_bg") is not None]
    assert (out / "bd_roi_vs_bg.png").is_file() == bool(both)
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


def test_ours_specs_with_a_latent_gain_share_the_model_and_code_version_2_frames(labelled_folder, tmp_path):
    codecs = cli.build_codecs(["ours:random", "ours:random:gain=4"], [0.5], [8.0])
    assert [c.family for c in codecs] == ["ours α=8", "ours G=4 α=8"]
    assert codecs[0].codec is codecs[1].codec and [c.params()["roi_gain"] for c in codecs] == [1.0, 4.0]
    image = scene(0)
    boxes = [list(SQUARE)]
    plain, gained = (c.encode(image, boxes) for c in codecs)
    assert plain[3] == 1 and gained[3] == 2 and len(gained) > len(plain)
    assert codecs[1].decode(gained).shape == image.shape
    with pytest.raises(ValueError, match="gain"):
        cli.build_codecs(["ours:random:gain=9"], [0.5], [1.0])
    with pytest.raises(ValueError, match="gain must be a number"):
        cli.build_codecs(["ours:random:gain=x"], [0.5], [1.0])
    with pytest.raises(ValueError, match="given twice"):
        cli.build_codecs(["ours:random", "ours:random:gain=1"], [0.5], [1.0])
    assert cli._ours_options("ours:a:b=c.pt:gain=2", "a:b=c.pt:gain=2") == ("a:b=c.pt", 2.0)  # ':' and '=' in paths
    assert cli._ours_options("ours:gain=3", "gain=3") == ("default", 3.0)
    assert cli._ours_options("ours", "") == ("default", 1.0)
    out = tmp_path / "report"
    assert cli.main(["eval", str(labelled_folder[0]), "--labels", str(labelled_folder[1]), "--codec", "ours:random",
                     "--codec", "ours:random:gain=4", "--rates", "0.3,0.9", "--roi-weights", "8", "--no-detector",
                     "--no-msssim", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "report.json").read_text())["summary"]
    assert {r["family"] for r in summary} == {"ours α=8", "ours G=4 α=8"}


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
    assert _anchor("x264", names + ["x264 420 ROI q-0.3"]) == "x264 420"  # the shortest, which starts the others
    assert _anchor("x265", names) == "JPEG" and "not one of the evaluated families" in caplog.text
    assert _anchor("ours", ["ours[a] α=1", "ours[b] α=1"]) == "ours[a] α=1"  # ambiguous: the default (first)


# -- per-class ROI PSNR and class weights ------------------------------------------------------------------------
LIGHT = (96, 10, 104, 34)  # x1, y1, x2, y2 of a small blue 'traffic light'


def two_class_scene(seed: int, light: bool) -> np.ndarray:
    image = scene(seed)
    if light:
        x1, y1, x2, y2 = LIGHT
        image[y1:y2, x1:x2] = (20, 30, 240)
    return image


class CarAndLightDetector(RedSquareDetector):
    """Red pixels = a car (id 2), blue pixels = a traffic light (id 9)."""

    names = {0: "person", 2: "car", 9: "traffic light"}

    def __call__(self, image):
        boxes, ids = [], []
        for class_id, colour in ((2, (image[..., 0] > 180) & (image[..., 1] < 90) & (image[..., 2] < 90)),
                                 (9, (image[..., 2] > 180) & (image[..., 0] < 90) & (image[..., 1] < 90))):
            if colour.sum() >= 50:
                ys, xs = np.nonzero(colour)
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                ids.append(class_id)
        dets = Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(ids, np.int64),
                          np.full(len(ids), 0.9, np.float32), self.names)

        class Result:
            features, detections = None, dets

        return Result()


def test_per_class_roi_psnr_per_frame_and_in_the_summary_and_report(tmp_path):
    from roi_codec_ros.evaluation.metrics import boxes_to_mask, psnr
    from roi_codec_ros.evaluation.report import write_report

    frames = [Frame(name=str(i), image=two_class_scene(i, light=i != 1)) for i in range(3)]
    records = evaluate(frames, [JpegCodec(30), GrayCodec()], roi_source=RoiSource("detector", detector=CarAndLightDetector()),
                       with_msssim=False, progress=False)
    m = 8  # the default margin: per-class PSNR is over the boxes the codec got
    car = boxes_to_mask(np.array([[SQUARE[0] - m, SQUARE[1] - m, SQUARE[2] + m, SQUARE[3] + m]]), (H, W))
    light = boxes_to_mask(np.array([[LIGHT[0] - m, LIGHT[1] - m, LIGHT[2] + m, LIGHT[3] + m]]), (H, W))
    decoded = JpegCodec(30).decode(JpegCodec(30).encode(frames[0].image))
    first = records[0]
    assert (first.family, set(first.psnr_class)) == ("JPEG", {"car", "traffic light"})
    assert first.psnr_class["car"] == pytest.approx(psnr(frames[0].image, decoded, car))
    assert first.psnr_class["traffic light"] == pytest.approx(psnr(frames[0].image, decoded, light))
    assert set(records[2].psnr_class) == {"car"}  # frame 1 (record 2, after the gray codec's): no light

    rows = {row["family"]: row for row in summarize(records)}
    jpeg = rows["JPEG"]
    assert jpeg["class_frames"] == {"car": 3, "traffic light": 2}
    by_frame = [r for r in records if r.family == "JPEG"]
    assert jpeg["psnr_class"]["traffic light"] == pytest.approx(np.mean([r.psnr_class["traffic light"] for r in by_frame
                                                                         if "traffic light" in r.psnr_class]))
    assert rows["gray"]["psnr_class"]["car"] < jpeg["psnr_class"]["car"]

    paths = write_report(tmp_path, {"title": "t"}, summarize(records), plots=False)
    report = json.loads(paths["report.json"].read_text())
    assert report["summary"][0]["class_frames"] == {"car": 3, "traffic light": 2}
    text = paths["report.md"].read_text()
    assert "## PSNR per ROI class" in text and "| codec | setting | car | traffic light |" in text
    assert f"| JPEG | q=30 | {jpeg['psnr_class']['car']:.2f} (3) | {jpeg['psnr_class']['traffic light']:.2f} (2) |" in text


def test_class_weights_reach_the_mask_our_codec_codes_with(random_codec):
    from roi_codec_ros.detector import RoiMaskConfig
    from roi_codec_ros.evaluation.ours import OursCodec

    frames = [Frame(name="0", image=two_class_scene(0, light=True))]

    def coded(class_weights):
        source = RoiSource("detector", detector=CarAndLightDetector(), roi_config=RoiMaskConfig(class_weights=class_weights))
        context = source(frames[0])
        (record,) = evaluate(frames, [OursCodec(random_codec, 0.5, 16.0)], roi_source=source, with_msssim=False,
                             progress=False)
        return context, record

    plain, plain_record = coded(())
    assert plain.roi_mask is None  # no weights: the boxes' union, as before
    weighted, weighted_record = coded({"car": 0.25})
    assert set(np.unique(weighted.roi_mask).tolist()) == {0.0, 0.25, 1.0}
    assert weighted.roi_mask[40, 50] == np.float32(0.25) and weighted.roi_mask[20, 100] == 1.0
    assert weighted_record.num_bytes < plain_record.num_bytes
    # the ROI metrics stay on the ROI boxes, whatever their weight
    assert weighted_record.roi_fraction == plain_record.roi_fraction


def test_eval_command_class_weights_options(labelled_folder, tmp_path, monkeypatch, capsys):
    images, labels = labelled_folder
    common = [str(images), "--codec", "jpeg:q=60", "--no-msssim", "--quiet", "--out", str(tmp_path / "r")]
    with pytest.raises(SystemExit, match="--class-weights needs the detector's ROI boxes"):
        cli.main(["eval", *common, "--labels", str(labels), "--no-detector", "--class-weights", "car=0.5"])
    monkeypatch.setattr(cli, "_detector", lambda args, required: CarAndLightDetector())
    assert cli.main(["eval", *common, "--roi", "detector", "--class-weights", "car=1.5"]) == 2
    assert "in [0, 1]" in capsys.readouterr().err
    assert cli.main(["eval", *common, "--roi", "detector", "--class-weights", "car=0.5,traffic light=1"]) == 0
    out = capsys.readouterr().out
    assert "## PSNR per ROI class" in out and "| car |" in out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert "class_weights=(('car', 0.5), ('traffic light', 1.0))" in report["meta"]["roi_config"]


def test_label_classes_give_per_class_psnr(tmp_path):
    from roi_codec_ros.evaluation.frames import read_labels

    path = tmp_path / "a.txt"
    path.write_text("traffic light 10 20 50 60\n0 0.5 0.5 0.25 0.5\n")
    boxes, classes = read_labels(path, (100, 200))
    assert classes == ["traffic light", "0"] and boxes.shape == (2, 4)
    frame = Frame(name="a", image=scene(0), boxes=np.array([SQUARE], float), box_classes=["car"])
    (record,) = evaluate([frame], [JpegCodec(60)], roi_source=RoiSource("frame"), with_msssim=False, progress=False)
    assert set(record.psnr_class) == {"car"} and record.psnr_class["car"] == pytest.approx(record.psnr_roi)


def test_roi_vs_background_plot_needs_both_bd_rates(tmp_path):
    from roi_codec_ros.evaluation.report import roi_bg_plot

    rows = [{"family": "a", "bd_rate_psnr_bg": 20.0, "bd_rate_psnr_roi": -30.0},
            {"family": "b", "bd_rate_psnr_bg": None, "bd_rate_psnr_roi": -10.0}]
    assert roi_bg_plot(rows[1:], "x264 420", tmp_path / "none.png", "t") is None and not (tmp_path / "none.png").exists()
    assert roi_bg_plot(rows, "x264 420", tmp_path / "p.png", "t").stat().st_size > 1000
