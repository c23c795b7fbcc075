"""``roi-codec encode | decode | info | demo`` on a generated PNG with the untrained test model (``--model random``);
outputs written whole or not at all; model files that are not model files; a detector other than the trained one."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roi_codec_ros.cli.codec import CliError, main, read_boxes_file, sample_rois
from roi_codec_ros.codec import bitstream as bs

RANDOM = ["--model", "random", "--threads", "1"]
REPO = Path(__file__).resolve().parents[1]


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


def test_encode_with_a_latent_gain_writes_a_version_2_frame(png, tmp_path, capsys):
    rcb, plain = tmp_path / "gain.rcb", tmp_path / "plain.rcb"
    assert main(["encode", str(png), str(plain), "--rate", "0.7", "--boxes", "20,10,100,60", *RANDOM]) == 0
    assert main(["encode", str(png), str(rcb), "--rate", "0.7", "--boxes", "20,10,100,60", "--roi-gain", "4", *RANDOM]) == 0
    assert "latent gain 4" in capsys.readouterr().out
    assert rcb.read_bytes()[3] == 2 and plain.read_bytes()[3] == 1 and rcb.stat().st_size > plain.stat().st_size
    assert main(["info", str(rcb), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format_version"] == 2 and info["latent_gain"]["top_gain"] == 4.0 and info["latent_gain"]["levels"] == 4
    assert sum(info["latent_gain"]["cells_per_level"]) == 8 * 8
    assert main(["info", str(rcb)]) == 0
    assert "latent gain  up to 4" in capsys.readouterr().out
    assert main(["decode", str(rcb), str(tmp_path / "out.png"), *RANDOM]) == 0
    assert main(["encode", str(png), str(rcb), "--boxes", "20,10,100,60", "--roi-gain", "9", *RANDOM]) == 1
    assert "gain must be in [1, 8]" in capsys.readouterr().err


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


def test_class_weights_option_reaches_the_roi_config_and_bad_text_is_one_line(png, tmp_path, capsys):
    import argparse

    from roi_codec_ros.cli.common import add_roi_args, roi_config

    parser = argparse.ArgumentParser()
    add_roi_args(parser)
    assert roi_config(parser.parse_args([])).class_weights == ()
    config = roi_config(parser.parse_args(["--class-weights", "traffic light=1.0, person=1,car=0.5"]))
    assert config.class_weights == (("car", 0.5), ("person", 1.0), ("traffic light", 1.0))
    with pytest.raises(CliError, match="class weight 'car'"):
        roi_config(parser.parse_args(["--class-weights", "car"]))
    assert main(["encode", str(png), str(tmp_path / "o.rcb"), "--class-weights", "car=7", *RANDOM]) == 1
    assert "in [0, 1]" in capsys.readouterr().err and not (tmp_path / "o.rcb").exists()


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


def test_demo_compares_roi_weights_with_the_shipped_boxes(tmp_path, capsys, monkeypatch):
    """Without detector weights the demo takes the hand-placed boxes: roi weight 1 vs high, bytes and region PSNR."""
    pytest.importorskip("ultralytics")
    monkeypatch.delenv("ROI_CODEC_DETECTOR_WEIGHTS", raising=False)
    assert main(["demo", "--rates", "0.5", "--roi-weight", "8", "--out", str(tmp_path), *RANDOM]) == 0
    printed = capsys.readouterr().out
    assert "hand-placed boxes" in printed and "roi weight 8" in printed
    for name, size in (("bus.jpg", "810x1080"), ("zidane.jpg", "1280x720")):
        line = next(line for line in printed.splitlines() if line.startswith(name))
        fields = line.replace("|", " ").split()
        # image size ROI% | rate bytes ROI bg | rate bytes ROI bg | bytes% dROI dbg
        assert fields[1] == size and 30 < float(fields[2]) < 80  # the people (and the bus) are ROI
        rate1, bytes1, roi1, bg1, rate8, bytes8, roi8, bg8 = fields[3:11]
        assert float(rate1) == float(rate8) == 0.5 and int(bytes1) > 0 and int(bytes8) > 0
        assert 0 < float(roi1) < 100 and 0 < float(bg1) < 100 and 0 < float(roi8) < 100 and 0 < float(bg8) < 100
        assert float(fields[12]) == pytest.approx(float(roi8) - float(roi1), abs=0.011)
        overlay = tmp_path / f"{Path(name).stem}_rate0.50_roi.png"
        assert str(overlay) in printed
        with Image.open(overlay) as im:
            assert im.height > 540 and im.width > 3 * 540 * int(size.split("x")[0]) // int(size.split("x")[1]) - 3


def test_demo_rejects_a_weight_that_compares_nothing(capsys):
    pytest.importorskip("ultralytics")
    assert main(["demo", "--roi-weight", "1", *RANDOM]) == 1
    assert "--roi-weight" in capsys.readouterr().err


def test_shipped_demo_boxes_fit_the_bundled_images():
    ultralytics = pytest.importorskip("ultralytics")
    from ultralytics.utils import ASSETS

    from roi_codec_ros.detector import RoiMaskConfig, select_roi

    rois = sample_rois()
    assert set(rois) == {"bus.jpg", "zidane.jpg"}
    for name, ((width, height), detections) in rois.items():
        with Image.open(Path(ASSETS) / name) as im:
            assert im.size == (width, height), ultralytics.__version__
        assert len(detections) >= 3
        assert (detections.boxes[:, [0, 2]] <= width).all() and (detections.boxes[:, [1, 3]] <= height).all()
        # every box is an object the default ROI classes keep
        assert len(select_roi(detections, (height, width), RoiMaskConfig()).detections) == len(detections)
    assert "bus" in [rois["bus.jpg"][1].label(i) for i in range(len(rois["bus.jpg"][1]))]


def test_encode_with_detector_features_and_boxes(tmp_path, capsys, detector_weights):
    ultralytics = pytest.importorskip("ultralytics")
    bus = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    rcb = tmp_path / "bus.rcb"
    assert main(["encode", str(bus), str(rcb), "--detector", str(detector_weights), "--roi-weight", "8", *RANDOM]) == 0
    assert "ROI" in capsys.readouterr().out
    header, _ = bs.unpack_frame(rcb.read_bytes())
    assert header.has_features and header.has_roi
    assert main(["decode", str(rcb), str(tmp_path / "bus.png"), *RANDOM]) == 0


# --- outputs are whole or absent ------------------------------------------------------------------------------


def _full_disk_after(monkeypatch, what: str, allowed: int) -> list[Path]:
    """Make writes of ``what`` (``"bytes"``: raw file writes, ``"image"``: Pillow saves) stop with ENOSPC after
    ``allowed`` bytes, as a full disk does; returns the list of paths that were written to."""
    import errno

    from roi_codec_ros import files

    touched: list[Path] = []

    def full(path, data: bytes) -> None:
        touched.append(Path(path))
        with open(path, "wb") as f:
            f.write(data[:allowed])
        raise OSError(errno.ENOSPC, "No space left on device")

    if what == "bytes":
        real_open = open

        class Writer:
            def __init__(self, path):
                self.path = path

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def write(self, data):
                full(self.path, bytes(data))

        monkeypatch.setattr(files, "open", lambda path, mode="r", *a, **k: Writer(path) if "w" in mode
                            else real_open(path, mode, *a, **k), raising=False)
    else:
        import io

        real_save = Image.Image.save

        def save(self, fp, format=None, **params):
            buffer = io.BytesIO()
            real_save(self, buffer, format=format or Image.registered_extensions()[Path(fp).suffix.lower()], **params)
            full(fp, buffer.getvalue())

        monkeypatch.setattr(Image.Image, "save", save)
    return touched


def test_full_disk_leaves_no_partial_rcb_and_keeps_the_old_one(png, tmp_path, capsys, monkeypatch):
    rcb = tmp_path / "out.rcb"
    rcb.write_bytes(b"the previous encode")
    touched = _full_disk_after(monkeypatch, "bytes", allowed=50)
    assert main(["encode", str(png), str(rcb), *RANDOM]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and str(rcb) in err
    assert touched and all(p.parent == tmp_path and p != rcb for p in touched)  # wrote a temporary file beside it
    assert rcb.read_bytes() == b"the previous encode"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.rcb"]  # the partial temporary file is gone


def test_full_disk_leaves_no_partial_png(png, tmp_path, capsys, monkeypatch):
    rcb, out = tmp_path / "out.rcb", tmp_path / "decoded.png"
    assert main(["encode", str(png), str(rcb), *RANDOM]) == 0
    touched = _full_disk_after(monkeypatch, "image", allowed=64)
    assert main(["decode", str(rcb), str(out), *RANDOM]) == 1
    assert "cannot write" in capsys.readouterr().err
    assert touched and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.rcb"]


def test_file_size_limit_in_a_real_process_leaves_nothing_partial(png, tmp_path):
    """No monkeypatching: RLIMIT_FSIZE makes the kernel refuse writes beyond a size (EFBIG), like a full disk."""
    import subprocess
    import sys

    rcb, out = tmp_path / "out.rcb", tmp_path / "out.png"
    script = f"""
