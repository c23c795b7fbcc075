"""Training loop: Adam + OneCycleLR (or constant after warm-up), auxiliary optimiser for the entropy bottlenecks,
gradient clipping, mixed precision (fp16 on CUDA, bf16 on capable CPUs), resumable checkpoints, validation RD
points and an RD score (CSV + TensorBoard), candidate export on a better score, clean stop on SIGINT/SIGTERM,
DDP via torchrun. Split as CompressAI's ``examples/train.py``: optimisers, one step, validation, checkpoint.

Data is decoded once into memory and crops are made in the main process (no DataLoader workers fighting
for 2 cores); detector outputs are computed once per image and cached (see ``data.py``).
"""
from __future__ import annotations

import copy
import csv
import json
import math
import os
from pathlib import Path
import random
import signal
import subprocess
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from compressai.optimizers import net_aux_optimizer

from roi_codec_ros.codec.checkpoint import export_model
from roi_codec_ros.codec.losses import rd_loss
from roi_codec_ros.codec.model import RoiHyperprior, build_model, reset_likelihood_bounds
from roi_codec_ros.devices import resolve_device
from roi_codec_ros.files import file_sha256

from .config import TrainConfig
from .data import Sample, collate, folder_samples, kitti_samples, make_example, sample_crop, split_train_val


