"""The ROI-aware learned image codec: scale hyperprior + object prior + test-time rate/ROI control.

Implements, on CompressAI:
- Ballé et al. 2018, "Variational image compression with a scale hyperprior" (g_a, g_s, h_a, h_s, GDN).
- Gorri Viudez (TUM), "ROI-Aware Neural Image Compression for Teleoperation": detector features fused into
  the analysis transform (interleaved 1x1 projection + resize + concat before each conv/GDN) and an object
  prior latent ``w = i_a([y; f])`` coded as side information (see ``latent_codec.py``).
- Fathima et al. 2023 (Qualcomm), "A neural video codec with spatial rate-distortion control": rate knob beta
  through conditional convolutions in encoder and decoder, ROI weight alpha as the encoder's mask input.

Data flow (s = stride w.r.t. the padded image)::

    x (RGB) ─┐
    m_alpha ─┴─ cat ─ conv─cs─GDN ─ cat(P(f8)) ─ conv─cs─GDN ─ cat(P(f16)) ─ conv─cs─GDN ─ cat(P(f32)) ─ conv─cs ─► y (s16)
                         s2                         s4                          s8
    y, Q(f) ─► ObjectPriorLatentCodec (z, w side latents; scales of y) ─► y_hat
    y_hat ─► deconv─cs─IGDN ─ deconv─cs─IGDN ─ deconv─cs─IGDN ─ deconv─cs ─► x_hat

``cs`` = ConditionalScaleShift(rate embedding); ``P`` = 1x1 projection of a detector feature map, resized
(bilinear) to the current resolution; ``Q(f)`` = the three projected maps resized to y's grid (for i_a).
Features may be absent: they are zero-filled, and the codec still works (trained with feature dropout).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from compressai.models import CompressionModel
from compressai.models.utils import conv, deconv
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .conditioning import (
    ChannelMatmulGDN,
    ConditionalScaleShift,
    ControlRanges,
    latent_gain_map,
    soft_one_hot,
    weighted_roi_mask,
)
from .integer_side import IntegerScales
from .latent_codec import ObjectPriorLatentCodec

ARCHITECTURE = "roi-hyperprior-v1"
INTER_CONTEXT_CHANNELS = 32  # the P-frame entropy model's view of the reference latents
LIKELIHOOD_BOUND = 1e-9  # CompressAI's default likelihood floor, which every entropy model here is built with


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters; stored in every checkpoint so the model can be rebuilt from it."""

    N: int = 64
    M: int = 96
    feature_channels: tuple[int, int, int] = (64, 128, 256)  # YOLOv8n neck outputs at strides 8/16/32
    fusion_channels: int = 16  # per projected detector feature map
    object_channels: int = 32  # channels of the object prior latent w
    rate_bins: int = 4  # soft one-hot bins of the rate embedding (paper: 4)
    ranges: ControlRanges = field(default_factory=ControlRanges)
    # a second entropy model for P-frames' latent residuals (``RoiHyperprior.inter_codec``), trained on them alone
    inter_prior: bool = False
    # the coding path's entropy side on integers, exact in float32 (codec/integer_side.py; ``roi-codec quantize-side``)
    integer_side: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["feature_channels"] = list(self.feature_channels)
        out["architecture"] = ARCHITECTURE
        for flag in ("inter_prior", "integer_side"):
            if not out[flag]:  # absent = False: the ids of models without one stay what they were
                del out[flag]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        data = dict(data)
        architecture = data.pop("architecture", ARCHITECTURE)
        if architecture != ARCHITECTURE:
            raise ValueError(f"checkpoint architecture {architecture!r} is not {ARCHITECTURE!r}")
        data["feature_channels"] = tuple(data["feature_channels"])
        data["ranges"] = ControlRanges(**data["ranges"])
        return cls(**data)