import json, resource, signal, sys
from roi_codec_ros.cli import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
codes = {{}}
resource.setrlimit(resource.RLIMIT_FSIZE, (100, hard))
codes["encode_limited"] = main(["encode", {str(png)!r}, {str(rcb)!r}, "--model", "random", "--threads", "1"])
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
codes["encode"] = main(["encode", {str(png)!r}, {str(rcb)!r}, "--model", "random", "--threads", "1"])
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))
codes["decode_limited"] = main(["decode", {str(rcb)!r}, {str(out)!r}, "--model", "random", "--threads", "1"])
print(json.dumps(codes))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    codes = json.loads(result.stdout.strip().splitlines()[-1])
    assert codes == {"encode_limited": 1, "encode": 0, "decode_limited": 1}
    assert result.stderr.count("File too large") == 2
    assert rcb.stat().st_size > 100 and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.rcb"]


# --- files that are not model files ---------------------------------------------------------------------------


def _assert_one_line_refusal(capsys, args, *expected):
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


def test_files_that_are_not_model_files_get_one_line(png, tmp_path, capsys):
    import argparse
    import random

    import torch

    rcb = tmp_path / "in.rcb"
    assert main(["encode", str(png), str(rcb), *RANDOM]) == 0
    decode = ["decode", str(rcb), str(tmp_path / "x.png"), "--threads", "1", "--model"]
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_one_line_refusal(capsys, decode + [str(junk)], "not a roi_codec model file")
    obj = tmp_path / "object.pt"
    torch.save(argparse.Namespace(weights=[1, 2, 3]), obj)  # an arbitrary pickled object
    _assert_one_line_refusal(capsys, decode + [str(obj)], "not a roi_codec model file")
    tensors = tmp_path / "tensors.pt"
    torch.save({"conv.weight": torch.zeros(3)}, tensors)
    _assert_one_line_refusal(capsys, decode + [str(tensors)], "not a roi_codec model file", "roi-codec train --export")
    ckpt = tmp_path / "last.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "optimizer": {"state": {}}, "step": 7, "config": {},
                "python_rng": random.Random(0).getstate(), "torch_rng": torch.get_rng_state()}, ckpt)
    _assert_one_line_refusal(capsys, decode + [str(ckpt)], "training checkpoint", "roi-codec train --export")
    assert not (tmp_path / "x.png").exists()


