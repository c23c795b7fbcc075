"""The long run of the default model: one command to start/resume/stop it, bf16 mixed precision on CPU, the
validation RD score and candidate export, time-limited runs."""
from __future__ import annotations

import csv
import math
import os
import subprocess
import time
from pathlib import Path

import numpy as np
from PIL import Image
import pytest
import torch
import yaml

from roi_codec_ros.codec import RoiCodec, load_model_file
from roi_codec_ros.training.config import TrainConfig
from roi_codec_ros.training.trainer import Run, amp_dtype, rd_score, train

REPO = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, **overrides) -> dict:
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    for i in range(8):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 255, (96, 130, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    data = yaml.safe_load((REPO / "configs" / "tiny_test.yaml").read_text())
    data.update(sources=[{"path": str(folder)}], out_dir=str(tmp_path / "run"), **overrides)
    return data


def test_default_long_config_is_valid_open_ended_and_exports_candidates():
    cfg = TrainConfig.load(REPO / "configs" / "default_long.yaml")
    assert cfg.schedule == "constant" and cfg.steps >= 10**6  # no planned end
    assert cfg.amp and cfg.best_export_path and cfg.val_every <= 2000
    assert not cfg.out_dir.startswith("checkpoints") and cfg.out_dir.startswith("runs/")  # ignored state folder
    assert cfg.init_from == "roi_codec_ros/models/default.pt"  # any machine can continue from the repository
    r = cfg.model_config.ranges
    assert r.beta_min <= 2.0 and r.beta_max >= 1024.0


def test_rd_score_prefers_a_better_curve():
    worse = [{"cost": 100.0}, {"cost": 10.0}]
    assert rd_score([{"cost": 90.0}, {"cost": 10.0}]) < rd_score(worse)
    assert rd_score([{"cost": 100.0}, {"cost": 9.0}]) < rd_score(worse)


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="CPU without native bf16")
def test_cpu_training_step_runs_g_a_g_s_in_bf16_and_entropy_models_in_float32(tmp_path):
    cfg = TrainConfig.from_dict(_config(tmp_path, amp=True))
    run = Run(cfg, 0, 1)
    assert amp_dtype(cfg, run.device) == torch.bfloat16
    seen = {}

    def record(name, value) -> None:  # a forward hook must return None, or it replaces the output
        seen.setdefault(name, value)

    hooks = [
        run.model.g_s_convs[0].register_forward_hook(lambda m, i, o: record("g_s", o.dtype)),
        run.model.latent_codec.register_forward_hook(
            lambda m, i, o: record("likelihoods", {k: v.dtype for k, v in o["likelihoods"].items()})
        ),
    ]
    from roi_codec_ros.training.trainer import load_samples, sample_batch

    train_set, _, _ = load_samples(cfg)
    batch = sample_batch(cfg, run.model_cfg, train_set, 0, run.rng, run.device)
    parts, _ = run.train_step(run.model, batch)
    for h in hooks:
        h.remove()
    assert seen["g_s"] == torch.bfloat16
    assert set(seen["likelihoods"].values()) == {torch.float32}
    assert math.isfinite(parts["loss"].item())
    assert Run(TrainConfig.from_dict(_config(tmp_path, amp=False)), 0, 1).amp_dtype is None


def test_run_stops_after_max_minutes_with_a_checkpoint(tmp_path):
    cfg = TrainConfig.from_dict(_config(tmp_path, steps=10**6, schedule="constant", max_minutes=0.05, val_every=10**6))
    t0 = time.time()
    state = torch.load(train(cfg), weights_only=False)
    assert time.time() - t0 < 90
    assert 0 < state["step"] < 10**6 and state["wall_s"] > 0


def test_candidate_is_exported_on_a_better_validation_score(tmp_path):
    cfg = TrainConfig.from_dict(
        _config(tmp_path, steps=10**6, stop_after=5, schedule="constant", warmup_steps=1, val_every=1,
                best_export_path=str(tmp_path / "run" / "best.pt"), lr=1e-3)
    )
    state = torch.load(train(cfg), weights_only=False)
    with open(tmp_path / "run" / "val.csv") as f:
        rows = list(csv.DictReader(f))
    scores = {}
    for r in rows:
        scores[int(r["step"])] = float(r["score"])
    assert len(scores) >= 2
    best_step = min(scores, key=scores.get)
    blob = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert blob["metadata"]["steps"] == best_step
    assert blob["metadata"]["val_score"] == pytest.approx(scores[best_step], abs=1e-4)
    assert state["best_score"] == pytest.approx(scores[best_step], abs=1e-4)
    RoiCodec.load(tmp_path / "run" / "best.pt")  # a loadable model file


