"""How far explicit latent scaling can lift ROI quality with the model's transforms (issue 14: ≥ 3 dB over the
uniform mode's ceiling at rate 1 and the highest ROI weight).

    python benchmarks/roi_ceiling.py FOLDER --detector YOLO.pt [--model default] [--stride 4] [--rate 1]
                                     [--roi-weight 60] [--max-frames 25] [--threads 1]

Frames, ROI and features as ``roi-codec eval --detector``: the detector's boxes (default ROI selection) as the 0/1
ROI mask, its features to the encoder, PSNR inside/outside the boxes.  Per frame it decodes:

- ``uniform``: α = 1, coded and decoded: the uniform mode's ceiling at this rate (the criterion's reference);
- ``coded G=8``: α = ROI weight, ``roi_gain`` 8 (the bitstream's largest), coded and decoded;
- ``ROI continuous``: α = ROI weight, y left unquantised on the ROI's latent cells (the cells a gain map scales:
  a gain -> infinity) and rounded elsewhere.  No latent gain can do better than this with these transforms;
- ``all continuous``: y unquantised everywhere (``benchmarks/transform_ceiling.py``'s ceiling, with the ROI).

If ``ROI continuous`` is itself less than 3 dB above ``uniform``, the criterion needs better transforms (training),
not a finer quantisation of the ROI.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from roi_codec_ros.codec import RoiCodec, RoiHyperprior
from roi_codec_ros.codec.api import gain_map_from_mask, gain_tensor, padded_size
from roi_codec_ros.codec.bitstream import code_to_rate, rate_to_code
from roi_codec_ros.evaluation.metrics import boxes_to_mask, psnr
from roi_codec_ros.evaluation.runner import Frame, RoiSource
from roi_codec_ros.files import image_files, read_image_rgb

VARIANTS = ("uniform", "coded G=8", "ROI continuous", "all continuous")


def ceiling_row(codec: RoiCodec, roi_source: RoiSource, image: np.ndarray, rate: float, roi_weight: float) -> dict | None:
    """ROI/background PSNR of each variant for one frame; None when the detector finds no ROI."""
    context = roi_source(Frame(name="", image=image))
    h, w = image.shape[:2]
    mask = boxes_to_mask(context.boxes, (h, w))
    if not mask.any():
        return None
    roi_mask = mask.astype(np.float32)
    decoded = {
        "uniform": codec.decode(codec.encode(image, None, context.features, rate=rate).data),
        "coded G=8": codec.decode(codec.encode(image, roi_mask, context.features, rate=rate, roi_weight=roi_weight,
                                               roi_gain=8.0).data),
    }
    y = codec.frame_latents(image, rate=rate, roi_mask=roi_mask, roi_weight=roi_weight, features=context.features,
                            rounded=False)[0]
    cells = gain_tensor(gain_map_from_mask(roi_mask, 8.0, padded_size(h, w, RoiHyperprior.PAD_MULTIPLE)),
                        tuple(y.shape[-2:])) > 1
    rate_q = code_to_rate(rate_to_code(rate))
    for name, latents in (("ROI continuous", torch.where(cells, y, torch.round(y))), ("all continuous", y)):
        decoded[name] = codec._synthesize(latents, rate_q, h, w)[0]
    return {name: (psnr(image, d, mask), psnr(image, d, ~mask)) for name, d in decoded.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--detector", required=True, help="YOLOv8 weights: ROI boxes and features")
    ap.add_argument("--model", default="default")
    ap.add_argument("--stride", type=int, default=4, help="every Nth frame (as roi-codec eval --stride)")
    ap.add_argument("--max-frames", type=int, default=25)
    ap.add_argument("--rate", type=float, default=1.0)
    ap.add_argument("--roi-weight", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from roi_codec_ros.detector import DetectorAdapter

    codec = RoiCodec.load(args.model)
    roi_source = RoiSource("detector", detector=DetectorAdapter.from_weights(args.detector))
    torch.set_num_threads(args.threads)  # the detector's predictor may have changed it
    paths = image_files(args.folder)[:: args.stride][: args.max_frames]
    rows = [r for r in (ceiling_row(codec, roi_source, read_image_rgb(p), args.rate, args.roi_weight) for p in paths) if r]
    if not rows:
        print("no frame with a detected ROI", file=sys.stderr)
        return 1
    print(f"{len(rows)} frames of {args.folder} with an ROI; model {codec.model_id[:16]}; rate {args.rate}, "
          f"ROI weight {args.roi_weight} (uniform: 1)")
    ceiling = float(np.mean([r["uniform"][0] for r in rows]))
    print(f"{'variant':<16} {'ROI dB':>7} {'bg dB':>7} {'ROI - uniform ROI':>18}")
    for name in VARIANTS:
        roi = float(np.mean([r[name][0] for r in rows]))
        bg = float(np.mean([r[name][1] for r in rows]))
        print(f"{name:<16} {roi:>7.2f} {bg:>7.2f} {roi - ceiling:>+17.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
