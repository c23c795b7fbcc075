"""Test-time control: the rate knob (beta) and the ROI weight (alpha), and how they enter the network.

Fathima et al., "A neural video codec with spatial rate-distortion control" (WACV 2023):
- beta conditions encoder and decoder through conditional convolutions: every conv is followed by a
  per-channel scale and shift looked up from a *soft* one-hot embedding of beta over a few bins
  (interpolated between neighbouring bins, not rounded).
- alpha enters only the encoder, as the weighted ROI mask ``m_alpha = (1 - m) * u_alpha + m`` concatenated
  with the image; ``u_alpha = 1`` (alpha = 1) means uniform quality.

Public knobs and their mapping (one place for it):
- ``rate`` in [0, 1]: 1 = most bits.  ``log2 beta = log2 beta_max - rate * (log2 beta_max - log2 beta_min)``
  (paper eq. 5 with ``u_beta = 1 - rate``).  The bitstream carries ``rate`` as a 16-bit integer.
- ``roi_weight`` = alpha in [alpha_min, alpha_max] = [1, 60] by default; ``u_alpha`` follows eq. 5 applied to
  ``1 - u_alpha``:  ``u_alpha = 1 - log(alpha / alpha_min) / log(alpha_max / alpha_min)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from compressai.layers import GDN
from torch import Tensor, nn


@dataclass(frozen=True)
class ControlRanges:
    """Ranges of the two test-time knobs a model was trained for (stored in its checkpoint)."""

    beta_min: float = 8.0  # most bits (~CompressAI quality 7 in their lambda units: lambda = 1/beta)
    beta_max: float = 512.0  # fewest bits (~quality 1)
    alpha_min: float = 1.0
    alpha_max: float = 60.0

    def beta(self, rate: float | Tensor) -> float | Tensor:
        """Lagrangian rate weight beta for a rate knob in [0, 1] (1 = most bits)."""
        lo, hi = math.log2(self.beta_min), math.log2(self.beta_max)
        if isinstance(rate, Tensor):
            return torch.exp2(hi - rate * (hi - lo))
        return 2.0 ** (hi - float(rate) * (hi - lo))

    def rate_for_beta(self, beta: float) -> float:
        lo, hi = math.log2(self.beta_min), math.log2(self.beta_max)
        return (hi - math.log2(beta)) / (hi - lo)

    def u_alpha(self, alpha: float | Tensor) -> float | Tensor:
        """Mask value ``u_alpha`` in [0, 1] given to background pixels for an ROI weight alpha."""
        span = math.log(self.alpha_max / self.alpha_min)
        if isinstance(alpha, Tensor):
            return 1.0 - torch.log(alpha / self.alpha_min) / span
        return 1.0 - math.log(float(alpha) / self.alpha_min) / span

    def alpha(self, u_alpha: float | Tensor) -> float | Tensor:
        span = math.log(self.alpha_max / self.alpha_min)
        if isinstance(u_alpha, Tensor):
            return self.alpha_min * torch.exp((1.0 - u_alpha) * span)
        return self.alpha_min * math.exp((1.0 - float(u_alpha)) * span)

    def check(self, rate: float, roi_weight: float) -> None:
        if not (0.0 <= rate <= 1.0) or math.isnan(rate):
            raise ValueError(f"rate must be in [0, 1] (1 = most bits), got {rate}")
        if not (self.alpha_min <= roi_weight <= self.alpha_max) or math.isnan(roi_weight):
            raise ValueError(
                f"roi_weight must be in [{self.alpha_min:g}, {self.alpha_max:g}] (1 = uniform quality), got {roi_weight}"
            )


def weighted_roi_mask(mask: Tensor, u_alpha: Tensor) -> Tensor:
    """``m_alpha = (1 - m) * u_alpha + m`` for a (B,1,H,W) mask in [0,1] and per-sample u_alpha (B,)."""
    return (1.0 - mask) * u_alpha.view(-1, 1, 1, 1) + mask


def soft_one_hot(rate: Tensor, bins: int) -> Tensor:
    """Soft one-hot embedding (B, bins) of rate in [0, 1]: linear interpolation between neighbouring bins."""
    position = rate.clamp(0.0, 1.0) * (bins - 1)
    lower = position.floor().clamp(max=bins - 2)
    frac = (position - lower).unsqueeze(1)
    index = torch.arange(bins, device=rate.device, dtype=rate.dtype).unsqueeze(0)
    lower = lower.unsqueeze(1)
    return (index == lower).to(rate.dtype) * (1.0 - frac) + (index == lower + 1).to(rate.dtype) * frac


class ConditionalScaleShift(nn.Module):
    """Per-channel scale and shift of a conv's output from the rate embedding (the paper's condition block).

    Initialised to the identity so a single-rate model warm-starts exactly.
    """

    def __init__(self, channels: int, bins: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(bins, channels))
        self.shift = nn.Parameter(torch.zeros(bins, channels))

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        scale = (embedding @ self.scale).to(x.dtype)[:, :, None, None]
        shift = (embedding @ self.shift).to(x.dtype)[:, :, None, None]
        return torch.addcmul(shift, x, scale)  # one fused pass over x (x * scale + shift)

    def fold(self, weight: Tensor, bias: Tensor, embedding: Tensor) -> tuple[Tensor, Tensor]:
        """The weights and bias of ``conv`` such that ``conv'(x) = self(conv(x), embedding)`` (one frame's
        embedding): no pass over the conv's output (encoder-only, see ``RoiHyperprior.analysis(for_coding=True)``)."""
        if embedding.shape[0] != 1:
            raise ValueError("folding the rate condition into a convolution needs one frame's embedding")
        scale, shift = (embedding @ self.scale)[0], (embedding @ self.shift)[0]
        return weight * scale.view(-1, 1, 1, 1), bias * scale + shift


