"""Training pipeline: data loading (KITTI, folders), crops/masks, end-to-end tiny runs, resume, DDP, export."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
import random
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import torch
import yaml

from roi_codec_ros.codec import RoiCodec
from roi_codec_ros.codec.model import ModelConfig, build_model
from roi_codec_ros.detector.roi_mask import rasterise_boxes
from roi_codec_ros.training.config import TrainConfig
from roi_codec_ros.training.data import (
    Sample,
    kitti_samples,
    make_example,
    read_kitti_labels,
    sample_crop,
    split_train_val,
)
from roi_codec_ros.training.trainer import warm_start


REPO = Path(__file__).resolve().parents[1]


def _write_images(folder: Path, n: int, size=(96, 130)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")


def _tiny_config(tmp_path: Path, **overrides) -> dict:
    data = yaml.safe_load((REPO / "configs" / "tiny_test.yaml").read_text())
    data["sources"] = [{"path": str(tmp_path / "images")}]
    data["out_dir"] = str(tmp_path / "run")
    data.update(overrides)
    return data


def test_kitti_labels_and_samples(tmp_path):
    (tmp_path / "image_2").mkdir()
    (tmp_path / "label_2").mkdir()
    Image.fromarray(np.zeros((40, 120, 3), np.uint8)).save(tmp_path / "image_2" / "000001.png")
    (tmp_path / "label_2" / "000001.txt").write_text(
        "Car 0.00 0 -1.5 10.0 5.0 50.0 30.0 1 1 1 1 1 1 0\n"
        "DontCare -1 -1 -10 60.0 5.0 70.0 15.0 -1 -1 -1 -1 -1 -1 -10\n"
        "Pedestrian 0.00 0 0.1 80.0 2.0 90.0 38.0 1 1 1 1 1 1 0\n"
    )
    boxes = read_kitti_labels(tmp_path / "label_2" / "000001.txt")
    assert boxes.tolist() == [[10, 5, 50, 30], [80, 2, 90, 38]]  # DontCare ignored
    samples = kitti_samples(tmp_path)
    assert len(samples) == 1 and samples[0].image.shape == (40, 120, 3)
    (tmp_path / "label_2" / "bad.txt").write_text("Car 1 2\n")
    with pytest.raises(ValueError, match="KITTI"):
        read_kitti_labels(tmp_path / "label_2" / "bad.txt")


def test_split_is_deterministic():
    samples = [Sample(f"/x/{i}.png", np.zeros((1, 1, 3), np.uint8)) for i in range(200)]
    a = split_train_val(samples, 0.1, seed=3)
    b = split_train_val(list(reversed(samples)), 0.1, seed=3)
    assert sorted(s.path for s in a[1]) == sorted(s.path for s in b[1])
    assert 5 < len(a[1]) < 40


def test_crop_boxes_are_clipped_and_features_cropped():
    image = np.zeros((200, 300, 3), np.uint8)
    feats = [torch.ones(1, c, 200 // s + 1, 300 // s + 1).half() for c, s in zip((64, 128, 256), (8, 16, 32))]
    sample = Sample("a", image, np.array([[-20, 50, 120, 400]], np.float32), feats, "boxes")
    rng = random.Random(0)
    crop = sample_crop(200, 300, 128, "random", rng)
    crop.flip = False
    ex = make_example(sample, crop, "boxes", rng)
    assert ex["x"].shape == (3, 128, 128) and ex["mask"].shape == (1, 128, 128)
    expected = rasterise_boxes(sample.boxes - np.array([crop.x0, crop.y0, crop.x0, crop.y0]), 128, 128)
    assert np.array_equal(ex["mask"][0].numpy(), expected)
    assert [tuple(f.shape) for f in ex["features"]] == [(64, 16, 16), (128, 8, 8), (256, 4, 4)]
    square = sample_crop(200, 300, 128, "square", rng)
    assert square.x1 - square.x0 == 200  # the largest square, resized to 128
    assert make_example(sample, square, "synthetic", rng)["x"].shape == (3, 128, 128)


def test_config_rejects_unknown_keys_and_bad_crops():
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="multiples of 64"):
        TrainConfig.from_dict({"crop_schedule": [[0, 100]]})


def test_warm_start_copies_and_widens():
    small = build_model(ModelConfig(N=16, M=24, fusion_channels=4, object_channels=8))
    wide = build_model(ModelConfig(N=16, M=24, fusion_channels=6, object_channels=8))
    state = {"model": small.state_dict()}
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"warm_{os.getpid()}.pt"
    torch.save(state, tmp)
    copied = warm_start(wide, str(tmp))
    tmp.unlink()
    assert "g_s_convs.0.weight" in copied and "g_a_convs.1.weight" in copied
    w_old, w_new = small.g_a_convs[1].weight, wide.g_a_convs[1].weight
    assert torch.equal(w_new[:, : w_old.shape[1]], w_old) and torch.count_nonzero(w_new[:, w_old.shape[1] :]) == 0


def test_warm_start_and_resume_keep_the_likelihood_floor(tmp_path):
    """An fp16 model file, and the checkpoints of a run warm-started from one before the fix, hold the floor as 0;
    the training model keeps CompressAI's 1e-9 either way."""
    from roi_codec_ros.codec import export_model
    from roi_codec_ros.codec.model import LIKELIHOOD_BOUND
    from roi_codec_ros.training.trainer import train

    source = export_model(build_model(ModelConfig(N=16, M=24)), tmp_path / "fp16.pt")
    model = build_model(ModelConfig(N=16, M=24))
    assert warm_start(model, str(source))
    floors = {k: float(v) for k, v in model.state_dict().items() if k.endswith("likelihood_lower_bound.bound")}
    assert len(floors) == 3 and all(v == pytest.approx(LIKELIHOOD_BOUND) for v in floors.values())

    _write_images(tmp_path / "images", 4)
    data = _tiny_config(tmp_path, steps=3, stop_after=1)
    train(TrainConfig.from_dict(data))
    checkpoint = tmp_path / "run" / "last.pt"
    state = torch.load(checkpoint, weights_only=False)
    for key in ("model", "ema"):
        if state.get(key) is not None:
            state[key] = {k: (v * 0 if k.endswith("likelihood_lower_bound.bound") else v) for k, v in state[key].items()}
    torch.save(state, checkpoint)  # as an old run saved it
    data["stop_after"] = None
    train(TrainConfig.from_dict(data))  # resumes and trains on
    resumed = torch.load(checkpoint, weights_only=False)
    assert resumed["step"] == 3
    for key in ("model", "ema"):
        for k, v in (resumed.get(key) or {}).items():
            if k.endswith("likelihood_lower_bound.bound"):
                assert float(v) == pytest.approx(LIKELIHOOD_BOUND), (key, k)


