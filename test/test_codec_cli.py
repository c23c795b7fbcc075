"""``roi-codec encode | decode | info | demo`` on a generated PNG with the untrained test model (``--model random``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roi_codec_ros.codec import bitstream as bs
from roi_codec_ros.codec.cli import main, read_boxes_file, CliError

RANDOM = ["--model", "random", "--threads", "1"]
DETECTOR_WEIGHTS = Path("/work/shared/models/yolov8n_coco.pt")


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    image = np.zeros((75, 124, 3), np.uint8)
    image[..., 0] = np.arange(124, dtype=np.uint8)[None, :] * 2
    image[..., 1] = np.arange(75, dtype=np.uint8)[:, None] * 3
    image[20:50, 30:90] = rng.integers(0, 256, (30, 60, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("cli") / "in.png"
    Image.fromarray(image).save(path)
    return path


def test_encode_info_decode_round_trip(png, tmp_path, capsys):
    rcb, out = tmp_path / "out.rcb", tmp_path / "out.png"
    boxes = tmp_path / "boxes.txt"
    boxes.write_text("# x1 y1 x2 y2\n10 10 60 40\n\n70,20, 120,70  # a car\n")
    assert main(["encode", str(png), str(rcb), "--rate", "0.7", "--roi-weight", "8", "--boxes", "0,0,20,20",
                 "--boxes-file", str(boxes), *RANDOM]) == 0
    printed = capsys.readouterr().out
    assert "124x75" in printed and f"{rcb.stat().st_size} bytes" in printed and "ROI" in printed

    header, _ = bs.unpack_frame(rcb.read_bytes())
    assert (header.height, header.width) == (75, 124)
    assert header.has_roi and not header.has_features
    assert header.rate == pytest.approx(0.7, abs=1e-4)

    assert main(["info", str(rcb)]) == 0
    printed = capsys.readouterr().out
    assert "124x75" in printed and "ROI mask: yes" in printed and f"{rcb.stat().st_size} total" in printed
    assert main(["info", str(rcb), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["total_bytes"] == rcb.stat().st_size and info["had_roi_mask"] is True

    assert main(["decode", str(rcb), str(out), *RANDOM]) == 0
    decoded = np.asarray(Image.open(out))
    assert decoded.shape == (75, 124, 3) and decoded.dtype == np.uint8


def test_higher_rate_gives_more_bytes(png, tmp_path):
    sizes = []
    for rate in ("0.1", "0.9"):
        rcb = tmp_path / f"r{rate}.rcb"
        assert main(["encode", str(png), str(rcb), "--rate", rate, *RANDOM]) == 0
        assert not bs.unpack_frame(rcb.read_bytes())[0].has_roi  # no boxes -> no ROI mask
        sizes.append(rcb.stat().st_size)
    assert sizes[0] < sizes[1]


def test_decode_rejects_bad_files(png, tmp_path, capsys):
    assert main(["decode", str(png), str(tmp_path / "x.png"), *RANDOM]) == 1
    assert "not a roi_codec bitstream (bad magic)" in capsys.readouterr().err
    rcb = tmp_path / "out.rcb"
    assert main(["encode", str(png), str(rcb), *RANDOM]) == 0
    truncated = tmp_path / "truncated.rcb"
    truncated.write_bytes(rcb.read_bytes()[:-10])
    assert main(["decode", str(truncated), str(tmp_path / "x.png"), *RANDOM]) == 1
    assert "truncated" in capsys.readouterr().err
    assert main(["info", str(truncated)]) == 1
    assert "truncated" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_missing_files_and_bad_values_exit_1(png, tmp_path, capsys):
    assert main(["encode", str(tmp_path / "nope.png"), str(tmp_path / "o.rcb"), *RANDOM]) == 1
    assert "cannot read image" in capsys.readouterr().err
    assert main(["encode", str(png), str(tmp_path / "o.rcb"), "--rate", "1.5", *RANDOM]) == 1
    assert "rate must be in [0, 1]" in capsys.readouterr().err
    assert main(["encode", str(png), str(tmp_path / "o.rcb"), "--roi-weight", "0.5", *RANDOM]) == 1
    assert "roi_weight" in capsys.readouterr().err
    assert main(["encode", str(png), str(tmp_path / "o.rcb"), "--model", str(tmp_path / "none.pt")]) == 1
    assert "cannot load model" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "none.rcb")]) == 1
    assert not (tmp_path / "o.rcb").exists()


def test_bad_boxes(png, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["encode", str(png), str(tmp_path / "o.rcb"), "--boxes", "1,2,3", *RANDOM])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["encode", str(png), str(tmp_path / "o.rcb"), "--boxes", "50,0,10,10", *RANDOM])  # x2 < x1
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3 4\n5 6 seven 8\n")
    with pytest.raises(CliError, match=r"bad.txt:2"):
        read_boxes_file(str(bad))
    assert main(["encode", str(png), str(tmp_path / "o.rcb"), "--boxes-file", str(bad), *RANDOM]) == 1


def test_demo_runs_on_bundled_images(tmp_path, capsys):
    pytest.importorskip("ultralytics")
    assert main(["demo", "--rates", "0.5", "--out", str(tmp_path), *RANDOM]) == 0
    printed = capsys.readouterr().out
    for name, size in (("bus.jpg", "810x1080"), ("zidane.jpg", "1280x720")):
        line = next(line for line in printed.splitlines() if line.startswith(name))
        fields = line.split()
        assert fields[1] == size
        assert int(fields[3]) > 0 and 0 < float(fields[5]) < 100  # bytes, PSNR
        assert (tmp_path / f"{Path(name).stem}_rate0.50.png").is_file()


@pytest.mark.skipif(not DETECTOR_WEIGHTS.is_file(), reason="needs /work/shared/models/yolov8n_coco.pt")
def test_encode_with_detector_features_and_boxes(tmp_path, capsys):
    ultralytics = pytest.importorskip("ultralytics")
    bus = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    rcb = tmp_path / "bus.rcb"
    assert main(["encode", str(bus), str(rcb), "--detector", str(DETECTOR_WEIGHTS), "--roi-weight", "8", *RANDOM]) == 0
    assert "ROI" in capsys.readouterr().out
    header, _ = bs.unpack_frame(rcb.read_bytes())
    assert header.has_features and header.has_roi
    assert main(["decode", str(rcb), str(tmp_path / "bus.png"), *RANDOM]) == 0
