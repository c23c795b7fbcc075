"""Training loop: Adam + OneCycleLR, auxiliary optimiser for the entropy bottlenecks, gradient clipping,
mixed precision on CUDA, resumable checkpoints, validation RD points (CSV + TensorBoard), DDP via torchrun.

Data is decoded once into memory and crops are made in the main process (no DataLoader workers fighting
for 2 cores); detector outputs are computed once per image and cached (see ``data.py``).
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
import random
import subprocess
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from roi_codec_ros.codec.checkpoint import export_model
from roi_codec_ros.codec.losses import rd_loss
from roi_codec_ros.codec.model import RoiHyperprior, build_model

from .config import TrainConfig
from .data import Sample, collate, folder_samples, kitti_samples, make_example, sample_crop, split_train_val

VAL_RATES = (0.0, 0.5, 1.0)


# -- setup ----------------------------------------------------------------------------------------------
def _distributed() -> tuple[int, int]:
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(cfg: TrainConfig, rank: int) -> torch.device:
    if cfg.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", rank % torch.cuda.device_count())
        return torch.device("cpu")
    return torch.device(cfg.device)


def load_samples(cfg: TrainConfig) -> tuple[list[Sample], list[Sample], dict]:
    samples: list[Sample] = []
    roi_modes = {}
    for source in cfg.sources:
        loaded = kitti_samples(source.path, cfg.max_side) if source.kind == "kitti" else folder_samples(source.path, cfg.max_side)
        for s in loaded:
            s.roi = source.roi
            roi_modes[s.path] = source.roi
        samples += loaded
    if not samples:
        raise ValueError("the training config lists no data sources")
    if cfg.detector_weights and (cfg.use_features or any(s.roi in ("boxes", "mixed") for s in cfg.sources)):
        from roi_codec_ros.detector import DetectorAdapter

        detector = DetectorAdapter.from_weights(cfg.detector_weights, device="cpu")
        want_boxes = [s for s in samples if roi_modes[s.path] in ("boxes", "mixed")]
        from .data import attach_detector_outputs

        attach_detector_outputs(samples, detector, cfg.detector_cache, want_features=cfg.use_features, want_boxes=False)
        attach_detector_outputs(want_boxes, detector, cfg.detector_cache, want_features=False, want_boxes=True)
    train, val = split_train_val(samples, cfg.val_fraction, cfg.seed)
    manifest = {
        "train": [s.path for s in train],
        "val": [s.path for s in val],
        "roi": roi_modes,
        "detector_weights": cfg.detector_weights,
    }
    return train, val, manifest


def warm_start(model: RoiHyperprior, path: str) -> list[str]:
    """Copy every weight whose shape matches from a checkpoint or model file; wider input convs get the old
    weights in their first channels (the new ones start at zero), so a plain single-rate model carries over."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    source = blob.get("model", blob.get("state_dict", blob))
    own = model.state_dict()
    copied = []
    with torch.no_grad():
        for name, value in source.items():
            if name not in own or not value.is_floating_point():
                continue
            target = own[name]
            if target.shape == value.shape:
                target.copy_(value.float())
            elif target.ndim == 4 and value.ndim == 4 and target.shape[0] == value.shape[0] and target.shape[1] > value.shape[1]:
                target.zero_()
                target[:, : value.shape[1]].copy_(value.float())
            else:
                continue
            copied.append(name)
    return copied