def test_train_cli_end_to_end_resume_and_export(tmp_path):
    _write_images(tmp_path / "images", 6)
    cfg_path = tmp_path / "exp.yaml"
    cfg_path.write_text(yaml.safe_dump(_tiny_config(tmp_path, export_path=str(tmp_path / "model.pt"))))
    cmd = [sys.executable, "-m", "roi_codec_ros.cli", "train", "--config", str(cfg_path)]
    subprocess.run(cmd, check=True, cwd=REPO, timeout=300)
    run = tmp_path / "run"
    for name in ("last.pt", "config.yaml", "manifest.json", "log.csv", "val.csv"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert rows[-1]["step"] == "4" and float(rows[-1]["bpp"]) > 0
    # resume: more steps continue from step 4 (scheduler length is part of the config, so extend via --set)
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["step"] == 4
    codec = RoiCodec.load(tmp_path / "model.pt")
    image = np.asarray(Image.open(tmp_path / "images" / "000.png"))
    assert codec.decode(codec.encode(image).data).shape == image.shape
    # export from a training checkpoint through the CLI
    subprocess.run(
        [sys.executable, "-m", "roi_codec_ros.cli", "train", "--export", str(run / "last.pt"), str(tmp_path / "exported.pt")],
        check=True,
        cwd=REPO,
        timeout=120,
    )
    assert RoiCodec.load(tmp_path / "exported.pt").model_id == codec.model_id


def test_resume_continues_from_checkpoint(tmp_path):
    _write_images(tmp_path / "images", 4)
    from roi_codec_ros.training.trainer import train

    data = _tiny_config(tmp_path, steps=4, stop_after=2)
    train(TrainConfig.from_dict(data))  # a session that ends at step 2
    first = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert first["step"] == 2
    data["stop_after"] = None
    train(TrainConfig.from_dict(data))  # the next session resumes
    second = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert second["step"] == 4
    assert second["scheduler"]["last_epoch"] == 4  # the LR schedule continued, not restarted
    steps = [int(r["step"]) for r in csv.DictReader((tmp_path / "run" / "log.csv").open())]
    assert steps == [2, 4]


def _poison_losses(monkeypatch, bad_calls: set[int]) -> None:
    """Make rd_loss return NaN on the given (0-based) training calls, as one bad batch would."""
    import roi_codec_ros.training.trainer as trainer

    real, calls = trainer.rd_loss, [0]

    def poisoned(out, x, *args, **kwargs):
        parts = real(out, x, *args, **kwargs)
        if x.requires_grad is False and out["x_hat"].requires_grad:  # training calls only, not validation
            calls[0] += 1
            if calls[0] - 1 in bad_calls:
                parts = {**parts, "loss": parts["loss"] * float("nan")}
        return parts

    monkeypatch.setattr(trainer, "rd_loss", poisoned)


def test_non_finite_steps_are_skipped_and_weights_stay_finite(tmp_path, monkeypatch):
    _write_images(tmp_path / "images", 4)
    from roi_codec_ros.training.trainer import train

    _poison_losses(monkeypatch, {1, 2})
    train(TrainConfig.from_dict(_tiny_config(tmp_path, steps=4, log_every=1)))
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert [int(r["skipped_steps"]) for r in rows] == [0, 1, 2, 2]
    # each skipped step leaves a record of what was non-finite: here the loss, not the forward pass
    records = [json.loads(line) for line in (tmp_path / "run" / "nonfinite.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert r["loss_parts"]["loss"]["finite"] is False and r["loss_parts"]["bpp"]["finite"] is True
        assert r["x_hat"]["finite"] is True and all(v["finite"] for v in r["likelihoods"].values())
        assert r["nonfinite_grads"] > 0 and r["first_nonfinite_grads"]


def test_skipped_step_count_survives_a_resume(tmp_path, monkeypatch):
    _write_images(tmp_path / "images", 4)
    from roi_codec_ros.training.trainer import train

    _poison_losses(monkeypatch, {1})
    data = _tiny_config(tmp_path, steps=4, stop_after=2, log_every=1)
    train(TrainConfig.from_dict(data))  # session 1: steps 1-2, the second one skipped
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["skipped_total"] == 1
    monkeypatch.undo()  # a clean second session
    data["stop_after"] = None
    train(TrainConfig.from_dict(data))  # session 2 resumes: the count goes on from 1, not from 0
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert [int(r["skipped_steps"]) for r in rows] == [0, 1, 1, 1]


def test_a_run_that_keeps_diverging_stops_without_saving_nan(tmp_path, monkeypatch):
    _write_images(tmp_path / "images", 4)
    from roi_codec_ros.training.trainer import train

    data = _tiny_config(tmp_path, steps=30, max_nonfinite_steps=3, stop_after=2, checkpoint_minutes=60)
    train(TrainConfig.from_dict(data))  # a good session: the checkpoint of step 2
    checkpoint = tmp_path / "run" / "last.pt"
    good = torch.load(checkpoint, weights_only=False)
    assert good["step"] == 2
    _poison_losses(monkeypatch, set(range(100)))
    data["stop_after"] = None
    with pytest.raises(FloatingPointError, match="consecutive steps with non-finite gradients.*last.pt"):
        train(TrainConfig.from_dict(data))  # resumes at step 2, every step from then on is non-finite
    state = torch.load(checkpoint, weights_only=False)
    assert state["step"] == 2  # the last good checkpoint is kept, not overwritten
    for name, value in state["model"].items():
        assert torch.equal(value, good["model"][name]), name
        assert not value.is_floating_point() or torch.isfinite(value).all(), name


# Runs under torchrun: records each rank's Run (initial and final weights, steps) around the normal CLI command.
DDP_RECORDER = """
import os, sys
import torch
import roi_codec_ros.training.trainer as trainer
from roi_codec_ros.cli import main

runs = []

class RecordingRun(trainer.Run):
    def resume_or_init(self):
        super().resume_or_init()
        self.initial = {k: v.detach().clone() for k, v in self.model.named_parameters()}
        runs.append(self)

trainer.Run = RecordingRun
code = main(["train", "--config", sys.argv[1]])
run = runs[0]
torch.save({"rank": run.rank, "world": run.world, "step": run.step, "initial": run.initial,
            "final": {k: v.detach().clone() for k, v in run.model.named_parameters()}},
           os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.pt"))
sys.exit(code)
"""


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """Two gloo ranks train 2 steps through ``roi-codec train``; each rank's Run is recorded (DDP_RECORDER)."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    _write_images(tmp_path / "images", 6)
    cfg_path = tmp_path / "ddp.yaml"
    cfg_path.write_text(yaml.safe_dump(_tiny_config(tmp_path, steps=2, device="cpu", threads=1, log_every=1)))
    recorder = tmp_path / "record_ranks.py"
    recorder.write_text(DDP_RECORDER)
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
        f"--master_port={29500 + os.getpid() % 1000}", str(recorder), str(cfg_path), str(tmp_path),
    ]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path, [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def test_ddp_two_processes_gloo(ddp_run):
    """Both ranks train the same number of steps with finite results; rank 0 alone saves and logs."""
    tmp_path, ranks = ddp_run
    assert [(r["rank"], r["world"], r["step"]) for r in ranks] == [(0, 2, 2), (1, 2, 2)]
    for rank in ranks:
        assert all(torch.isfinite(v).all() for v in rank["final"].values())
        changed = [n for n, v in rank["initial"].items() if not torch.equal(v, rank["final"][n])]
        assert len(changed) > len(rank["initial"]) // 2  # this rank trained
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["step"] == 2
    for name, value in ranks[0]["final"].items():
        assert torch.equal(state["model"][name], value), name
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert [r["step"] for r in rows] == ["1", "2"]  # one writer (rank 0): no duplicate rows
    assert all(np.isfinite(float(r["loss"])) for r in rows)


def test_ddp_ranks_end_with_identical_weights(ddp_run):
    """DDP starts every rank from rank 0's weights and averages the gradients: the ranks must stay identical."""
    _, ranks = ddp_run
    differ = [n for n in ranks[0]["final"] if not torch.equal(ranks[0]["final"][n], ranks[1]["final"][n])]
    assert not differ, f"{len(differ)} of {len(ranks[0]['final'])} parameters differ between the ranks, e.g. {differ[:3]}"


# -- explicit latent scaling in training (issue 14) ------------------------------------------------------
def test_training_gain_map_is_the_encoders_rule():
    from roi_codec_ros.codec.api import gain_map_from_mask, gain_tensor
    from roi_codec_ros.codec.conditioning import latent_gain_map

    rng = np.random.default_rng(4)
    mask = np.zeros((64, 128), np.float32)
    mask[5:30, 10:60] = 1.0
    mask[40:64, 70:128] = rng.uniform(0, 1, (24, 58)).astype(np.float32)  # fractional class weights
    coded = gain_map_from_mask(mask, 4.0, (64, 128))
    trained = latent_gain_map(torch.from_numpy(mask)[None, None], torch.tensor([4.0]))
    assert torch.allclose(trained.double(), gain_tensor(coded, (4, 8)), atol=1e-6)
    assert torch.equal(latent_gain_map(torch.from_numpy(mask)[None, None], torch.tensor([1.0])), torch.ones(1, 1, 4, 8))


def test_latent_gain_training_runs_and_gains_lower_the_roi_error_of_a_forward_pass():
    from roi_codec_ros.training.trainer import sample_latent_gains

    cfg = TrainConfig.from_dict({"latent_gain_share": 0.5, "latent_gain_max": 8.0})
    gains = sample_latent_gains(cfg, 400, random.Random(0))
    assert gains.min() >= 1.0 and gains.max() <= 8.0
    assert 0.35 < float((gains == 1.0).float().mean()) < 0.65  # about half the samples without gain
    for bad in ({"latent_gain_share": 1.5}, {"latent_gain_max": 9.0}, {"latent_gain_max": 0.5}):
        with pytest.raises(ValueError, match="latent_gain"):
            TrainConfig.from_dict(bad)

    torch.manual_seed(0)
    model = build_model(ModelConfig(N=16, M=24, object_channels=8, fusion_channels=4)).eval()
    x = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :32, :32] = 1.0
    ones = torch.ones(1)
    with torch.no_grad():
        y = model.analysis(x, mask, model.zero_features(1, 64, 64, "cpu"), model.rate_embedding(ones), (64, 64))
    errors = {}
    for top in (1.0, 8.0):
        model.latent_codec.y.gaussian_conditional.training = True  # noise quantisation, as in training
        torch.manual_seed(1)
        with torch.no_grad():
            gain = torch.full((1,), top)
            from roi_codec_ros.codec.conditioning import latent_gain_map

            out = model.latent_codec(y, torch.zeros(1, 3 * 4, 4, 4), latent_gain_map(mask, gain))
        errors[top] = float((out["y_hat"] - y)[..., :2, :2].abs().mean())  # the ROI cells
        assert torch.isfinite(out["likelihoods"]["y"]).all()
    assert errors[8.0] < errors[1.0] / 4  # noise of width 1/8 instead of 1 in the ROI


def test_train_cli_runs_with_latent_gains(tmp_path):
    _write_images(tmp_path / "images", 6)
    cfg_path = tmp_path / "gain.yaml"
    cfg_path.write_text(yaml.safe_dump(_tiny_config(tmp_path, latent_gain_share=1.0, latent_gain_max=4.0)))
    subprocess.run([sys.executable, "-m", "roi_codec_ros.cli", "train", "--config", str(cfg_path)], check=True, cwd=REPO, timeout=300)
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert rows and all(np.isfinite(float(r["loss"])) for r in rows)
