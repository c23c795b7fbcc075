"""``roi-codec detect``: overlays + detections.json from images or folders."""
import json

import numpy as np
import pytest
from PIL import Image

from roi_codec_ros.cli.detect import main


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (375, 1242, 3), dtype=np.uint8)).save(folder / "kitti_like.png")
    Image.fromarray(rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)).save(folder / "small.jpg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_random_init_run_writes_overlays_and_json(images, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["detect", str(images), "--random-init", "yolov8n.yaml", "--out", str(out), "--device", "cpu",
               "--static-box-rel", "0.25,0.5,0.75,1.0", "--soft-edge", "4", "--max-side", "621"])
    assert rc == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["kitti_like.png", "small.png"]
    with Image.open(out / "kitti_like.png") as im:
        assert im.size == (621, 188)  # downscaled to --max-side
        pic = np.asarray(im.convert("RGB")).astype(int)
    with Image.open(out / "small.png") as im:
        assert im.size == (200, 120)  # already small: kept
    with Image.open(images / "kitti_like.png") as im:
        src = np.asarray(im.convert("RGB").resize((621, 188))).astype(int)
    # the static ROI (lower middle) keeps the frame's brightness, the rest is darkened
    inside = pic[150:180, 200:400].mean() / src[150:180, 200:400].mean()
    outside = pic[10:75, 10:125].mean() / src[10:75, 10:125].mean()
    assert inside > 0.8 and outside < 0.6
    summary = json.loads((out / "detections.json").read_text())
    assert summary["detector"].startswith("random-init")
    assert [r["width"] for r in summary["images"]] == [1242, 200]
    assert 0.2 < summary["images"][0]["roi_fraction"] < 0.4  # 0.5 x 0.5 of the frame plus a soft edge
    assert "untrained" in capsys.readouterr().err


def test_missing_weights_and_bad_arguments_exit_2(images, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ROI_CODEC_DETECTOR_WEIGHTS", raising=False)
    assert main(["detect", str(images), "--weights", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Detector weights not found" in err and "--weights" in err
    assert main(["detect", str(images), "--out", str(tmp_path / "o")]) == 2  # no --weights, no variable
    assert "ROI_CODEC_DETECTOR_WEIGHTS is not set" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main(["detect", str(tmp_path / "missing_dir"), "--random-init", "yolov8n.yaml", "--out", str(tmp_path)]) == 2
    assert "no such image" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["detect", str(empty), "--random-init", "yolov8n.yaml", "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        main(["detect", str(images), "--out", str(tmp_path), "--static-box", "1,2,3"])


def test_real_weights_overlay_of_bus(tmp_path, detector_weights):
    from ultralytics.utils import ASSETS

    out = tmp_path / "out"
    assert main(["detect", str(ASSETS / "bus.jpg"), "--weights", str(detector_weights), "--out", str(out)]) == 0
    summary = json.loads((out / "detections.json").read_text())
    names = [d["name"] for d in summary["images"][0]["detections"]]
    assert "bus" in names and "person" in names
    assert summary["weights_sha256"] and len(summary["weights_sha256"]) == 64
    assert (out / "bus.png").stat().st_size > 0