def sample_knobs(cfg: TrainConfig, model_cfg, batch: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample rate knob and u_alpha (Fathima et al. eq. 5, skew exponent gamma; alpha from 1 - u)."""
    rates, u_alphas = [], []
    for _ in range(batch):
        rates.append(cfg.fixed_rate if cfg.fixed_rate is not None else 1.0 - rng.random() ** cfg.rate_gamma)
        if cfg.fixed_alpha is not None:
            u_alphas.append(model_cfg.ranges.u_alpha(cfg.fixed_alpha))
        elif rng.random() < cfg.uniform_alpha_share:
            u_alphas.append(1.0)
        else:
            u_alphas.append(rng.random())
    return torch.tensor(rates), torch.tensor(u_alphas)


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return None


# -- validation -----------------------------------------------------------------------------------------
@torch.no_grad()
def validate(model: RoiHyperprior, val: list[Sample], cfg: TrainConfig, device: torch.device) -> list[dict]:
    """RD points at alpha = 1 on center crops of validation images (likelihood bpp, rounded latents)."""
    model.eval()
    size = max(s for _, s in cfg.crop_schedule)
    rng = random.Random(0)
    points = []
    items = val[: cfg.val_images]
    if not items:
        return points
    for rate in VAL_RATES:
        bpp_sum = mse_sum = 0.0
        for s in items:
            h, w = s.image.shape[:2]
            side = min(size, (min(h, w) // 64) * 64) or 64
            crop = sample_crop(h, w, side, "random", rng)
            ex = make_example(s, crop, "synthetic", rng)
            batch = collate([ex], model.config.feature_channels)
            x = batch["x"].to(device)
            feats = [f.to(device) for f in batch["features"]] if s.features is not None else None
            out = model(x, torch.ones_like(batch["mask"]).to(device), torch.ones(1, device=device), torch.full((1,), rate, device=device), feats)
            parts = rd_loss(out, x, torch.ones_like(x[:, :1]), torch.ones(1, device=device), torch.ones(1, device=device))
            bpp_sum += parts["bpp"].item()
            mse_sum += parts["mse"].item()
        mse = mse_sum / len(items)
        points.append({"rate": rate, "bpp": bpp_sum / len(items), "psnr": 10 * math.log10(255**2 / max(mse, 1e-10))})
    model.train()
    return points


# -- main loop ------------------------------------------------------------------------------------------
def export_trained(model, cfg: TrainConfig, path: str | Path, step: int, fp16: bool = True) -> Path:
    """Write the deployable model file of a run: weights, the detector it was trained with (name, sha256) and
    whether it uses features at all, plus the step, git commit and training config."""
    detector = None
    if cfg.detector_weights and cfg.use_features:
        from roi_codec_ros.detector.adapter import file_sha256

        weights = Path(cfg.detector_weights)
        detector = {"sha256": file_sha256(weights) if weights.is_file() else None, "name": weights.name}
    return export_model(
        model,
        path,
        fp16=fp16,
        detector=detector,
        uses_features=cfg.use_features,
        metadata={"steps": step, "git_commit": git_commit(), "config": cfg.to_dict()},
    )


def train(cfg: TrainConfig) -> Path:
    rank, world = _distributed()
    device = _device(cfg, rank)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(cfg.seed * 1000 + rank)
    torch.manual_seed(cfg.seed * 1000 + rank)

    train_set, val_set, manifest = load_samples(cfg)
    model_cfg = cfg.model_config
    model = build_model(model_cfg).to(device)
    ckpt_path = out_dir / "last.pt"
    main_params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    optimizer = torch.optim.Adam(main_params, lr=cfg.lr)
    aux_optimizer = torch.optim.Adam(aux_params, lr=cfg.aux_lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=cfg.pct_start)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    step = 0

    if ckpt_path.is_file():  # resume
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        aux_optimizer.load_state_dict(state["aux_optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        rng.setstate(state["python_rng"])
        torch.set_rng_state(state["torch_rng"])
        if rank == 0:
            print(f"resumed from {ckpt_path} at step {step}")
    elif cfg.init_from:
        copied = warm_start(model, cfg.init_from)
        if rank == 0:
            print(f"warm start from {cfg.init_from}: {len(copied)} tensors copied")

    net = DistributedDataParallel(model) if world > 1 else model
    if rank == 0:
        (out_dir / "config.yaml").write_text(__import__("yaml").safe_dump(cfg.to_dict(), sort_keys=False))
        (out_dir / "manifest.json").write_text(json.dumps({**manifest, "git_commit": git_commit()}, indent=1))
    writer = None
    if rank == 0:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out_dir / "tb"))
        except Exception as exc:  # tensorboard optional
            print(f"tensorboard disabled: {exc}")
    csv_path = out_dir / "log.csv"
    val_path = out_dir / "val.csv"

    def save(final: bool = False) -> None:
        if rank != 0:
            return
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise FloatingPointError(f"step {step}: non-finite weights, not overwriting {ckpt_path}")
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "aux_optimizer": aux_optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "python_rng": rng.getstate(),
            "torch_rng": torch.get_rng_state(),
            "config": cfg.to_dict(),
        }
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(ckpt_path)

    model.train()
    skipped_in_a_row = skipped_total = 0
    last_save = time.time()
    t0, images = time.time(), 0
    bar = tqdm(total=cfg.steps, initial=step, disable=rank != 0, desc="train", mininterval=5)
    end = min(cfg.steps, cfg.stop_after or cfg.steps)
    while step < end:
        size = cfg.crop_size(step)
        examples = []
        for _ in range(cfg.batch_size):
            s = train_set[rng.randrange(len(train_set))]
            crop = sample_crop(*s.image.shape[:2], size, cfg.crop_mode, rng)
            ex = make_example(s, crop, s.roi, rng)
            if not cfg.use_features or rng.random() < cfg.feature_dropout:
                ex["features"] = None
            examples.append(ex)
        batch = collate(examples, model_cfg.feature_channels)
        x = batch["x"].to(device)
        mask = batch["mask"].to(device)
        feats = [f.to(device) for f in batch["features"]]
        rate, u_alpha = sample_knobs(cfg, model_cfg, len(examples), rng)
        rate, u_alpha = rate.to(device), u_alpha.to(device)
        beta = model_cfg.ranges.beta(rate)
        alpha = model_cfg.ranges.alpha(u_alpha)

        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            out = net(x, mask, u_alpha, rate, feats)
        out = {"x_hat": out["x_hat"].float(), "likelihoods": {k: v.float() for k, v in out["likelihoods"].items()}}
        parts = rd_loss(out, x, mask, beta, alpha, cfg.loss)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(parts["loss"]).backward()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(main_params, cfg.clip_grad or float("inf"))
        # One non-finite batch would turn every weight into NaN through Adam (stage 4 of the default model was lost
        # that way), so such a step is skipped; a run that keeps producing them stops instead of saving garbage.
        # The test is on the gradient norm, which DDP has already all-reduced, so every rank takes the same decision.
        # With AMP on CUDA the GradScaler already skips inf/NaN steps and lowers its scale: leave that to it.
        if not use_amp and not torch.isfinite(grad_norm):
            skipped_in_a_row += 1
            skipped_total += 1
            if skipped_in_a_row > cfg.max_nonfinite_steps:
                raise FloatingPointError(
                    f"step {step}: {skipped_in_a_row} consecutive steps with non-finite gradients; "
                    f"last good checkpoint: {ckpt_path}"
                )
            optimizer.zero_grad(set_to_none=True)
        else:
            skipped_in_a_row = 0
            scaler.step(optimizer)
            scaler.update()
        scheduler.step()
        aux_optimizer.zero_grad(set_to_none=True)
        aux_loss = model.aux_loss()
        if torch.isfinite(aux_loss):
            aux_loss.backward()
            aux_optimizer.step()
        step += 1
        images += len(examples) * world
        bar.update(1)

        if rank == 0 and (step % cfg.log_every == 0 or step == end):
            rate_ips = images / (time.time() - t0)
            row = {
                "step": step,
                "loss": parts["loss"].item(),
                "bpp": parts["bpp"].item(),
                "mse": parts["mse"].item(),
                "aux": aux_loss.item(),
                "lr": scheduler.get_last_lr()[0],
                "crop": size,
                "images_per_s": rate_ips,
                "skipped_steps": skipped_total,
            }
            new = not csv_path.exists()
            with csv_path.open("a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(row))
                if new:
                    w.writeheader()
                w.writerow(row)
            if writer:
                for k, v in row.items():
                    if k != "step":
                        writer.add_scalar(f"train/{k}", v, step)
            bar.set_postfix(loss=f"{row['loss']:.2f}", bpp=f"{row['bpp']:.3f}", psnr=f"{10 * math.log10(255**2 / max(row['mse'], 1e-9)):.2f}", ips=f"{rate_ips:.1f}")
        if rank == 0 and (step % cfg.val_every == 0 or step == cfg.steps):
            points = validate(model, val_set, cfg, device)
            new = not val_path.exists()
            with val_path.open("a", newline="") as f:
                w = csv.writer(f)
                if new:
                    w.writerow(["step", "rate", "bpp", "psnr"])
                for p in points:
                    w.writerow([step, p["rate"], f"{p['bpp']:.4f}", f"{p['psnr']:.3f}"])
                    if writer:
                        writer.add_scalar(f"val/bpp_rate{p['rate']}", p["bpp"], step)
                        writer.add_scalar(f"val/psnr_rate{p['rate']}", p["psnr"], step)
            tqdm.write("val step %d: %s" % (step, "  ".join(f"rate {p['rate']}: {p['bpp']:.3f} bpp {p['psnr']:.2f} dB" for p in points)))
        if time.time() - last_save > cfg.checkpoint_minutes * 60:
            save()
            last_save = time.time()
    bar.close()
    save(final=True)
    if rank == 0 and cfg.export_path and step >= cfg.steps:
        export_trained(model.cpu(), cfg, cfg.export_path, step)
        print(f"exported {cfg.export_path}")
    if writer:
        writer.close()
    if world > 1:
        dist.destroy_process_group()
    return ckpt_path