def test_one_command_starts_stops_cleanly_and_resumes(tmp_path):
    config = tmp_path / "long.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path, steps=10**6, schedule="constant", warmup_steps=2, val_every=10**6,
                                              log_every=1, checkpoint_minutes=100)))
    env = {**os.environ, "TRAIN_CONFIG": str(config), "TRAIN_THREADS": "1"}
    script = ["bash", str(REPO / "scripts" / "train_default.sh")]
    run_dir = tmp_path / "run"

    def logged_steps() -> int:
        path = run_dir / "log.csv"
        return len(path.read_text().splitlines()) - 1 if path.is_file() else 0

    try:
        out = subprocess.run(script + ["start"], env=env, capture_output=True, text=True, check=True).stdout
        assert "started pid" in out
        assert "already running" in subprocess.run(script + ["start"], env=env, capture_output=True, text=True).stdout
        deadline = time.time() + 180
        while logged_steps() < 3 and time.time() < deadline:
            time.sleep(1)
        assert logged_steps() >= 3
        assert "running" in subprocess.run(script + ["status"], env=env, capture_output=True, text=True).stdout
        subprocess.run(script + ["stop"], env=env, check=True, timeout=240)
        first = torch.load(run_dir / "last.pt", weights_only=False)["step"]
        assert first >= 3  # the stop wrote a checkpoint of the steps done (no checkpoint was due before)
        assert f"stopped at step {first}" in (run_dir / "train.out").read_text()

        subprocess.run(script + ["start"], env=env, check=True)
        deadline = time.time() + 180
        while "resumed from" not in (run_dir / "train.out").read_text() and time.time() < deadline:
            time.sleep(1)
        assert f"at step {first}" in (run_dir / "train.out").read_text()
        subprocess.run(script + ["stop"], env=env, check=True, timeout=240)
        second = torch.load(run_dir / "last.pt", weights_only=False)["step"]
        assert second >= first

        # A stop sent while the run is still starting (imports, data, resume) must end it too and lose nothing.
        subprocess.run(script + ["start"], env=env, check=True)
        subprocess.run(script + ["stop"], env=env, check=True, timeout=240)
        assert torch.load(run_dir / "last.pt", weights_only=False)["step"] >= second
    finally:
        subprocess.run(script + ["stop"], env=env, timeout=240)
    assert "not running" in subprocess.run(script + ["status"], env=env, capture_output=True, text=True).stdout


def test_weight_average_is_validated_exported_and_resumed(tmp_path):
    cfg = TrainConfig.from_dict(
        _config(tmp_path, steps=10**6, stop_after=4, schedule="constant", warmup_steps=1, val_every=2, lr=1e-3,
                ema_decay=0.5, best_export_path=str(tmp_path / "run" / "best.pt"))
    )
    state = torch.load(train(cfg), weights_only=False)
    ema, raw = state["ema"], state["model"]
    differ = [n for n in raw if raw[n].is_floating_point() and raw[n].shape == ema[n].shape and not torch.equal(raw[n], ema[n])]
    assert differ  # the average is not the weights
    exported = RoiCodec.load(tmp_path / "run" / "best.pt").model.state_dict()
    step = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["metadata"]["steps"]
    if step == 4:  # the candidate of the last validation is the average of the checkpoint
        name = differ[0]
        assert torch.allclose(exported[name].float(), ema[name].float())
    # `roi-codec train --export` of the checkpoint exports the average too (fp32 storage: compared exactly)
    from roi_codec_ros.cli.train import main as train_cli

    assert train_cli(["train", "--export", str(tmp_path / "run" / "last.pt"), str(tmp_path / "exported.pt"), "--fp32"]) == 0
    by_cli = RoiCodec.load(tmp_path / "exported.pt").model.state_dict()
    assert all(torch.equal(by_cli[n].float(), ema[n].float()) for n in differ)
    # the fp32 candidate re-exported as a shipped (fp16) model file: same weights to fp16 precision, same metadata
    assert train_cli(["train", "--export", str(tmp_path / "run" / "best.pt"), str(tmp_path / "shipped.pt")]) == 0
    shipped, shipped_info = load_model_file(tmp_path / "shipped.pt")
    candidate, candidate_info = load_model_file(tmp_path / "run" / "best.pt")
    assert shipped_info["metadata"]["steps"] == candidate_info["metadata"]["steps"]
    assert shipped_info["detector"] == candidate_info["detector"]
    for name, value in candidate.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(shipped.state_dict()[name], value.half().float()), name
    # resuming keeps the average (not restarted from the weights)
    resumed = Run(TrainConfig.from_dict({**cfg.to_dict(), "stop_after": 5}), 0, 1)
    resumed.resume_or_init()
    assert all(torch.equal(resumed.ema.module.state_dict()[n], ema[n]) for n in differ)
