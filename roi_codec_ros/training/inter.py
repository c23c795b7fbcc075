"""The P-frames' entropy model: trained on the latent residuals of consecutive video frames, transforms frozen.

A P-frame codes ``r = round(y_t) - prediction`` (``codec/stream.py``, ``codec/motion.py``).  The intra model's hyperprior was trained on
latents, not on their frame-to-frame residuals (mostly zeros, heavier tails where things move), so it spends more
on them than they are worth.  ``RoiHyperprior.inter_codec`` is a second ``ObjectPriorLatentCodec`` for residuals
only, initialised from the intra one and trained here on the rate alone: the picture of a P-frame is the intra
frame's whatever the entropy model, so there is no distortion term.  Everything happens on y's grid (1/16 of the
image per side), so this trains in minutes on a CPU:

1. ``collect_latents``: every frame of each clip through the frozen encoder (``RoiCodec.frame_latents``) at each
   rate: the integer latents an intra frame codes, the object prior's features, and each frame's prediction from
   the one before (block motion, as the encoder picks it).
2. ``train_inter_codec``: random aligned crops of ``r = y_t - prediction_t`` with additive noise, the prediction as
   context, loss = bits of r (y, z, w) per pixel; CompressAI's auxiliary loss fits the bottlenecks' quantiles.
3. ``with_inter_codec``: the model with ``inter_prior=True`` and the trained entropy model, ready to export.

``roi-codec train-inter`` drives the three (``roi_codec_ros/cli/train.py``).
"""
from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from compressai.entropy_models import EntropyBottleneck

from roi_codec_ros.codec import motion
from roi_codec_ros.codec.api import MAX_P_FRAME_COST
from roi_codec_ros.codec.model import RoiHyperprior, build_model, reset_likelihood_bounds


COMBINER_WEIGHT = "y.entropy_parameters.mix.weight"


@dataclass
class LatentClip:
    """The integer latents (T, M, h, w) of consecutive frames of one clip at one rate, their features (T, C, h, w),
    and each frame's prediction from the frame before it (T, M, h, w; [0] unused): the previous latents moved by the
    block motion the encoder picks (``codec/motion.py``), or as they are without it."""

    name: str
    rate: float
    latents: Tensor
    features: Tensor
    predictions: Tensor

    def part(self, start: int, stop: int | None = None) -> "LatentClip":
        """Frames ``start..stop-1`` (their first frame's prediction then is unused)."""
        return LatentClip(self.name, self.rate, self.latents[start:stop], self.features[start:stop],
                          self.predictions[start:stop])


def predictions(latents: Tensor, with_motion: bool = True) -> Tensor:
    """Every frame's prediction from the previous one, as ``RoiCodec`` makes it for a P-frame."""
    out = torch.zeros_like(latents)
    for t in range(1, latents.shape[0]):
        reference = latents[t - 1:t]
        out[t] = (motion.predict(reference, motion.search(latents[t:t + 1], reference)) if with_motion else reference)[0]
    return out


def collect_latents(codec, clips: Iterable[tuple[str, Sequence[np.ndarray]]], rates: Sequence[float],
                    log: Callable[[str], None] | None = print) -> list[LatentClip]:
    """``codec.frame_latents`` of every frame of every clip at every rate (no ROI, no detector features), and the
    predictions of P-frames (with block motion as ``codec.p_frame_motion`` says)."""
    out = []
    for name, frames in clips:
        for rate in rates:
            start = time.perf_counter()
            pairs = [codec.frame_latents(rgb, rate=rate) for rgb in frames]
            latents = torch.cat([p[0] for p in pairs])
            out.append(LatentClip(name, float(rate), latents, torch.cat([p[1] for p in pairs]),
                                  predictions(latents, codec.p_frame_motion)))
            if log:
                log(f"latents: {name} rate {rate:g}: {len(frames)} frames in {time.perf_counter() - start:.1f} s")
    return out


