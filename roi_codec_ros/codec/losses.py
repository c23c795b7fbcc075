"""ROI-weighted rate-distortion losses.

Two equivalent-up-to-scale forms are provided; ``qualcomm`` is the default because the model is trained
over ranges of beta and alpha (one model for all trade-offs) and its knobs map one-to-one onto them.

- ``qualcomm`` (Fathima et al. eq. 2):  ``L = beta * R + D_roi + (1/alpha) * D_bg``
- ``tum``      (Gorri Viudez eq. 8):    ``L = R + lambda * (a * D_roi + (1 - a) * D_bg)``

In both, ``R`` is bits per pixel (y + z + w) and ``D_region = (N_region / N) * MSE(x_region, x_hat_region)``
= sum of squared errors over the region's pixels / N, i.e. each distortion is normalised by its region's pixel
share (TUM eq. 8).  Distortion is measured on the 8-bit scale (MSE of values in [0, 255]) so beta has
CompressAI's units: ``beta = 1 / lambda_compressai`` at alpha = 1.

Mapping: dividing the TUM form by ``lambda * a`` gives ``R / (lambda a) + D_roi + ((1 - a) / a) D_bg``, so
``beta = 1 / (lambda * a)`` and ``alpha = a / (1 - a)``.  TUM's a = 0.5 (equal weights) is alpha = 1;
TUM's a = 0.995 is alpha = 199.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

PIXEL_SCALE = 255.0
LOSS_FORMS = ("qualcomm", "tum")


def bits_per_pixel(likelihoods: dict[str, Tensor], num_pixels: int) -> Tensor:
    """Per-sample rate in bits per pixel, summed over all latents (y, z, w)."""
    total = 0.0
    for lik in likelihoods.values():
        total = total + torch.log(lik).flatten(1).sum(dim=1)
    return total / (-math.log(2) * num_pixels)


def region_distortions(x: Tensor, x_hat: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample (D_roi, D_bg): squared error summed over each region (8-bit scale) / number of pixels."""
    err = ((x - x_hat) * PIXEL_SCALE).pow(2).mean(dim=1, keepdim=True)  # mean over colour channels
    n = err[0].numel()
    d_roi = (err * mask).flatten(1).sum(dim=1) / n
    d_bg = (err * (1.0 - mask)).flatten(1).sum(dim=1) / n
    return d_roi, d_bg


def rd_loss(
    out: dict[str, Any],
    x: Tensor,
    mask: Tensor,
    beta: Tensor,
    alpha: Tensor,
    form: str = "qualcomm",
) -> dict[str, Tensor]:
    """Batch-mean ROI rate-distortion loss and its parts.

    For ``form="tum"`` the per-sample ``beta``/``alpha`` are converted with the mapping in the module docstring
    (``lambda = 1 / (beta * a)`` with ``a = alpha / (1 + alpha)``), so both forms train the same operating points.
    """
    n_pixels = x.shape[-2] * x.shape[-1]
    bpp = bits_per_pixel(out["likelihoods"], n_pixels)
    d_roi, d_bg = region_distortions(x, out["x_hat"], mask)
    if form == "qualcomm":
        loss = beta * bpp + d_roi + d_bg / alpha
    elif form == "tum":
        a = alpha / (1.0 + alpha)
        lam = 1.0 / (beta * a)
        loss = bpp + lam * (a * d_roi + (1.0 - a) * d_bg)
    else:
        raise ValueError(f"unknown loss form {form!r}; choose one of {LOSS_FORMS}")
    mse = ((x - out["x_hat"]) * PIXEL_SCALE).pow(2).flatten(1).mean(dim=1)
    return {"loss": loss.mean(), "bpp": bpp.mean(), "mse": mse.mean(), "d_roi": d_roi.mean(), "d_bg": d_bg.mean()}