# --- a detector other than the one the model was trained with --------------------------------------------------


@pytest.fixture(scope="module")
def vehicle_detector(tmp_path_factory) -> Path:
    """An ultralytics checkpoint of an untrained yolov8n (the shapes of the real one, other weights)."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("detector") / "vehicle.pt"
    torch.save({"model": DetectionModel("yolov8n.yaml", nc=80, verbose=False).eval(), "train_args": {}}, path)
    return path


def _model_trained_with(path: Path, sha256: str) -> Path:
    from roi_codec_ros.codec import RoiCodec, export_model

    codec = RoiCodec.random(seed=0)
    return export_model(codec.model.cpu(), path, detector={"sha256": sha256, "name": "trained_with.pt"})


def test_other_detector_warns_and_fails_when_strict(png, tmp_path, capsys, vehicle_detector):
    from roi_codec_ros.files import file_sha256

    foreign = _model_trained_with(tmp_path / "foreign.pt", "ab" * 32)
    rcb = tmp_path / "out.rcb"
    args = ["encode", str(png), str(rcb), "--detector", str(vehicle_detector), "--model", str(foreign), "--threads", "1"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "sha256:abababababab" in err and "trained_with.pt" in err and "--strict-detector" in err
    assert bs.unpack_frame(rcb.read_bytes())[0].has_features
    rcb.unlink()
    assert main(args + ["--strict-detector"]) == 1
    assert "sha256:abababababab" in capsys.readouterr().err and not rcb.exists()
    own = _model_trained_with(tmp_path / "own.pt", file_sha256(vehicle_detector))
    assert main(args[:-4] + ["--model", str(own), "--threads", "1", "--strict-detector"]) == 0
    assert "warning" not in capsys.readouterr().err
