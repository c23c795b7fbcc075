"""Experiment configuration (one YAML file per experiment; every field has a default)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from roi_codec_ros.codec.conditioning import ControlRanges
from roi_codec_ros.codec.model import ModelConfig


@dataclass
class DataSource:
    path: str
    kind: str = "images"  # images | kitti
    roi: str = "synthetic"  # synthetic | boxes | mixed  (boxes: KITTI labels and/or detector pseudo-labels)


@dataclass
class TrainConfig:
    out_dir: str = "runs/experiment"
    sources: list[DataSource] = field(default_factory=list)
    max_side: int | None = 1024  # larger images are downscaled once at load
    val_fraction: float = 0.05
    val_images: int = 8  # at most this many validation images per evaluation
    seed: int = 0

    # detector (features and pseudo-label boxes); None = train without (features zero-filled)
    detector_weights: str | None = None
    detector_cache: str | None = "runs/cache/detector"
    use_features: bool = True
    feature_dropout: float = 0.2  # share of samples trained with zero-filled features

    # model
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields, e.g. {N: 64, M: 96}
    init_from: str | None = None  # warm start: model weights from a checkpoint (shapes that match are copied)

    # schedule
    steps: int = 1000  # total length of the run (the OneCycle schedule spans it)
    stop_after: int | None = None  # stop (with a checkpoint) at this step; rerunning resumes
    max_minutes: float | None = None  # stop (with a checkpoint) after this much training wall time in this process
    batch_size: int = 8
    crop_mode: str = "random"  # random | square (TUM)
    crop_schedule: list[list[int]] = field(default_factory=lambda: [[0, 128]])  # [[from_step, size], ...]
    schedule: str = "onecycle"  # onecycle (spans `steps`) | constant (linear warm-up, then lr; for open-ended runs)
    lr: float = 6e-4  # OneCycleLR peak (TUM), or the constant rate
    pct_start: float = 0.1  # onecycle warm-up share
    warmup_steps: int = 500  # constant schedule warm-up
    aux_lr: float = 1e-3
    clip_grad: float = 1.0
    ema_decay: float | None = None  # validate and export an exponential moving average of the weights (e.g. 0.999):
    # with a constant learning rate the raw weights stay noisy; the average gives what an annealed schedule would
    max_nonfinite_steps: int = 20  # skip a step whose gradients are inf/NaN; stop after this many in a row
    amp: bool = True  # mixed precision for g_a/g_s where the device supports it: fp16 on CUDA, bf16 on CPUs with
    # native bf16 (AVX512-BF16/AMX; measured 1.39x steps/s here); the entropy models always run in float32

    # loss and knob sampling (Fathima et al. eq. 5)
    loss: str = "qualcomm"  # qualcomm | tum
    fixed_rate: float | None = None  # single-rate warm-up stage: fixed rate knob
    rate_gamma: float = 1.0  # u ~ U(0,1)^gamma, beta from eq. 5 (gamma > 1 favours high rates)
    fixed_alpha: float | None = None  # e.g. 1.0 for the single-rate, uniform-quality warm-up stage
    uniform_alpha_share: float = 0.25  # share of samples trained at alpha = 1 (the uniform setting)
    # explicit latent scaling (RoiCodec.encode's roi_gain): this share of samples trains with a top gain drawn
    # log-uniformly in [1, latent_gain_max], its map from the sample's ROI mask as the encoder builds it
    latent_gain_share: float = 0.0
    latent_gain_max: float = 8.0

    # bookkeeping
    device: str = "auto"
    threads: int | None = None
    log_every: int = 50
    val_every: int = 1000
    val_rates: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    checkpoint_minutes: float = 5.0
    export_path: str | None = None  # write a deployable model file at the end
    best_export_path: str | None = None  # write a candidate model file whenever the validation RD score improves

    @property
    def model_config(self) -> ModelConfig:
        data = dict(self.model)
        if "ranges" in data:
            data["ranges"] = ControlRanges(**data["ranges"])
        if "feature_channels" in data:
            data["feature_channels"] = tuple(data["feature_channels"])
        return ModelConfig(**data)

    def crop_size(self, step: int) -> int:
        size = self.crop_schedule[0][1]
        for start, s in self.crop_schedule:
            if step >= start:
                size = s
        return size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        data = dict(data)
        data["sources"] = [DataSource(**s) for s in data.get("sources", [])]
        cfg = cls(**data)
        for _, size in cfg.crop_schedule:
            if size % 64:
                raise ValueError(f"crop sizes must be multiples of 64, got {size}")
        if cfg.schedule not in ("onecycle", "constant"):
            raise ValueError(f"schedule must be onecycle or constant, got {cfg.schedule!r}")
        if cfg.loss not in ("qualcomm", "tum"):
            raise ValueError(f"loss must be qualcomm or tum, got {cfg.loss!r}")
        if not 0.0 <= cfg.latent_gain_share <= 1.0:
            raise ValueError(f"latent_gain_share must be in [0, 1], got {cfg.latent_gain_share}")
        if not 1.0 <= cfg.latent_gain_max <= 8.0:  # the bitstream's largest gain
            raise ValueError(f"latent_gain_max must be in [1, 8], got {cfg.latent_gain_max}")
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        with open(path) as f:
            return cls.from_dict(yaml.safe_load(f) or {})
