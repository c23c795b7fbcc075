"""Accelerator burst: continue the default model's training on a lent GPU for a few minutes, then check the GPU codec.

A lent machine gets a copy of the working tree (at most 64 MiB of extra, ignored files) and no ``../shared``, so the
burst runs in two steps:

    # here: pack a training subset, the start weights and the detector into <= 60 MiB (git-ignored folder)
    python scripts/gpu_burst.py pack --config configs/default_long.yaml --out runs/burst_pack
    # on the lent machine (device tool, carry runs/burst_pack): train for N minutes with AMP, then check
    python scripts/gpu_burst.py run --pack runs/burst_pack --minutes 8 --device cuda --out "$OUT/burst"

``run`` writes to ``--out``: ``model.pt`` (the trained weights as a float32 model file, <= 16 MiB; no optimiser
state), ``burst.json`` (steps, steps/s, images/s, validation RD points before and after, device) and, when
``scripts/gpu_check.py`` exists, ``gpu_check.json`` (CUDA/fp16 decode parity with the CPU, encode/decode fps at
1920x1080). Back here, evaluate ``model.pt`` against the current best; to continue from it, start a fresh state
folder with ``init_from`` pointing at it. The whole path runs on CPU in the test suite
(``--minutes 0.2 --device cpu``).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from roi_codec_ros.codec.checkpoint import export_model  # noqa: E402
from roi_codec_ros.codec.model import build_model  # noqa: E402
from roi_codec_ros.training.config import TrainConfig  # noqa: E402
from roi_codec_ros.training.data import list_images, load_rgb, split_train_val, Sample  # noqa: E402

PACK_CONFIG = "config.yaml"
MIB = 1 << 20


def _start_weights(cfg: TrainConfig, out: Path) -> Path:
    """The run's latest weights (its resumable checkpoint) as a float32 model file, else its warm-start file."""
    ckpt = Path(cfg.out_dir) / "last.pt"
    model = build_model(cfg.model_config)
    if ckpt.is_file():
        model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["model"])
        source = str(ckpt)
    elif cfg.init_from:
        from roi_codec_ros.training.trainer import warm_start

        source = cfg.init_from
        warm_start(model, source)
    else:
        source = "random initialisation"
    export_model(model, out, fp16=False, uses_features=cfg.use_features, metadata={"burst_start_from": source})
    return out


def pack(args: argparse.Namespace) -> int:
    cfg = TrainConfig.load(args.config)
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    budget = int(args.max_mib * MIB)
    used = _start_weights(cfg, out / "start_model.pt").stat().st_size
    detector = None
    if cfg.detector_weights and cfg.use_features and Path(cfg.detector_weights).is_file():
        detector = out / "detector.pt"
        shutil.copyfile(cfg.detector_weights, detector)
        used += detector.stat().st_size
    if used >= budget:
        raise SystemExit(f"start weights and detector alone take {used / MIB:.1f} MiB of the {args.max_mib} MiB budget")

    # Round-robin over the sources, training split only (the validation images stay out, as in the run).
    rng = random.Random(args.seed)
    queues = []
    for i, source in enumerate(cfg.sources):
        paths = [str(p) for p in list_images(source.path)]
        train, _ = split_train_val([Sample(p, None) for p in paths], cfg.val_fraction, cfg.seed)
        files = [s.path for s in train]
        rng.shuffle(files)
        queues.append((i, source, files))
    sources_out, counts = [], {}
    for i, source, _ in queues:
        (out / "images" / f"{i:02d}").mkdir()
        sources_out.append({"path": f"images/{i:02d}", "kind": "images", "roi": source.roi})
    full = False
    while not full and any(files for _, _, files in queues):
        for i, source, files in queues:
            if not files:
                continue
            path = files.pop()
            target = out / "images" / f"{i:02d}" / (Path(path).stem + ".jpg")
            Image.fromarray(load_rgb(path, cfg.max_side)).save(target, quality=args.quality)
            size = target.stat().st_size
            if used + size + 64 * 1024 > budget:  # keep room for the config
                target.unlink()
                full = True
                break
            used += size
            counts[i] = counts.get(i, 0) + 1
    data = cfg.to_dict()
    data.update(
        sources=[s for i, s in enumerate(sources_out) if counts.get(i)],
        detector_weights="detector.pt" if detector else None,
        detector_cache=None,
        init_from="start_model.pt",
        best_export_path=None,
        export_path=None,
    )
    (out / PACK_CONFIG).write_text(yaml.safe_dump(data, sort_keys=False))
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"packed {sum(counts.values())} images ({', '.join(f'{cfg.sources[i].path}: {n}' for i, n in counts.items())}), "
          f"{total / MIB:.1f} MiB in {out}")
    return 0