def residual_batch(clips: Sequence[LatentClip], batch: int, crop: int, rng: random.Random) -> tuple[Tensor, Tensor, Tensor]:
    """``batch`` random (clip, t) residuals ``y_t - prediction_t`` cropped to ``crop`` x ``crop`` latents at one
    random place per sample, flipped at random; the frame's features and the prediction (the P-frame entropy model's
    context), cropped alike."""
    rs, fs, refs = [], [], []
    for _ in range(batch):
        clip = rng.choice(clips)
        t = rng.randrange(1, clip.latents.shape[0])
        h, w = clip.latents.shape[-2:]
        ch, cw = min(crop, h), min(crop, w)
        i, j = rng.randrange(h - ch + 1), rng.randrange(w - cw + 1)
        ref = clip.predictions[t, :, i:i + ch, j:j + cw]
        r = clip.latents[t, :, i:i + ch, j:j + cw] - ref
        f = clip.features[t, :, i:i + ch, j:j + cw]
        if rng.random() < 0.5:
            r, f, ref = r.flip(-1), f.flip(-1), ref.flip(-1)
        rs.append(r)
        fs.append(f)
        refs.append(ref)
    size = (min(r.shape[-2] for r in rs), min(r.shape[-1] for r in rs))  # clips smaller than the crop
    return tuple(torch.stack([x[..., :size[0], :size[1]] for x in xs]) for xs in (rs, fs, refs))


def residual_bits(codec_module, r: Tensor, f: Tensor, reference: Tensor) -> Tensor:
    """Bits of the residuals ``r`` (y, z and w) under ``codec_module`` (the ``inter_codec``, its context the
    reference latents) in training mode (noise quantisation), summed over the batch."""
    out = codec_module(r, f, context=reference)
    return sum(-torch.log2(lik.clamp_min(1e-9)).sum() for lik in out["likelihoods"].values())


@torch.no_grad()
def frame_bytes(codec, clips: Sequence[LatentClip]) -> list[dict]:
    """Per P-frame of ``clips`` (every frame but each clip's first): its bytes entropy-coded as a P-frame by
    ``codec`` (the residual to its prediction), as an intra frame (its latents), and the cost proxy the encoder
    decides between the two by (``RoiCodec.p_frame_max_cost``: sum log2(1 + |residual|) over the same for the
    latents)."""
    inter = codec.model.inter_codec if codec.config.inter_prior else codec.model.latent_codec
    rows = []
    for clip in clips:
        for t in range(1, clip.latents.shape[0]):
            latents, reference, f = clip.latents[t][None], clip.predictions[t][None], clip.features[t][None]
            r = latents - reference
            coder, context = codec._entropy_coder(reference)
            p = coder.compress(r, side=inter.analyse_side(r, f), context=context)
            i = codec._coder.compress(latents, side=codec.model.latent_codec.analyse_side(latents, f))
            proxy = float(torch.log2(1 + r.abs()).sum()) / max(float(torch.log2(1 + latents.abs()).sum()), 1e-9)
            rows.append({"p_bytes": sum(len(x[0]) for x in p["strings"].values()),
                         "i_bytes": sum(len(x[0]) for x in i["strings"].values()), "proxy": proxy})
    return rows


def coded_bytes(codec, clips: Sequence[LatentClip]) -> int:
    """Bytes of every residual of ``clips`` entropy-coded by ``codec``'s P-frame coder (what the streams send)."""
    return sum(row["p_bytes"] for row in frame_bytes(codec, clips))


def calibrate_max_cost(rows: Sequence[dict]) -> float:
    """The ``p_frame_max_cost`` that saves the most bytes on ``rows`` (``frame_bytes``): frames whose proxy is below
    it are coded as P-frames, the others as I-frames; halfway between two neighbouring proxies, at most
    ``MAX_P_FRAME_COST`` (a frame whose residual costs its latents' is an I-frame, whatever it saves)."""
    ordered = sorted(rows, key=lambda r: r["proxy"])
    best, best_saving, saving = 0.0, 0.0, 0.0
    for k, row in enumerate(ordered):
        saving += row["i_bytes"] - row["p_bytes"]
        if saving > best_saving:
            following = ordered[k + 1]["proxy"] if k + 1 < len(ordered) else row["proxy"] * 1.05
            best, best_saving = (row["proxy"] + following) / 2, saving
    return min(round(best, 4), MAX_P_FRAME_COST)


