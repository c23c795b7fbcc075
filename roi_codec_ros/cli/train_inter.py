"""``roi-codec train-inter``: train the P-frames' entropy model of a model file on video, write a new model file.

    roi-codec train-inter --model default --video highway.mp4:60: --video pedestrians.avi:60:400 \\
        --sequences vimeo_septuplets/sequences --hz 10 --steps 3000 --out models/with_inter.pt

Only the P-frame entropy model (``RoiHyperprior.inter_codec``) is trained, on the rate of the latent residuals of
consecutive frames; the transforms and the intra entropy model are copied unchanged (``roi_codec_ros.training.
inter``).  ``--video PATH[:FIRST[:LAST]]`` takes frames FIRST..LAST-1 after resampling to ``--hz`` (leave out the
frames you evaluate on); ``--sequences DIR``: every folder under DIR holding two or more images is one clip (its
images sorted by name, used at their own rate).  The last fifth of each clip validates: the bytes of its residuals
coded by the input model (its P-frame entropy model if it has one, else the intra one) and by the trained one are
printed.  Exit codes: 0
success, 1 input/model/output error, 2 bad command line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import CliError, add_model_args, float_list, set_threads, write_derived_model

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roi-codec train-inter", description="Train the P-frames' entropy model.")
    p.add_argument("command", help=argparse.SUPPRESS)
    p.add_argument("--video", action="append", default=[], metavar="PATH[:FIRST[:LAST]]",
                   help="a video clip, frames FIRST..LAST-1 at --hz (repeatable)")
    p.add_argument("--sequences", action="append", default=[], metavar="DIR",
                   help="folders of frame sequences, one clip per folder of >= 2 images (repeatable)")
    p.add_argument("--hz", type=float, default=10.0, help="frame rate videos are resampled to (default: %(default)s)")
    p.add_argument("--rates", type=float_list, default=[0.0, 0.25, 0.5, 0.75, 1.0],
                   help="rate knobs the latents are taken at (default: 0,0.25,0.5,0.75,1)")
    p.add_argument("--steps", type=int, default=3000, help="training steps (default: %(default)s)")
    p.add_argument("--batch", type=int, default=8, help="residual crops per step (default: %(default)s)")
    p.add_argument("--crop", type=int, default=24, help="crop side in latents (16 pixels each) (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fp32", action="store_true", help="store the weights in fp32 (default fp16, as shipped models)")
    p.add_argument("--out", required=True, help="the model file to write")
    add_model_args(p)
    return p


def _video_clip(spec: str, hz: float):
    from roi_codec_ros.evaluation.bags import _video_frames

    path, first, last = spec, 0, None
    parts = spec.rsplit(":", 2)
    if len(parts) > 1 and all(x == "" or x.isdigit() for x in parts[1:]):
        path, bounds = parts[0], parts[1:] + [""]
        first, last = int(bounds[0] or 0), int(bounds[1]) if bounds[1] else None
    if not Path(path).is_file():
        raise CliError(f"video not found: {path}")
    frames, _ = _video_frames(Path(path), hz)
    clip = [rgb for i, rgb in enumerate(frames) if i >= first and (last is None or i < last)]
    if len(clip) < 2:
        raise CliError(f"{spec}: fewer than 2 frames in that range")
    return f"{Path(path).name}[{first}:{'' if last is None else last}]", clip


def _sequence_clips(root: str):
    import numpy as np
    from PIL import Image

    base = Path(root)
    if not base.is_dir():
        raise CliError(f"sequence folder not found: {root}")
    clips = []
    for folder in sorted({p.parent for p in base.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}):
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(images) >= 2:
            clips.append((str(folder.relative_to(base)), [np.array(Image.open(p).convert("RGB")) for p in images]))
    if not clips:
        raise CliError(f"{root}: no folder with two or more images")
    return clips


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not args.video and not args.sequences:
        build_parser().error("give at least one --video or --sequences")
    if args.steps < 1 or args.batch < 1 or args.crop < 2 or args.hz <= 0:
        build_parser().error("--steps, --batch >= 1, --crop >= 2 and --hz > 0")
    try:
        from roi_codec_ros.codec import RoiCodec
        from roi_codec_ros.training.inter import (calibrate_max_cost, coded_bytes, collect_latents, frame_bytes, split_clips,
                                                  train_inter_codec, with_inter_codec)

        set_threads(args.threads)
        clips = [_video_clip(spec, args.hz) for spec in args.video]
        for root in args.sequences:
            clips += _sequence_clips(root)
        model_path = args.model or "default"
        try:
            codec = RoiCodec.load(model_path, analysis_precision="fp32")
        except (FileNotFoundError, ValueError) as exc:
            raise CliError(str(exc)) from exc
        latents = collect_latents(codec, clips, args.rates)
        train, val = split_clips(latents)
        before = coded_bytes(codec, val)
        model = train_inter_codec(with_inter_codec(codec.model.cpu()), train, steps=args.steps, batch=args.batch,
                                  crop=args.crop, lr=args.lr, seed=args.seed)
        trained = RoiCodec(model, info=codec.info, analysis_precision="fp32")
        rows = frame_bytes(trained, val)
        after, intra = sum(r["p_bytes"] for r in rows), sum(r["i_bytes"] for r in rows)
        max_cost = calibrate_max_cost(rows)
        residuals = len(rows)
        had = "its own P-frame" if codec.config.inter_prior else "the intra"
        print(f"validation: {residuals} residuals of {len(val)} held-out clip parts: {before} bytes under the input "
              f"model's ({had} entropy model), {after} with the trained one ({100 * (after / max(before, 1) - 1):+.1f} %); "
              f"as intra frames {intra}; P-frames below a cost proxy of {max_cost:g} save the most")
        # train_inter_codec updated the new tables; the intra ones stay
        write_derived_model(codec, model, args.out, "inter_prior", {
            "trained_from": str(model_path), "clips": [name for name, _ in clips], "rates": list(args.rates),
            "hz": args.hz, "steps": args.steps, "batch": args.batch, "crop": args.crop, "lr": args.lr,
            "validation_bytes": {"input_model": before, "trained": after, "intra_frames": intra,
                                 "residuals": residuals},
            "p_frame_max_cost": max_cost}, fp16=not args.fp32)
    except CliError as exc:
        print(f"roi-codec train-inter: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
