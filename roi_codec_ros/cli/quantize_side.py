"""``roi-codec quantize-side``: give a model file's entropy side an integer network (exact in float32), write a new file.

    roi-codec quantize-side --model default --images ../shared/data/train/nuscenes_front \\
        --images ../shared/data/train/bsds500 --max-images 40 \\
        --video highway.mp4:60: --video pedestrians.avi:60:400 --hz 10 --out models/integer.pt

The coding path then computes h_s, i_s, the scale combiner (and a P-frame model's context net) on integers in
float32 instead of the float networks in float64: the same scale indexes on every machine, for about a third of the
time (``roi_codec_ros/codec/integer_side.py``).  Nothing is trained: the integers are calibrated on the decoded side
latents of the given images (the intra model) and of the residuals of the given clips (the P-frame model, which a
model from ``train-inter`` has; run this after train-inter).  Every fifth image and the last fifth of each clip are
held out: their bytes under the float64 and the integer side are printed.  ``--video``/``--sequences`` as in
``train-inter``.  Exit codes: 0 success, 1 input/model/output error, 2 bad command line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import CliError, add_model_args, float_list, set_threads, write_derived_model
from .train_inter import IMAGE_SUFFIXES, _sequence_clips, _video_clip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roi-codec quantize-side",
                                description="Give a model's entropy side an integer network (exact in float32).")
    p.add_argument("command", help=argparse.SUPPRESS)
    p.add_argument("--images", action="append", default=[], metavar="DIR",
                   help="a folder of still images for the intra entropy model (repeatable)")
    p.add_argument("--max-images", type=int, default=40, help="images taken per folder, sorted by name (default: %(default)s)")
    p.add_argument("--video", action="append", default=[], metavar="PATH[:FIRST[:LAST]]",
                   help="a video clip, frames FIRST..LAST-1 at --hz, for the P-frame entropy model (repeatable)")
    p.add_argument("--sequences", action="append", default=[], metavar="DIR",
                   help="folders of frame sequences, one clip per folder of >= 2 images (repeatable)")
    p.add_argument("--hz", type=float, default=10.0, help="frame rate videos are resampled to (default: %(default)s)")
    p.add_argument("--rates", type=float_list, default=[0.0, 0.5, 1.0],
                   help="rate knobs the side latents are taken at (default: 0,0.5,1)")
    p.add_argument("--out", required=True, help="the model file to write")
    add_model_args(p)
    return p


def _images(folder: str, limit: int):
    import numpy as np
    from PIL import Image

    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if Path(folder).is_dir() else []
    if not paths:
        raise CliError(f"no images in {folder}")
    return [np.array(Image.open(p).convert("RGB")) for p in paths[:limit]]


def _image_bytes(codec, images, rates) -> int:
    return sum(len(codec.encode(rgb, rate=rate).data) for rgb in images for rate in rates)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not args.images:
        build_parser().error("give at least one --images folder (the intra entropy model's calibration)")
    if args.max_images < 2 or args.hz <= 0:
        build_parser().error("--max-images >= 2 and --hz > 0")
    try:
        import numpy as np

        from roi_codec_ros.codec import RoiCodec
        from roi_codec_ros.training.integer import inter_samples, intra_samples, with_integer_side
        from roi_codec_ros.training.inter import collect_latents, frame_bytes, split_clips

        set_threads(args.threads)
        model_path = args.model or "default"
        try:
            codec = RoiCodec.load(model_path, analysis_precision="fp32")
        except (FileNotFoundError, ValueError) as exc:
            raise CliError(str(exc)) from exc
        if codec.config.integer_side:
            print("note: the input model already has an integer side; it is recalibrated from the float networks")
        images = [rgb for folder in args.images for rgb in _images(folder, args.max_images)]
        calib, held = [rgb for i, rgb in enumerate(images) if i % 5 != 4], images[4::5]
        intra = intra_samples(codec, calib, args.rates)
        inter, val = None, []
        if codec.config.inter_prior:
            clips = [_video_clip(spec, args.hz) for spec in args.video]
            for root in args.sequences:
                clips += _sequence_clips(root)
            if not clips:
                raise CliError("this model has a P-frame entropy model: give --video or --sequences to calibrate it")
            train, val = split_clips(collect_latents(codec, clips, args.rates))
            inter = inter_samples(codec, train)
        elif args.video or args.sequences:
            print("note: the model has no P-frame entropy model: the clips are not used")
        model = with_integer_side(codec.model.cpu(), intra, inter)
        quantized = RoiCodec(model, info=codec.info, analysis_precision="fp32")
        float_bytes, int_bytes = _image_bytes(codec, held, args.rates), _image_bytes(quantized, held, args.rates)
        # the picture never depends on the entropy side: check it anyway on one held-out frame
        if held and not np.array_equal(codec.decode(codec.encode(held[0], rate=0.5).data),
                                       quantized.decode(quantized.encode(held[0], rate=0.5).data)):
            raise CliError("the integer side changed a decoded picture (it must only change the bytes)")
        report = {"held_out_images": len(held), "image_bytes": {"float64_side": float_bytes, "integer_side": int_bytes}}
        print(f"held-out images: {len(held)} x {len(args.rates)} rates: {float_bytes} bytes with the float64 side, "
              f"{int_bytes} with the integer side ({100 * (int_bytes / max(float_bytes, 1) - 1):+.3f} %)")
        if val:
            before = sum(r["p_bytes"] for r in frame_bytes(codec, val))
            after = sum(r["p_bytes"] for r in frame_bytes(quantized, val))
            report["p_frame_bytes"] = {"float64_side": before, "integer_side": after}
            print(f"held-out P-frame residuals: {before} bytes with the float64 side, {after} with the integer side "
                  f"({100 * (after / max(before, 1) - 1):+.3f} %)")
        write_derived_model(codec, model, args.out, "integer_side", {  # the CDF tables are the input model's
            "quantized_from": str(model_path), "image_folders": list(args.images), "max_images": args.max_images,
            "clips": list(args.video) + list(args.sequences), "rates": list(args.rates), "hz": args.hz, **report})
    except CliError as exc:
        print(f"roi-codec quantize-side: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