def train_inter_codec(model: RoiHyperprior, train: Sequence[LatentClip], steps: int = 3000, batch: int = 8,
                      crop: int = 24, lr: float = 1e-4, aux_lr: float = 1e-3, seed: int = 0,
                      log: Callable[[str], None] | None = print, log_every: int = 250) -> RoiHyperprior:
    """Train ``model.inter_codec`` (``with_inter_codec`` makes one) on the residuals of ``train``; the rest of the
    model is untouched.  Returns the model (in eval mode, CDF tables updated)."""
    if not model.config.inter_prior:
        raise ValueError("the model has no inter_codec: use with_inter_codec(model) first")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    inter = model.inter_codec.train()
    reset_likelihood_bounds(inter)  # a model file holds the floor as 0 (fp16)
    main = [p for n, p in inter.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in inter.named_parameters() if n.endswith(".quantiles")]
    optimizer, aux_optimizer = torch.optim.Adam(main, lr=lr), torch.optim.Adam(aux, lr=aux_lr)
    bottlenecks = [m for m in inter.modules() if isinstance(m, EntropyBottleneck)]
    start, running = time.perf_counter(), []
    for step in range(1, steps + 1):
        r, f, reference = residual_batch(train, batch, crop, rng)
        loss = residual_bits(inter, r, f, reference) / (r.shape[0] * r.shape[-2] * r.shape[-1] * 256)  # bits per pixel
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main, 1.0)
        optimizer.step()
        aux_loss = sum(m.loss() for m in bottlenecks)
        aux_optimizer.zero_grad(set_to_none=True)
        aux_loss.backward()
        aux_optimizer.step()
        running.append(float(loss.detach()))
        if log and (step % log_every == 0 or step == steps):
            log(f"step {step}/{steps}: {np.mean(running):.4f} bpp of residual (last {len(running)}), "
                f"aux {float(aux_loss.detach()):.1f}, {step / (time.perf_counter() - start):.1f} steps/s")
            running = []
    inter.eval()
    for bottleneck in bottlenecks:  # only the new CDF tables: the intra model's stay as they were stored
        bottleneck.update(force=True)
    return model


def with_inter_codec(model: RoiHyperprior) -> RoiHyperprior:
    """A copy of ``model`` with ``inter_prior=True`` whose P-frame entropy model starts as the intra one.  Without
    an integer side: it would no longer match the retrained entropy model (``roi-codec quantize-side`` comes after)."""
    config = replace(model.config, inter_prior=True, integer_side=False)
    out = build_model(config)
    state = {k: v for k, v in copy.deepcopy(model.state_dict()).items() if ".integer." not in k}
    if not model.config.inter_prior:
        inter = out.inter_codec.state_dict()
        for name, tensor in model.latent_codec.state_dict().items():
            if name.startswith("integer."):
                continue
            if name == COMBINER_WEIGHT:  # the intra combiner's columns; the context's start at zero
                tensor = torch.cat([tensor, torch.zeros_like(inter[name][:, tensor.shape[1]:])], dim=1)
            inter[name] = tensor
        state.update({f"inter_codec.{k}": v for k, v in inter.items()})
    out.load_state_dict(state)
    return out.eval()


def split_clips(clips: Sequence[LatentClip], val_every: int = 5) -> tuple[list[LatentClip], list[LatentClip]]:
    """Hold out the last fifth (``1 / val_every``) of each clip's frames, at least two, for validation."""
    train, val = [], []
    for clip in clips:
        n = clip.latents.shape[0]
        k = max(2, n // val_every) if n >= 6 else 0
        if k:
            val.append(clip.part(n - k))
        train.append(clip.part(0, n - k))
    return [c for c in train if c.latents.shape[0] >= 2], val


__all__ = ["LatentClip", "calibrate_max_cost", "coded_bytes", "frame_bytes", "predictions", "collect_latents", "residual_batch", "residual_bits", "split_clips",
           "train_inter_codec", "with_inter_codec"]