class RoiHyperprior(CompressionModel):
    """See the module docstring for the data flow."""

    # y is at stride 16, z and w at stride 64: inputs are padded to this multiple.
    PAD_MULTIPLE = 64

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        N, M, P, bins = config.N, config.M, config.fusion_channels, config.rate_bins

        self.g_a_convs = nn.ModuleList([conv(3 + 1, N), conv(N + P, N), conv(N + P, N), conv(N + P, M)])
        self.g_a_cond = nn.ModuleList([ConditionalScaleShift(c, bins) for c in (N, N, N, M)])
        self.g_a_gdn = nn.ModuleList([ChannelMatmulGDN(N) for _ in range(3)])
        # interleaved fusion: f8 joins at s2, f16 at s4, f32 at s8 (TUM Fig. 1)
        self.fusion_proj = nn.ModuleList([nn.Conv2d(c, P, kernel_size=1) for c in config.feature_channels])
        # features for the object prior, on y's grid
        self.object_proj = nn.ModuleList([nn.Conv2d(c, P, kernel_size=1) for c in config.feature_channels])

        self.g_s_convs = nn.ModuleList([deconv(M, N), deconv(N, N), deconv(N, N), deconv(N, 3)])
        self.g_s_cond = nn.ModuleList([ConditionalScaleShift(c, bins) for c in (N, N, N, 3)])
        self.g_s_gdn = nn.ModuleList([ChannelMatmulGDN(N, inverse=True) for _ in range(3)])

        self.latent_codec = ObjectPriorLatentCodec(N, M, object_in=3 * P, object_channels=config.object_channels)
        # P-frames code the integer residual of y to the reference's latents: statistics unlike y's (mostly zeros,
        # heavier tails), so they get an entropy model of their own, the same architecture trained on residuals
        # (roi_codec_ros/training/inter.py); the transforms are shared, so a P-frame decodes to the intra picture.
        # Its scales also see the reference latents (``context``): residuals are large where the reference has
        # edges and texture, the places motion changes.
        if config.inter_prior:
            self.inter_codec = ObjectPriorLatentCodec(N, M, object_in=3 * P, object_channels=config.object_channels,
                                                      context_channels=INTER_CONTEXT_CHANNELS)
        if config.integer_side:  # filled from the model file (or by quantize_side)
            for part in self.entropy_models():
                part.integer = IntegerScales(part)

    def entropy_models(self) -> list[ObjectPriorLatentCodec]:
        """The intra entropy model and the P-frames' one where the model has it."""
        return [self.latent_codec] + ([self.inter_codec] if self.config.inter_prior else [])

    # -- pieces shared by training (forward) and coding (codec API) -------------------------------------
    def rate_embedding(self, rate: Tensor) -> Tensor:
        return soft_one_hot(rate.float(), self.config.rate_bins)

    def zero_features(self, batch: int, height: int, width: int, device, dtype=torch.float32) -> list[Tensor]:
        """Zero-filled stand-in for absent detector features (strides 8/16/32)."""
        return [
            torch.zeros(batch, c, max(1, height // s), max(1, width // s), device=device, dtype=dtype)
            for c, s in zip(self.config.feature_channels, (8, 16, 32))
        ]

    @staticmethod
    def _fit(feature: Tensor, size: Sequence[int], valid: Sequence[int]) -> Tensor:
        """Resize a frame-aligned map to the ``valid`` (unpadded) part of a ``size`` grid, zero-pad the rest."""
        feature = F.interpolate(feature, size=tuple(valid), mode="bilinear", align_corners=False)
        pad_h, pad_w = size[0] - valid[0], size[1] - valid[1]
        return F.pad(feature, (0, pad_w, 0, pad_h)) if pad_h or pad_w else feature

    def fusion_map(self, index: int, feature: Tensor, grid: Sequence[int], valid: Sequence[int], dtype: torch.dtype) -> Tensor:
        """The projected detector map that joins g_a before conv ``index`` (1..3), on that conv's input grid."""
        stride = 2**index
        target = (-(-valid[0] // stride), -(-valid[1] // stride))
        return self._fit(self.fusion_proj[index - 1](feature.to(dtype)), grid, target)

    def analysis(
        self,
        x: Tensor,
        mask_alpha: Tensor,
        features: Sequence[Tensor],
        embedding: Tensor,
        valid: Sequence[int],
        fused: Sequence[Tensor] | None = None,
        for_coding: bool = False,
    ) -> Tensor:
        """g_a: padded image (B,3,H,W) + weighted ROI mask (B,1,H,W) + detector features -> y.

        ``valid`` is the (height, width) of the real image inside the padded tensor.  ``fused``: the three
        ``fusion_map`` results when already known (the codec caches those of zero-filled features); same values.
        ``for_coding``: the encoder's faster computation of the same function (``_analysis_for_coding``).
        """
        h = torch.cat([x, mask_alpha], dim=1)
        if for_coding:
            return self._analysis_for_coding(h, features, embedding, valid, fused)
        for i, (layer, cond) in enumerate(zip(self.g_a_convs, self.g_a_cond)):
            if i > 0:
                f = fused[i - 1] if fused is not None else self.fusion_map(i, features[i - 1], h.shape[-2:], valid, h.dtype)
                h = torch.cat([h, f], dim=1)
            h = cond(layer(h), embedding)
            if i < 3:
                h = self.g_a_gdn[i](h)
        return h

    @torch.no_grad()
    def _analysis_for_coding(self, h: Tensor, features, embedding: Tensor, valid, fused) -> Tensor:
        """Encoder-only g_a (one frame): the function of ``analysis`` computed with fewer passes over the large
        tensors: the rate condition folded into each convolution's weights, the fusion map convolved with its own
        slice of the weights and added (instead of concatenated), and GDN's channel mixing as a 1x1 convolution.
        The float rounding differs (round(y) changes on ~0.1 % of the symbols, like bf16): any y is a valid
        stream, and the decoder is untouched.  Measured 23.2 -> 20.7 ms at 1242x375 (bf16, 2 threads)."""
        for i, (layer, cond) in enumerate(zip(self.g_a_convs, self.g_a_cond)):
            weight, bias = cond.fold(layer.weight, layer.bias, embedding)
            channels = h.shape[1]
            out = F.conv2d(h, weight[:, :channels], bias, layer.stride, layer.padding)
            if i > 0:
                f = fused[i - 1] if fused is not None else self.fusion_map(i, features[i - 1], h.shape[-2:], valid, h.dtype)
                out = out + F.conv2d(f, weight[:, channels:], None, layer.stride, layer.padding)
            h = self.g_a_gdn[i].forward_conv(out) if i < 3 else out
        return h

    def object_features(self, features: Sequence[Tensor], y: Tensor, valid: Sequence[int]) -> Tensor:
        """``f`` for the object prior: projected detector features on y's grid (B, 3P, h, w)."""
        target = (-(-valid[0] // 16), -(-valid[1] // 16))
        return torch.cat(
            [self._fit(p(f.to(y.dtype)), y.shape[-2:], target) for p, f in zip(self.object_proj, features)], dim=1
        )

    def synthesis(self, y_hat: Tensor, embedding: Tensor) -> Tensor:
        h = y_hat
        for i, (layer, cond) in enumerate(zip(self.g_s_convs, self.g_s_cond)):
            h = cond(layer(h), embedding)
            if i < 3:
                h = self.g_s_gdn[i](h)
        return h

    # -- training ------------------------------------------------------------------------------------
    def forward(
        self,
        x: Tensor,
        mask: Tensor,
        u_alpha: Tensor,
        rate: Tensor,
        features: Sequence[Tensor] | None = None,
        roi_gain: Tensor | None = None,
    ) -> dict[str, Any]:
        """Training pass with additive-noise quantisation.

        x: (B,3,H,W) in [0,1], H and W multiples of 64; mask: (B,1,H,W) ROI mask in [0,1];
        u_alpha, rate: (B,) per-sample knobs; features: detector maps or None (zero-filled);
        roi_gain: (B,) top gains of explicit latent scaling (1 = none), the map from the mask as the codec builds it.
        """
        B, _, H, W = x.shape
        if features is None:
            features = self.zero_features(B, H, W, x.device, x.dtype)
        embedding = self.rate_embedding(rate)
        y = self.analysis(x, weighted_roi_mask(mask, u_alpha), features, embedding, (H, W))
        f = self.object_features(features, y, (H, W))
        # Likelihoods need float32 (tiny probabilities and the entropy bottleneck's CDF maths); under mixed-precision
        # training only the transforms g_a/g_s run in bf16/fp16.
        gain = latent_gain_map(mask, roi_gain) if roi_gain is not None else None
        with torch.autocast(x.device.type, enabled=False):
            out = self.latent_codec(y.float(), f.float(), gain)
        x_hat = self.synthesis(out["y_hat"], embedding)
        return {"x_hat": x_hat, "likelihoods": out["likelihoods"]}


def reset_likelihood_bounds(module: nn.Module) -> None:
    """Every entropy model's likelihood floor in ``module`` back to ``LIKELIHOOD_BOUND``: the training paths call it
    (warm start, resume, P-frame entropy model).

    The floor is a constant of the constructors, but CompressAI keeps it in a buffer, so state dicts carry it, and
    fp16 storage (every model file) flushes 1e-9 to 0.  A model warm-started from such a file trained with no floor:
    a likelihood of exactly 0 made the rate -log2(0) = inf and every gradient NaN, which is what stopped the long
    run at step 4,646.  Loading for inference leaves the stored value: the floor never enters the coded bytes, but
    the model id hashes every buffer, and the ids of the shipped files must stay what they are."""
    for name, child in module.named_modules():
        if name.endswith("likelihood_lower_bound"):
            child.bound.fill_(LIKELIHOOD_BOUND)


def build_model(config: ModelConfig | dict | None = None) -> RoiHyperprior:
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    return RoiHyperprior(config or ModelConfig())
