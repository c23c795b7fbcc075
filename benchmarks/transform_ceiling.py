"""Where a model's quality is lost: the transforms (g_s(g_a(x)) without quantisation) vs the quantisation of y.

    python benchmarks/transform_ceiling.py FOLDER [--model PATH|default] [--rates 0,0.5,1] [--max-images 6]

For each rate knob, on the images of FOLDER (uniform quality, no detector features), prints the mean PSNR of
- ``continuous``: g_s(g_a(x)) with y unquantised — the ceiling the transforms allow at that rate;
- ``rounded``: g_s(round(y)) — what the decoder gets (the stream's y is round(y - mean) + mean with mean 0 here);
and the likelihood bpp. If ``continuous`` is itself low, more bits cannot buy quality: the transforms (their
capacity or their training) are the limit, not the entropy model or the rate range.
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import torch

from roi_codec_ros.codec.checkpoint import DEFAULT_MODEL_PATH, load_model_file
from roi_codec_ros.files import image_files, read_image_rgb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--model", default="default")
    ap.add_argument("--rates", default="0,0.25,0.5,0.75,1")
    ap.add_argument("--max-images", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, _ = load_model_file(DEFAULT_MODEL_PATH if args.model == "default" else args.model)
    model.eval()
    paths = image_files(args.folder)[: args.max_images]
    rates = [float(r) for r in args.rates.split(",")]
    print(f"{len(paths)} images of {args.folder}; model {args.model}")
    print(f"{'rate':>5} {'bpp':>7} {'continuous dB':>14} {'rounded dB':>11} {'lost to rounding':>17}")
    for rate in rates:
        bpps, cont, rounded = [], [], []
        for path in paths:
            x = torch.from_numpy(read_image_rgb(path)).permute(2, 0, 1)[None].float() / 255
            h, w = x.shape[-2:]
            ph, pw = -(-h // model.PAD_MULTIPLE) * model.PAD_MULTIPLE, -(-w // model.PAD_MULTIPLE) * model.PAD_MULTIPLE
            xp = torch.nn.functional.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
            with torch.no_grad():
                emb = model.rate_embedding(torch.tensor([rate]))
                feats = model.zero_features(1, ph, pw, "cpu")
                y = model.analysis(xp, torch.ones(1, 1, ph, pw), feats, emb, (h, w))
                out = model.latent_codec(y, model.object_features(feats, y, (h, w)))
                bits = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values())
                bpps.append(bits.item() / (h * w))
                for store, latent in ((cont, y), (rounded, torch.round(y))):
                    x_hat = model.synthesis(latent, emb)[..., :h, :w].clamp(0, 1)
                    mse = ((x_hat - x) * 255).pow(2).mean().item()
                    store.append(10 * math.log10(255**2 / max(mse, 1e-10)))
        c, r = float(np.mean(cont)), float(np.mean(rounded))
        print(f"{rate:>5.2f} {np.mean(bpps):>7.3f} {c:>14.2f} {r:>11.2f} {c - r:>16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
