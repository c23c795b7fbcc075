"""``roi-codec encode-stream SRC --out REPORT.json``: one stream of generated frames with the shipped model on the CPU,
decoded loss-free and with every 4th message dropped; ``--intra``; ``--boxes-json``; bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roi_codec_ros.cli import main as roi_codec

H, W, N = 128, 192, 8
# ROI boxes by file name and by index: the same box on frames 0-2 and another on 6-7, none on 3-5 (frame 3 is a
# keyframe, so the mask changes only at keyframes and no P-frame turns into an I-frame at a scene cut)
BOX_A, BOX_B = [20, 36, 80, 96], [100, 30, 160, 90]
BOXES = {"0000.png": [BOX_A], "1": [BOX_A], "0002.png": [BOX_A], "6": [BOX_B], "0007.png": [BOX_B]}
FRAME_KEYS = {0: "0000.png", 1: "1", 2: "0002.png", 6: "6", 7: "0007.png"}
BASE = ["--threads", "1", "--quiet"]
KEYINT = ["--keyframe-interval", "3"]
pytestmark = pytest.mark.usefixtures("restore_torch_threads")  # --threads 1


def frame(i: int) -> np.ndarray:
    """A still scene (smooth shading, fine texture) with a bright textured blob moving 5 px a frame."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    planes = [110 + 50 * np.sin(2 * np.pi * xx / p) * np.cos(2 * np.pi * yy / q) + 20 * np.sin(2 * np.pi * (xx + 2 * yy) / 11)
              for p, q in ((61, 47), (53, 71), (83, 37))]
    img = np.stack(planes, -1)
    cx, cy = 40 + 5 * i, 60 + 2 * i
    blob = 150 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 120) + 25 * np.sin(2 * np.pi * xx / 5)
    inside = (np.abs(xx - cx) < 20) & (np.abs(yy - cy) < 20)
    img[inside] = 40 + blob[inside][:, None] * np.array([1.0, 0.8, 0.5])
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("frames")
    for i in range(N):
        Image.fromarray(frame(i)).save(d / f"{i:04d}.png")
    (d.parent / "boxes.json").write_text(json.dumps(BOXES))
    return d


def run(folder: Path, out: Path, *args: str) -> dict:
    assert roi_codec(["encode-stream", str(folder), *BASE, *args, "--out", str(out)]) == 0
    return json.loads((out if out.suffix == ".json" else out / "report.json").read_text())