class ChannelMatmulGDN(GDN):
    """CompressAI's GDN/IGDN with the channel mixing done as one matrix product instead of a 1x1 convolution.

    Same parameters and maths (``y = x * (beta + gamma @ x^2)^(-1/2)``, or ``^(1/2)`` inverse); only the kernel
    differs: oneDNN's 1x1 convolution changes its summation order with the thread count, so the decoded pixels of the
    same bitstream differed by a few 1e-6 (and then an 8-bit step here and there) between a 1-thread and a 2-thread
    process. ``addmm`` over the channel axis gives the same bits for every thread count measured and is faster.
    """

    in_place_inference = True  # False: the earlier out-of-place coding path (benchmarks compare the two)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        beta = self.beta_reparam(self.beta)
        gamma = self.gamma_reparam(self.gamma)
        # NHWC view: free for channels-last inputs (the CPU encoder), one copy otherwise
        rows = x.permute(0, 2, 3, 1).reshape(-1, c)
        norm = torch.addmm(beta, rows * rows, gamma.t())
        if torch.is_grad_enabled() or not self.in_place_inference:  # training: out of place, autograd keeps what it needs
            norm = norm.reshape(b, h, w, c).permute(0, 3, 1, 2)
            return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))
        # coding: the same elementwise maths in place, two fewer passes over the largest tensors, and the output in
        # the NHWC layout of the matrix product (channels-last: what the next layer runs fastest on).  Bit-identical:
        # sqrt/rsqrt and the product are the same IEEE operations (docs/deployment.md has the timings).
        norm = (norm.sqrt_() if self.inverse else norm.rsqrt_()).reshape(b, h, w, c).permute(0, 3, 1, 2)
        return norm.mul_(x)

    def forward_conv(self, x: Tensor) -> Tensor:
        """The same maths with the channel mixing as oneDNN's 1x1 convolution (bias fused, ~0.7 ms less per
        1242x375 frame in g_a): its sums change with the thread count, so only the encoder uses it (any y is a
        valid stream); the decoder keeps ``forward``."""
        c = x.shape[1]
        beta = self.beta_reparam(self.beta)
        gamma = self.gamma_reparam(self.gamma).reshape(c, c, 1, 1)
        norm = F.conv2d(x * x, gamma, beta)
        return (norm.sqrt_() if self.inverse else norm.rsqrt_()).mul_(x)


GAIN_LEVELS = 4  # gain-map levels the encoder writes: 0 (background, gain 1) .. 3 (full ROI weight, the top gain)
Y_STRIDE = 16  # image pixels per y cell


def latent_gain_levels(mask: Tensor) -> Tensor:
    """The gain-map level (0..GAIN_LEVELS-1) of every y cell for a (B, 1, H, W) ROI weight map in [0, 1] (H, W
    multiples of 16, padding = 0): the largest weight among the cell's pixels, so a small object never falls below a
    cell's threshold, rounded to the levels.  The one rule for the encoder (``RoiCodec.encode``) and training."""
    cells = F.max_pool2d(mask.float().clamp(0.0, 1.0), Y_STRIDE)
    return torch.round(cells * (GAIN_LEVELS - 1))


def latent_gain_map(mask: Tensor, top_gain: Tensor) -> Tensor:
    """(B, 1, h, w) gains for training: ``1 + (top - 1) * level / (levels - 1)`` per cell, ``top_gain`` (B,) per
    sample (the bitstream's formula, in the model's dtype)."""
    fraction = latent_gain_levels(mask) / (GAIN_LEVELS - 1)
    return 1.0 + (top_gain.to(fraction).view(-1, 1, 1, 1) - 1.0) * fraction