# -- setup ----------------------------------------------------------------------------------------------
def _distributed() -> tuple[int, int]:
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for g_a/g_s, or None for float32: fp16 on CUDA, bf16 on CPUs with native bf16."""
    if not cfg.amp:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None


def _device(cfg: TrainConfig, rank: int) -> torch.device:
    return resolve_device(cfg.device, local_rank=rank)


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

        detector = DetectorAdapter.from_weights(cfg.detector_weights, device="cuda" if _device(cfg, 0).type == "cuda" else "cpu")
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
    reset_likelihood_bounds(model)  # a constant of the model, not a weight: an fp16 file holds it as 0
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
    """RD points at alpha = 1 on fixed crops of the validation images (likelihood bpp, rounded latents, float32).

    Each point also carries the Lagrangian cost ``J = beta(rate) * bpp + MSE`` the model is trained to minimise."""
    model.eval()
    size = max(s for _, s in cfg.crop_schedule)
    rng = random.Random(0)
    items = val[: cfg.val_images]
    crops = []
    for s in items:  # the same crops for every rate and every validation
        h, w = s.image.shape[:2]
        side = min(size, (min(h, w) // 64) * 64) or 64
        crops.append(make_example(s, sample_crop(h, w, side, "random", rng), "synthetic", rng))
    points = []
    ones = torch.ones(1, device=device)
    for rate in cfg.val_rates if items else []:
        bpp_sum = mse_sum = 0.0
        for s, ex in zip(items, crops):
            batch = collate([ex], model.config.feature_channels)
            x = batch["x"].to(device)
            feats = [f.to(device) for f in batch["features"]] if s.features is not None else None
            out = model(x, torch.ones_like(x[:, :1]), ones, torch.full((1,), rate, device=device), feats)
            parts = rd_loss(out, x, torch.ones_like(x[:, :1]), ones, ones)
            bpp_sum += parts["bpp"].item()
            mse_sum += parts["mse"].item()
        bpp, mse = bpp_sum / len(items), mse_sum / len(items)
        beta = float(model.config.ranges.beta(rate))
        points.append({"rate": rate, "bpp": bpp, "psnr": 10 * math.log10(255**2 / max(mse, 1e-10)), "cost": beta * bpp + mse})
    model.train()
    return points


def rd_score(points: list[dict]) -> float:
    """One number per validation (lower is better): the mean log Lagrangian cost over the validation rates.

    The log gives every rate the same say (costs differ 10x between the ends of the knob); with a fixed
    validation set and knob range, a lower score is a better RD curve for the loss the model is trained on."""
    return sum(math.log(p["cost"]) for p in points) / len(points)


# -- pieces of the loop ---------------------------------------------------------------------------------
def export_trained(model, cfg: TrainConfig, path: str | Path, step: int, fp16: bool = True, metadata: dict | None = None) -> Path:
    """Write the deployable model file of a run: weights, the detector it was trained with (name, sha256) and
    whether it uses features at all, plus the step, git commit and training config."""
    detector = None
    if cfg.detector_weights and cfg.use_features:
        weights = Path(cfg.detector_weights)
        detector = {"sha256": file_sha256(weights) if weights.is_file() else None, "name": weights.name}
    return export_model(
        model,
        path,
        fp16=fp16,
        detector=detector,
        uses_features=cfg.use_features,
        metadata={"steps": step, "git_commit": git_commit(), "config": cfg.to_dict(), **(metadata or {})},
    )


def configure_optimizers(model: RoiHyperprior, cfg: TrainConfig):
    """Adam for the network, a separate Adam for the entropy bottlenecks' quantiles (CompressAI's net_aux), and the
    learning-rate schedule."""
    optimizers = net_aux_optimizer(model, {"net": {"type": "Adam", "lr": cfg.lr}, "aux": {"type": "Adam", "lr": cfg.aux_lr}})
    optimizer, aux_optimizer = optimizers["net"], optimizers["aux"]
    if cfg.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=cfg.pct_start)
    else:
        warmup = max(1, cfg.warmup_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    return optimizer, aux_optimizer, scheduler


def sample_batch(cfg: TrainConfig, model_cfg, train_set: list[Sample], step: int, rng: random.Random, device) -> dict:
    """One training batch: crops, masks, cached features (with dropout) and per-sample knobs."""
    size = cfg.crop_size(step)
    examples = []
    for _ in range(cfg.batch_size):
        s = train_set[rng.randrange(len(train_set))]
        ex = make_example(s, sample_crop(*s.image.shape[:2], size, cfg.crop_mode, rng), s.roi, rng)
        if not cfg.use_features or rng.random() < cfg.feature_dropout:
            ex["features"] = None
        examples.append(ex)
    batch = collate(examples, model_cfg.feature_channels)
    rate, u_alpha = sample_knobs(cfg, model_cfg, len(examples), rng)
    out = {
        "x": batch["x"].to(device),
        "mask": batch["mask"].to(device),
        "features": [f.to(device) for f in batch["features"]],
        "rate": rate.to(device),
        "u_alpha": u_alpha.to(device),
        "crop": size,
        "roi_gain": None,
    }
    if cfg.latent_gain_share > 0:
        out["roi_gain"] = sample_latent_gains(cfg, len(examples), rng).to(device)
    return out


def sample_latent_gains(cfg: TrainConfig, batch: int, rng: random.Random) -> torch.Tensor:
    """Per-sample top gain of explicit latent scaling: 1 (none) or, for ``latent_gain_share`` of the samples,
    log-uniform in [1, latent_gain_max] (every doubling of the gain as likely)."""
    log_max = math.log(cfg.latent_gain_max)
    return torch.tensor([math.exp(rng.random() * log_max) if rng.random() < cfg.latent_gain_share else 1.0
                         for _ in range(batch)])


class StopRequest:
    """SIGINT/SIGTERM ask the loop to stop after the current step and write its checkpoint (a background run is
    stopped this way; a second signal stops at once).  Before the loop starts (``in_loop`` False: data, detector
    pass, resume) there is nothing new to save, so a signal ends the process at once."""

    def __init__(self) -> None:
        self.requested = False
        self.in_loop = False
        self._previous = {}

    def __enter__(self) -> "StopRequest":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if not self.in_loop:
            print(f"signal {signum} during start-up: exiting before the first step (nothing new to save)", flush=True)
            raise SystemExit(128 + signum)
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"signal {signum}: stopping after this step (checkpoint follows)", flush=True)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Run:
    """State of one training run (model, optimisers, counters) and its files in ``out_dir``."""

    def __init__(self, cfg: TrainConfig, rank: int, world: int):
        self.cfg, self.rank, self.world = cfg, rank, world
        self.device = _device(cfg, rank)
        self.out_dir = Path(cfg.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = self.out_dir / "last.pt"
        self.rng = random.Random(cfg.seed * 1000 + rank)
        torch.manual_seed(cfg.seed * 1000 + rank)
        self.model_cfg = cfg.model_config
        self.model = build_model(self.model_cfg).to(self.device)
        self.optimizer, self.aux_optimizer, self.scheduler = configure_optimizers(self.model, cfg)
        self.amp_dtype = amp_dtype(cfg, self.device)
        # fp16 needs loss scaling; bf16 has float32's exponent range and does not
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.ema = None
        if cfg.ema_decay:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=False)
        self.step = 0
        self.wall_s = 0.0  # training wall time over all sessions of this run
        self.best_score = math.inf
        self.skipped_in_a_row = self.skipped_total = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def evaluated_model(self) -> RoiHyperprior:
        """What validation scores and exports: the weight average when the run keeps one, else the weights."""
        return self.ema.module if self.ema is not None else self.model

    def resume_or_init(self) -> None:
        if self.ckpt_path.is_file():
            state = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)
            self.model.load_state_dict(state["model"])
            if self.ema is not None:
                self.ema.module.load_state_dict(state.get("ema") or state["model"])  # older state: start from the weights
            self.optimizer.load_state_dict(state["optimizer"])
            self.aux_optimizer.load_state_dict(state["aux_optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.step = state["step"]
            self.wall_s = state.get("wall_s", 0.0)
            self.best_score = state.get("best_score", math.inf)
            self.skipped_total = state.get("skipped_total", 0)  # older state: not kept, counts from here
            self.rng.setstate(state["python_rng"])
            torch.set_rng_state(state["torch_rng"])
            # a run warm-started from a model file before 2026-12-02 saved the file's zero floor in its checkpoints
            reset_likelihood_bounds(self.model)
            if self.ema is not None:
                reset_likelihood_bounds(self.ema.module)
            if self.is_main:
                print(f"resumed from {self.ckpt_path} at step {self.step} ({self.wall_s / 3600:.2f} h trained)")
        elif self.cfg.init_from:
            copied = warm_start(self.model, self.cfg.init_from)
            if self.ema is not None:
                self.ema.module.load_state_dict(self.model.state_dict())
            if self.is_main:
                print(f"warm start from {self.cfg.init_from}: {len(copied)} tensors copied")

    def save_checkpoint(self) -> None:
        if not self.is_main:
            return
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise FloatingPointError(f"step {self.step}: non-finite weights, not overwriting {self.ckpt_path}")
        state = {
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "aux_optimizer": self.aux_optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "wall_s": self.wall_s,
            "best_score": self.best_score,
            "skipped_total": self.skipped_total,
            "python_rng": self.rng.getstate(),
            "torch_rng": torch.get_rng_state(),
            "config": self.cfg.to_dict(),
        }
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.ckpt_path)

    def train_step(self, net, batch: dict) -> tuple[dict, torch.Tensor]:
        cfg = self.cfg
        beta = self.model_cfg.ranges.beta(batch["rate"])
        alpha = self.model_cfg.ranges.alpha(batch["u_alpha"])
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            out = net(batch["x"], batch["mask"], batch["u_alpha"], batch["rate"], batch["features"], batch.get("roi_gain"))
        out = {"x_hat": out["x_hat"].float(), "likelihoods": {k: v.float() for k, v in out["likelihoods"].items()}}
        parts = rd_loss(out, batch["x"], batch["mask"], beta, alpha, cfg.loss)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(parts["loss"]).backward()
        self.scaler.unscale_(self.optimizer)
        main_params = [p for group in self.optimizer.param_groups for p in group["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(main_params, cfg.clip_grad or float("inf"))
        # One non-finite batch would turn every weight into NaN through Adam (stage 4 of the default model was lost
        # that way), so such a step is skipped; a run that keeps producing them stops instead of saving garbage.
        # The test is on the gradient norm, which DDP has already all-reduced, so every rank takes the same decision.
        # With fp16 on CUDA the GradScaler already skips inf/NaN steps and lowers its scale: leave that to it.
        if not self.scaler.is_enabled() and not torch.isfinite(grad_norm):
            self.skipped_in_a_row += 1
            self.skipped_total += 1
            self.record_nonfinite(batch, out, parts, main_params)
            if self.skipped_in_a_row > cfg.max_nonfinite_steps:
                raise FloatingPointError(
                    f"step {self.step}: {self.skipped_in_a_row} consecutive steps with non-finite gradients; "
                    f"last good checkpoint: {self.ckpt_path}"
                )
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.skipped_in_a_row = 0
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()
        self.aux_optimizer.zero_grad(set_to_none=True)
        aux_loss = self.model.aux_loss()
        if torch.isfinite(aux_loss):
            aux_loss.backward()
            self.aux_optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        return parts, aux_loss

    def record_nonfinite(self, batch: dict, out: dict, parts: dict, params: list) -> None:
        """Append what was non-finite in a skipped step to nonfinite.jsonl, so a diverging run can be diagnosed
        after the fact (the fourth machine's run stopped with all gradients non-finite and nothing else known)."""
        if not self.is_main:
            return

        def summary(t: torch.Tensor) -> dict:
            t = t.detach().float()
            finite = torch.isfinite(t)
            vals = t[finite]
            return {
                "finite": bool(finite.all()),
                "min": vals.min().item() if vals.numel() else None,
                "max": vals.max().item() if vals.numel() else None,
            }

        names = {id(p): n for n, p in self.model.named_parameters()}
        bad = [names.get(id(p), "?") for p in params if p.grad is not None and not torch.isfinite(p.grad).all()]
        record = {
            "step": self.step,
            "loss_parts": {k: summary(v) for k, v in parts.items()},
            "x_hat": summary(out["x_hat"]),
            "likelihoods": {k: summary(v) for k, v in out["likelihoods"].items()},
            "batch": {k: summary(batch[k]) for k in ("rate", "u_alpha", "roi_gain", "mask") if batch.get(k) is not None},
            "nonfinite_grads": len(bad),
            "first_nonfinite_grads": bad[:8],
        }
        with (self.out_dir / "nonfinite.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")

    def validate_and_export(self, val_set: list[Sample], writer) -> list[dict]:
        """Validation RD points; a better score than any before writes the candidate model file."""
        model = self.evaluated_model
        points = validate(model, val_set, self.cfg, self.device)
        if not points:
            return points
        score = rd_score(points)
        val_path = self.out_dir / "val.csv"
        new = not val_path.exists()
        with val_path.open("a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["step", "rate", "bpp", "psnr", "cost", "score"])
            for p in points:
                w.writerow([self.step, p["rate"], f"{p['bpp']:.4f}", f"{p['psnr']:.3f}", f"{p['cost']:.3f}", f"{score:.5f}"])
        if writer:
            writer.add_scalar("val/score", score, self.step)
            for p in points:
                writer.add_scalar(f"val/bpp_rate{p['rate']}", p["bpp"], self.step)
                writer.add_scalar(f"val/psnr_rate{p['rate']}", p["psnr"], self.step)
        text = "  ".join(f"rate {p['rate']}: {p['bpp']:.3f} bpp {p['psnr']:.2f} dB" for p in points)
        better = score < self.best_score
        tqdm.write(f"val step {self.step}: {text}  score {score:.4f}{' (best)' if better else ''}")
        if better:
            self.best_score = score
            if self.cfg.best_export_path:
                export_trained(  # a copy: exporting rebuilds the CDF tables, which must not change the live model
                    copy.deepcopy(model), self.cfg, self.cfg.best_export_path, self.step, fp16=False,
                    metadata={"val_score": score, "val_points": points, "train_wall_s": self.wall_s},
                )
                tqdm.write(f"candidate model written: {self.cfg.best_export_path} (step {self.step})")
        return points

    def log_row(self, parts: dict, aux_loss: torch.Tensor, crop: int, images_per_s: float, writer) -> None:
        row = {
            "step": self.step,
            "loss": parts["loss"].item(),
            "bpp": parts["bpp"].item(),
            "mse": parts["mse"].item(),
            "aux": aux_loss.item(),
            "lr": self.scheduler.get_last_lr()[0],
            "crop": crop,
            "images_per_s": images_per_s,
            "skipped_steps": self.skipped_total,
            "wall_h": self.wall_s / 3600,
        }
        csv_path = self.out_dir / "log.csv"
        new = not csv_path.exists()
        with csv_path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        if writer:
            for k, v in row.items():
                if k != "step":
                    writer.add_scalar(f"train/{k}", v, self.step)


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(out_dir / "tb"))
    except Exception as exc:  # tensorboard optional
        print(f"tensorboard disabled: {exc}")
        return None


# -- main loop ------------------------------------------------------------------------------------------
def train(cfg: TrainConfig) -> Path:
    # The stop handler goes in first: `scripts/train_default.sh` starts us in the background, where bash leaves
    # SIGINT ignored, so a stop sent during the start-up (data, detector pass, resume) would otherwise be lost.
    with StopRequest() as stop:
        return _train(cfg, stop)


def _train(cfg: TrainConfig, stop: StopRequest) -> Path:
    rank, world = _distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = Run(cfg, rank, world)
    train_set, val_set, manifest = load_samples(cfg)
    run.resume_or_init()
    # The entropy bottlenecks' quantiles get no gradient from the RD loss (only from the aux loss): without
    # find_unused_parameters DDP would all-reduce nothing before optimizer.step() and every rank would step alone.
    net = DistributedDataParallel(run.model, find_unused_parameters=True) if world > 1 else run.model
    writer = None
    if run.is_main:
        (run.out_dir / "config.yaml").write_text(__import__("yaml").safe_dump(cfg.to_dict(), sort_keys=False))
        (run.out_dir / "manifest.json").write_text(json.dumps({**manifest, "git_commit": git_commit()}, indent=1))
        writer = _tensorboard(run.out_dir)
        print(f"mixed precision: {run.amp_dtype or 'off'} on {run.device}", flush=True)

    run.model.train()
    last_save = t_step = time.time()
    t0, images = time.time(), 0
    end = min(cfg.steps, cfg.stop_after or cfg.steps)
    bar = tqdm(total=cfg.steps, initial=run.step, disable=not run.is_main, desc="train", mininterval=5)
    deadline = time.time() + cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    stop.in_loop = True  # from here a signal stops after the current step, with a checkpoint
    while run.step < end and not stop.requested and time.time() < deadline:
        batch = sample_batch(cfg, run.model_cfg, train_set, run.step, run.rng, run.device)
        parts, aux_loss = run.train_step(net, batch)
        now = time.time()
        run.wall_s += now - t_step
        t_step = now
        images += cfg.batch_size * world
        bar.update(1)
        if run.is_main and (run.step % cfg.log_every == 0 or run.step == end):
            ips = images / (time.time() - t0)
            run.log_row(parts, aux_loss, batch["crop"], ips, writer)
            psnr = 10 * math.log10(255**2 / max(parts["mse"].item(), 1e-9))
            bar.set_postfix(loss=f"{parts['loss'].item():.2f}", bpp=f"{parts['bpp'].item():.3f}", psnr=f"{psnr:.2f}", ips=f"{ips:.1f}")
        if run.is_main and (run.step % cfg.val_every == 0 or run.step == cfg.steps):
            run.validate_and_export(val_set, writer)
            t_step = time.time()  # validation is not training time
        if time.time() - last_save > cfg.checkpoint_minutes * 60:
            run.save_checkpoint()
            last_save = time.time()
    bar.close()
    run.save_checkpoint()
    if run.is_main and cfg.export_path and run.step >= cfg.steps:
        export_trained(run.evaluated_model.cpu(), cfg, cfg.export_path, run.step)
        print(f"exported {cfg.export_path}")
    if run.is_main:
        print(f"stopped at step {run.step} ({run.wall_s / 3600:.2f} h trained); checkpoint {run.ckpt_path}", flush=True)
    if writer:
        writer.close()
    if world > 1:
        dist.destroy_process_group()
    return run.ckpt_path