def _pack_config(pack_dir: Path, args: argparse.Namespace, out_dir: Path) -> TrainConfig:
    data = yaml.safe_load((pack_dir / PACK_CONFIG).read_text())
    for s in data["sources"]:
        s["path"] = str(pack_dir / s["path"])
    for key in ("detector_weights", "init_from"):
        if data.get(key):
            data[key] = str(pack_dir / data[key])
    data.update(
        out_dir=str(out_dir),
        device=args.device,
        amp=True,
        threads=args.threads,
        max_minutes=args.minutes,
        steps=10**9,
        stop_after=None,
        schedule="constant",
        warmup_steps=args.warmup_steps,
        lr=args.lr or data.get("lr", 1e-4),
        batch_size=args.batch or data.get("batch_size", 8),
        val_every=10**9,
        checkpoint_minutes=10**6,
    )
    return TrainConfig.from_dict(data)


def run(args: argparse.Namespace) -> int:
    from roi_codec_ros.training.trainer import Run, amp_dtype, export_trained, load_samples, rd_score, train, validate

    pack_dir, out = Path(args.pack).resolve(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="burst_run_") as tmp:
        cfg = _pack_config(pack_dir, args, Path(tmp))
        _, val_set, _ = load_samples(cfg)
        before = Run(cfg, 0, 1)
        before.resume_or_init()
        points_before = validate(before.model, val_set, cfg, before.device)
        del before
        t0 = time.time()
        ckpt = train(cfg)
        wall = time.time() - t0
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model = build_model(cfg.model_config)
        model.load_state_dict(state["model"])
        device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
        points_after = validate(model.to(device), val_set, cfg, device)
        model_path = export_trained(model.cpu(), cfg, out / "model.pt", state["step"], fp16=False,
                                    metadata={"burst_device": str(device), "burst_train_wall_s": state.get("wall_s")})
    steps, train_s = state["step"], state.get("wall_s") or wall
    report = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "minutes": args.minutes,
        "steps": steps,
        "train_wall_s": train_s,
        "steps_per_s": steps / train_s if train_s else None,
        "images_per_s": steps * cfg.batch_size / train_s if train_s else None,
        "batch_size": cfg.batch_size,
        "crop": max(s for _, s in cfg.crop_schedule),
        "amp": str(amp_dtype(cfg, device)),
        "val_before": points_before,
        "val_after": points_after,
        "val_score_before": rd_score(points_before) if points_before else None,
        "val_score_after": rd_score(points_after) if points_after else None,
        "model_file": str(model_path),
        "model_mib": model_path.stat().st_size / MIB,
    }
    check = REPO / "scripts" / "gpu_check.py"
    if check.is_file() and not args.skip_check:
        cmd = [sys.executable, str(check), "--model", str(model_path), "--device", args.device,
               "--frames", str(args.check_frames), "--out", str(out / "gpu_check.json")]
        report["gpu_check_rc"] = subprocess.run(cmd).returncode
    (out / "burst.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if not k.startswith("val_") or "score" in k}, indent=1))
    return 0 if math.isfinite(report["val_score_after"] or 0.0) else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="pack a training subset, start weights and detector into one folder")
    p.add_argument("--config", default=str(REPO / "configs" / "default_long.yaml"))
    p.add_argument("--out", default=str(REPO / "runs" / "burst_pack"))
    p.add_argument("--max-mib", type=float, default=60.0)
    p.add_argument("--quality", type=int, default=92, help="JPEG quality of the packed images")
    p.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("run", help="train from a pack for some minutes, write model.pt + burst.json, check the GPU codec")
    r.add_argument("--pack", default=str(REPO / "runs" / "burst_pack"))
    r.add_argument("--out", required=True)
    r.add_argument("--minutes", type=float, required=True)
    r.add_argument("--device", default="cuda")
    r.add_argument("--batch", type=int, help="batch size (default: the pack's config)")
    r.add_argument("--lr", type=float)
    r.add_argument("--warmup-steps", type=int, default=200)
    r.add_argument("--threads", type=int)
    r.add_argument("--check-frames", type=int, default=4)
    r.add_argument("--skip-check", action="store_true")
    args = ap.parse_args(argv)
    return pack(args) if args.command == "pack" else run(args)


if __name__ == "__main__":
    sys.exit(main())