@pytest.fixture(scope="module")
def lossy(folder, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("lossy") / "sub" / "report.json"  # a report file in a folder yet to be made
    return run(folder, out, *KEYINT, "--drop-every", "4", "--boxes-json", str(folder.parent / "boxes.json"))


def test_report_fields_and_totals(lossy):
    s, frames = lossy["summary"], lossy["frames"]
    assert lossy["engine"]["engine"] == "neural" and lossy["rate_control"] is None
    assert lossy["settings"]["keyframe_interval"] == 3 and lossy["settings"]["drop_every"] == 4
    assert lossy["settings"]["rate"] == 0.5 and lossy["settings"]["roi_weight"] == 8.0
    assert [f["index"] for f in frames] == list(range(N)) and [f["name"] for f in frames] == [f"{i:04d}.png" for i in range(N)]
    for f in frames:
        for key in ("bytes", "keyframe", "rate", "roi_weight", "psnr", "psnr_roi", "psnr_bg", "encode_ms", "decode_ms",
                    "dropped", "outcome", "output", "delta_psnr", "identical"):
            assert key in f, key
        assert f["rate"] == pytest.approx(0.5, abs=1e-4) and f["roi_weight"] == pytest.approx(8.0, rel=1e-3)
        assert f["reason"] == "off"  # fixed rate: no rate control
        assert f["bytes"] > 0 and f["bpp"] == pytest.approx(8 * f["bytes"] / (H * W))
        assert f["encode_ms"] > 0 and f["decode_ms"] > 0 and 15 < f["psnr"] < 60
    assert frames[0]["keyframe"] and frames[3]["keyframe"] and frames[6]["keyframe"]
    assert sum(not f["keyframe"] for f in frames) >= 3, "the still scene should give P-frames"
    assert s["frames"] == s["coded"] == N and s["skipped"] == 0
    assert s["keyframes"] == sum(f["keyframe"] for f in frames) and s["p_frames"] == N - s["keyframes"]
    assert s["total_bytes"] == sum(f["bytes"] for f in frames)
    assert s["mean_bpp"] == pytest.approx(np.mean([f["bpp"] for f in frames]))
    assert s["mean_kbps"] == pytest.approx(8 * s["total_bytes"] / (N / 10.0) / 1000)  # --fps 10 (default)
    assert s["mean_psnr"] == pytest.approx(np.mean([f["psnr"] for f in frames]))
    for kind, pick in (("i", True), ("p", False)):
        assert s[f"mean_encode_ms_{kind}"] == pytest.approx(np.mean([f["encode_ms"] for f in frames if f["keyframe"] == pick]))
        assert s[f"mean_decode_ms_{kind}"] == pytest.approx(np.mean([f["decode_ms"] for f in frames if f["keyframe"] == pick]))


def test_drops_are_counted_never_output_and_output_equals_the_loss_free_decode(lossy):
    s, frames = lossy["summary"], lossy["frames"]
    assert [f["index"] for f in frames if f["dropped"]] == [3, 7]  # messages 4 and 8 (1-based)
    # what the lossy decoder must do: nothing from a drop until the next keyframe
    expected, waiting = [], False
    for f in frames:
        waiting = f["dropped"] or (waiting and not f["keyframe"])
        expected.append("dropped" if f["dropped"] else "no_reference" if waiting else "decoded")
    assert [f["outcome"] for f in frames] == expected
    assert "no_reference" in expected, "the test should lose a P-frame's reference"
    first = next(f for f in frames if f["outcome"] == "no_reference")
    assert "needs frame" in first["error"]  # the codec's MissingReferenceError, from the bitstream alone
    output = [f for f in frames if f["output"]]
    assert all(f["outcome"] == "decoded" for f in output) and not any(f["output"] for f in frames if f["outcome"] != "decoded")
    assert all(f["identical"] is True and f["delta_psnr"] == 0.0 for f in output)  # bit-exact to the loss-free decode
    assert (s["dropped"], s["not_decoded"], s["decoded"]) == (2, expected.count("no_reference"), len(output))
    assert s["dropped"] + s["not_decoded"] + s["decoded"] == N
    assert s["max_abs_delta_psnr"] == 0.0 and s["identical_to_loss_free"] == len(output) and s["loss_free_failures"] == 0
    first_output_after_3 = next(f["index"] for f in frames[4:] if f["output"])
    assert s["recovery"][0] == {"frame": 3, "first_output": first_output_after_3, "frames": first_output_after_3 - 3,
                                "frames_to_end": N - 3, "lost_again": None}
    assert s["recovery"][1]["frame"] == 7 and s["recovery"][1]["frames"] is None and s["unrecovered_at_end"] == 1
    assert s["max_recovery_frames"] <= 3 and s["recovered_within_keyframe_interval"] is True
    assert s["longest_outage_frames"] == first_output_after_3 - 3


def test_recovery_after_a_dropped_keyframe_counts_from_that_drop():
    from roi_codec_ros.cli.stream_report import recoveries, stream_summary

    # keyframes every 4 frames; frame 2 (P) dropped, then the keyframe 4 that would have ended the outage, then P 6
    kinds = "IPdPdPdPIP"  # I / P received, d dropped
    records = [{"index": i, "t": i / 10, "bytes": 100, "bpp": 1.0, "skip": False, "keyframe": i % 4 == 0,
                "dropped": k == "d", "output": k != "d" and i not in (3, 5, 7), "psnr": 30.0, "psnr_roi": None,
                "psnr_bg": 30.0, "roi_fraction": 0.0, "encode_ms": 1.0, "decode_ms": 1.0,
                "delta_psnr": 0.0 if k != "d" and i not in (3, 5, 7) else None, "identical": True}
               for i, k in enumerate(kinds)]
    got = recoveries(records)
    assert [(d["frame"], d["frames"], d["lost_again"]) for d in got] == [(2, 6, 4), (4, 4, None), (6, 2, None)]
    s = stream_summary(records, keyframe_interval=4, fps=10, drop_every=2)
    assert s["max_recovery_frames"] == 4 and s["recovered_within_keyframe_interval"] is True
    assert s["longest_outage_frames"] == 6 and (s["dropped"], s["not_decoded"], s["decoded"]) == (3, 3, 4)
    assert stream_summary(records, keyframe_interval=3, fps=10, drop_every=2)["recovered_within_keyframe_interval"] is False


def test_boxes_json_boxes_are_the_roi_of_their_frames(lossy):
    from roi_codec_ros.evaluation.metrics import boxes_to_mask

    for f in lossy["frames"]:
        key = FRAME_KEYS.get(f["index"])
        if key is None:
            assert f["boxes"] == 0 and f["roi_fraction"] == 0 and f["psnr_roi"] is None and f["psnr_bg"] == f["psnr"]
            continue
        fraction = boxes_to_mask(np.array(BOXES[key], float), (H, W)).mean()
        assert f["boxes"] == 1 and f["roi_fraction"] == pytest.approx(fraction)
        # the whole frame's squared error is the ROI's and the background's, weighted by their pixels
        mse = {k: 255.0 ** 2 / 10 ** (f[k] / 10) for k in ("psnr", "psnr_roi", "psnr_bg")}
        assert mse["psnr"] == pytest.approx(fraction * mse["psnr_roi"] + (1 - fraction) * mse["psnr_bg"], rel=1e-6)
    assert lossy["summary"]["frames_with_roi"] == len(FRAME_KEYS)


def test_intra_codes_every_frame_as_a_keyframe(folder, lossy, tmp_path):
    out = tmp_path / "intra"  # a folder: report.json and frames.csv (no summary.json without a target)
    report = run(folder, out, "--intra", "--drop-every", "4", "--boxes-json", str(folder.parent / "boxes.json"))
    assert sorted(p.name for p in out.iterdir()) == ["frames.csv", "report.json"]
    frames, s = report["frames"], report["summary"]
    assert all(f["keyframe"] for f in frames) and s["keyframes"] == N and s["p_frames"] == 0
    assert report["settings"]["intra"] and report["settings"]["keyframe_interval"] == 1
    assert s["not_decoded"] == 0 and [d["frames"] for d in s["recovery"]] == [1, None]
    # a P-frame decodes to the very picture of the intra frame: the same PSNR at every frame, fewer bytes in all
    assert [f["psnr"] for f in frames] == pytest.approx([f["psnr"] for f in lossy["frames"]], abs=1e-9)
    assert s["total_bytes"] > lossy["summary"]["total_bytes"]


def test_keyframe_roi_weight_codes_the_keyframes_uniformly(folder, tmp_path):
    report = run(folder, tmp_path / "hq.json", "--model", "random", *KEYINT, "--max-frames", "4", "--roi-weight", "2",
                 "--keyframe-roi-weight", "1", "--boxes-json", str(folder.parent / "boxes.json"))
    assert report["settings"]["keyframe_roi_weight"] == 1.0
    assert [(f["keyframe"], f["roi_weight"]) for f in report["frames"]] == [(True, 1.0), (False, 2.0), (False, 2.0),
                                                                            (True, 1.0)]


def test_a_target_adds_rate_control(folder, tmp_path):
    report = run(folder, tmp_path / "rc.json", "--model", "random", "--target-kbps", "80", "--max-frames", "4")
    rc, frames = report["rate_control"], report["frames"]
    assert rc["schedule"] == report["settings"]["target"] == "0:80" and report["settings"]["rate"] is None
    assert rc["frames"] == 4 and len(frames) == 4 and all(f["target"] == 80 for f in frames)
    # a frame the controller skips is no message: nothing to decode, drop or output
    skipped = [f for f in frames if f["skip"]]
    assert rc["skipped"] == report["summary"]["skipped"] == len(skipped)
    assert all(f["outcome"] == "skipped" and f["bytes"] == 0 and f["psnr"] is None and not f["output"] for f in skipped)


def test_x264_gets_the_gap_from_the_sequence_and_never_outputs_a_wrong_picture(folder, tmp_path):
    from roi_codec_ros.engine import engine_status

    reason = engine_status(probe_hardware=False)["x264"]
    if reason:
        pytest.skip(f"x264 not usable here: {reason}")
    report = run(folder, tmp_path / "x264.json", *KEYINT, "--engine", "x264", "--drop-every", "4")
    frames, s = report["frames"], report["summary"]
    assert [f["outcome"] for f in frames] == ["decoded"] * 3 + ["dropped", "no_reference", "no_reference", "decoded",
                                                                "dropped"]
    assert s["max_abs_delta_psnr"] == 0.0 and s["identical_to_loss_free"] == s["decoded"] == 4


def test_bad_input(folder, tmp_path, capsys):
    bad = {"notjson.json": "{oops", "list.json": "[1, 2]", "short.json": '{"1": [[1, 2, 3]]}',
           "reversed.json": '{"1": [[50, 10, 20, 40]]}', "flat.json": '{"1": [1, 2, 3, 4]}'}
    messages = {"notjson.json": "not JSON", "list.json": "expected an object", "short.json": "expected a list",
                "reversed.json": "x2>=x1", "flat.json": "expected a list"}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        assert roi_codec(["encode-stream", str(folder), "--model", "random", "--boxes-json", str(tmp_path / name)]) == 1
        assert messages[name] in capsys.readouterr().err, name
    assert roi_codec(["encode-stream", str(folder), "--model", "random", "--boxes-json", str(tmp_path / "none.json")]) == 1
    assert "cannot read boxes file" in capsys.readouterr().err
    assert roi_codec(["encode-stream", str(tmp_path / "missing"), "--model", "random"]) == 1
    assert "input not found" in capsys.readouterr().err
    for args in (["--drop-every", "1"], ["--drop-every", "-2"], ["--intra", "--keyframe-interval", "5"], ["--plot"],
                 ["--drop-every", "x"]):
        with pytest.raises(SystemExit) as exc:
            roi_codec(["encode-stream", str(folder), "--model", "random", *args])
        assert exc.value.code == 2, args
    assert "--drop-every must be >= 2" in capsys.readouterr().err
