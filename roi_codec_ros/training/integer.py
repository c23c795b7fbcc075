"""Post-training quantisation of a model's entropy side to an integer network (``codec/integer_side.py``).

The transforms and every float weight stay as they are; the model gains ``integer_side`` and, for each of its
entropy models, the integer h_s / i_s / combiner (and context net) that the coding path then uses instead of the
float64 networks.  Calibration needs the decoded side latents the coders see:

- the intra model: ``intra_samples`` on still images (any size, each at several rates);
- the P-frame model: ``inter_samples`` on the residuals of consecutive video frames (``training.inter``'s
  ``LatentClip``), with the predictions as context.

``roi-codec quantize-side`` drives it and measures the bytes before and after on held-out frames.
"""
from __future__ import annotations

import copy
from dataclasses import replace
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from roi_codec_ros.codec.integer_side import quantize_side
from roi_codec_ros.codec.latent_codec import _quantize_side
from roi_codec_ros.codec.model import RoiHyperprior

from .inter import LatentClip


def _decoded_side(coder, side: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """(z_hat, w_hat) in float64, as the decoder of these side latents gets them."""
    return _quantize_side(coder.hyper, side["z"])[0], _quantize_side(coder.object, side["w"])[0]


@torch.no_grad()
def intra_samples(codec, images: Iterable[np.ndarray], rates: Sequence[float]) -> list[tuple[Tensor, Tensor, None]]:
    """(z_hat, w_hat, None) of every image at every rate through ``codec``'s encoder (no ROI, no detector features)."""
    out = []
    part = codec.model.latent_codec
    for rgb in images:
        for rate in rates:
            y, f = codec.frame_latents(rgb, rate=rate, rounded=False)
            side = part.analyse_side(y.to(codec.device), f.to(codec.device))
            out.append(_decoded_side(part, side) + (None,))
    return out


@torch.no_grad()
def inter_samples(codec, clips: Sequence[LatentClip]) -> list[tuple[Tensor, Tensor, Tensor]]:
    """(z_hat, w_hat, prediction) of every P-frame residual of ``clips`` under ``codec``'s P-frame entropy model."""
    part = codec.model.inter_codec
    out = []
    for clip in clips:
        for t in range(1, clip.latents.shape[0]):
            reference = clip.predictions[t][None]
            r = clip.latents[t][None] - reference
            out.append(_decoded_side(part, part.analyse_side(r, clip.features[t][None])) + (reference,))
    return out


def with_integer_side(model: RoiHyperprior, intra: Sequence[tuple], inter: Sequence[tuple] | None = None) -> RoiHyperprior:
    """A copy of ``model`` with ``integer_side=True`` and each entropy model's integer network calibrated on its
    samples (``inter`` is required when the model has a P-frame entropy model)."""
    if model.config.inter_prior and not inter:
        raise ValueError("this model has a P-frame entropy model: calibrate it on video residuals too")
    out = copy.deepcopy(model).cpu().eval()
    for part in out.entropy_models():
        part.integer = None  # quantised from the float networks only
    out.config = replace(model.config, integer_side=True)
    out.latent_codec.integer = quantize_side(out.latent_codec, intra)
    if model.config.inter_prior:
        out.inter_codec.integer = quantize_side(out.inter_codec, inter)
    return out


__all__ = ["inter_samples", "intra_samples", "with_integer_side"]
