"""Training throughput: images/s of one full training step, float32 vs the chosen mixed-precision setting, in one run.

    python benchmarks/training_throughput.py [--model PATH|random] [--batch 8] [--crop 256] [--steps 12]
                                             [--warmup 3] [--threads 2] [--images FOLDER]

A full step is what ``roi-codec train`` does per batch: forward (g_a, entropy models, g_s), ROI loss, backward,
gradient clipping, Adam and the auxiliary optimiser (``trainer.Run.train_step``). Both settings start from the same
weights, see the same batches (made once, up front, so crop making is not timed) and alternate block by block, so
background load hits both alike. Settings: ``fp32`` and ``bf16`` (autocast of g_a/g_s on CPUs with native bf16,
entropy models in float32: what the trainer uses with ``amp: true``), optionally ``bf16+cl`` (channels-last
inputs too). Prints median step time, images/s, the ratio to fp32 and whether every loss stayed finite.
"""
from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time

import numpy as np
import torch

from roi_codec_ros.codec.checkpoint import load_model_file
from roi_codec_ros.codec.model import build_model
from roi_codec_ros.training.config import TrainConfig
from roi_codec_ros.training.data import Sample, folder_samples
from roi_codec_ros.training.trainer import Run, sample_batch


def _samples(folder: str | None, count: int = 16) -> list[Sample]:
    if folder:
        return folder_samples(folder, max_side=1024)[:count]
    from ultralytics.utils import ASSETS  # bundled real photos (bus.jpg, zidane.jpg)

    samples = folder_samples(ASSETS, max_side=1024)
    if not samples:
        rng = np.random.default_rng(0)
        samples = [Sample("noise", rng.integers(0, 255, (512, 512, 3), dtype=np.uint8))]
    return samples


def _run(cfg: TrainConfig, model, amp: bool) -> Run:
    run = Run(TrainConfig.from_dict({**cfg.to_dict(), "amp": amp, "sources": []}), 0, 1)
    run.model.load_state_dict(model.state_dict())
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="model file, 'default' (the shipped one) or 'random'")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per setting")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", help="image folder for the crops (default: ultralytics' bundled photos)")
    ap.add_argument("--channels-last", action="store_true", help="also time bf16 with channels-last inputs")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.model == "random":
        torch.manual_seed(0)
        model = build_model()
    else:
        from roi_codec_ros.codec.checkpoint import DEFAULT_MODEL_PATH

        model, _ = load_model_file(DEFAULT_MODEL_PATH if args.model == "default" else args.model)
    cfg = TrainConfig.from_dict(
        {"model": {}, "batch_size": args.batch, "crop_schedule": [[0, args.crop]], "schedule": "constant", "lr": 1e-4,
         "warmup_steps": 1, "use_features": True, "feature_dropout": 0.2}
    )
    cfg.model = model.config.to_dict()
    cfg.model.pop("architecture")
    samples = _samples(args.images)
    rng = random.Random(0)
    batches = [sample_batch(cfg, model.config, samples, 0, rng, torch.device("cpu")) for _ in range(args.warmup + args.steps)]

    settings = {"fp32": _run(cfg, model, amp=False), "bf16": _run(cfg, model, amp=True)}
    if settings["bf16"].amp_dtype is None:
        print("this CPU has no native bf16: the trainer runs float32 here (nothing to compare)")
        settings.pop("bf16")
    elif args.channels_last:
        settings["bf16+cl"] = _run(cfg, model, amp=True)
    times: dict[str, list[float]] = {k: [] for k in settings}
    finite = {k: True for k in settings}
    for i, batch in enumerate(batches):  # alternate settings step by step
        for name, run in settings.items():
            b = batch
            if name.endswith("+cl"):
                b = {**batch, "x": batch["x"].contiguous(memory_format=torch.channels_last)}
            t0 = time.perf_counter()
            parts, _ = run.train_step(run.model, b)
            dt = time.perf_counter() - t0
            finite[name] &= math.isfinite(parts["loss"].item())
            if i >= args.warmup:
                times[name].append(dt)

    base = statistics.median(times["fp32"])
    print(f"training step, batch {args.batch} x {args.crop}^2 crops, {args.threads} threads, {args.steps} steps each "
          f"({torch.backends.cpu.get_cpu_capability()})")
    print(f"{'setting':<9} {'median s/step':>14} {'images/s':>9} {'steps/s vs fp32':>16} {'losses finite':>14}")
    for name, t in times.items():
        med = statistics.median(t)
        print(f"{name:<9} {med:>14.3f} {args.batch / med:>9.2f} {base / med:>15.2f}x {str(finite[name]):>14}")
    return 0 if all(finite.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
