"""The entropy side's synthesis (h_s, i_s, the scale combiner, a P-frame model's context net) as an integer network,
computed exactly in float32.

Encoder and decoder must derive the same scale-table index for every symbol of y, or the rANS decoder desynchronises.
The float networks get that only in float64 (docs/deployment.md, "Why the entropy side stays float64"), which costs
3x their float32 time.  Here every layer works on integers (Ballé, Minnen, Johnston 2019, "Integer networks for data
compression with latent-variable models"), held in float32 tensors:

    A_0 = clamp(round(z_hat * 2**input_frac), -input_max, input_max)          (z_hat: the decoded side latent)
    A_l = clamp(floor((W_l * A_{l-1} + B_l) * 2**-shift_l), 0, ACT_MAX)        (W_l, B_l integers; ReLU and clip)
    scales = (W_c * [A_z; A_w; A_ctx] + B_c) * 2**-shift_c                      (the combiner, in float64 after)

Each output channel's weights are scaled so that ``sum |W| * max |A| + |B| < 2**24``.  Then every partial sum of the
convolution, in whatever order a kernel adds them (threads, SIMD width, blocking, GEMM or direct), is an integer
below 2**24 and exactly representable in float32: the result is exact on every IEEE machine, and scaling by a power
of two and ``floor`` are exact too.  (Winograd/FFT convolutions would not be; PyTorch's CPU convolutions at batch 1
are direct or GEMM, and ``test_integer_side`` checks float32 against float64 on the shipped model.)

The integers come from the float networks by post-training quantisation (``quantize_side``): activation steps from
the 99.99th percentile of each layer's activations on calibration frames, per-channel power-of-two shifts as large as
the bound allows (9-14 bits of weight precision here).  Measured on nuScenes frames with the shipped model: y's
bytes +0.013 % against the float64 scales (docs/deployment.md).  ``roi-codec quantize-side`` writes a model file with
them; the float networks stay in the file for training.
"""
from __future__ import annotations

import copy
import math
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACT_MAX = 255  # activations are integers 0..255
INPUT_FRAC = 4  # side latents and references enter as integers in 1/16 units (references are multiples of 1/16)
ACC_LIMIT = 2**24  # float32 represents every integer below this exactly
WEIGHT_MAX = 2**15 - 1  # weights are stored as int16
PERCENTILE = 99.99  # activation step: this percentile of a layer's calibration activations / ACT_MAX
INPUT_HEADROOM = 1.5  # input clamp: this times the largest calibration input


def _convs(seq: nn.Module) -> list[nn.Module]:
    return [m for m in seq.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


class IntegerLayer(nn.Module):
    """One convolution + ReLU + clip on integers (see the module docstring); the weights in the float layer's layout."""

    def __init__(self, like: nn.Module):
        super().__init__()
        self.transposed = isinstance(like, nn.ConvTranspose2d)
        self.stride, self.padding = like.stride, like.padding
        self.output_padding = like.output_padding if self.transposed else None
        out_channels = like.out_channels
        self.register_buffer("weight", torch.zeros(like.weight.shape, dtype=torch.int16))  # int16: a smaller file
        self.register_buffer("bias", torch.zeros(out_channels, dtype=torch.int32))  # includes the rounding offset
        self.register_buffer("shift", torch.zeros(out_channels, dtype=torch.int32))

    def out_weight(self) -> Tensor:
        """The weights as (out, in, kh, kw)."""
        return self.weight.transpose(0, 1) if self.transposed else self.weight

    def accumulate(self, a: Tensor) -> Tensor:
        w, b = self.weight.to(a.dtype), self.bias.to(a.dtype)
        if self.transposed:
            return F.conv_transpose2d(a, w, b, self.stride, self.padding, self.output_padding)
        return F.conv2d(a, w, b, self.stride, self.padding)

    def forward(self, a: Tensor) -> Tensor:
        step = torch.exp2(-self.shift.to(a.dtype)).view(1, -1, 1, 1)  # powers of two: exact
        return torch.clamp(torch.floor(self.accumulate(a) * step), 0, ACT_MAX)

    def bound(self, in_max: float) -> Tensor:
        """Per output channel, the largest |partial sum| the layer can reach with inputs within ``in_max``."""
        w = self.out_weight().double().abs().sum(dim=(1, 2, 3))
        return w * in_max + self.bias.double().abs()


def _to_integers(x: Tensor, frac: int, limit: Tensor, dtype: torch.dtype) -> Tensor:
    """Input latents (float64, on a 1/2**frac grid or not) -> clamped integers in ``dtype``."""
    lim = float(limit)
    return torch.clamp(torch.round(x.detach().to(torch.float64) * 2.0**frac), -lim, lim).to(dtype)


class IntegerSynthesis(nn.Module):
    """h_s or i_s on integers: the layers of the float ``nn.Sequential`` (conv, ReLU, ...), each followed by its ReLU."""

    def __init__(self, like: nn.Module):
        super().__init__()
        self.layers = nn.ModuleList(IntegerLayer(m) for m in _convs(like))
        self.register_buffer("input_max", torch.zeros((), dtype=torch.int32))

    def forward(self, z_hat: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        a = _to_integers(z_hat, INPUT_FRAC, self.input_max, dtype)
        for layer in self.layers:
            a = layer(a)
        return a

    def check(self, name: str) -> None:
        in_max = float(self.input_max)
        for i, layer in enumerate(self.layers):
            _check_bound(f"{name}[{i}]", layer.bound(in_max), layer.shift)
            in_max = ACT_MAX


def _check_bound(name: str, bound: Tensor, shift: Tensor) -> None:
    if bool((shift < 0).any()) or bool((shift > 40).any()) or bool((bound >= ACC_LIMIT).any()):
        raise ValueError(f"integer side layer {name}: partial sums may reach 2**24 or a shift is out of range: "
                         "float32 would not compute it exactly (a damaged or foreign model file)")


class IntegerScales(nn.Module):
    """The scales of y from z_hat, w_hat (and a P-frame model's reference latents) on integers; see the module
    docstring.  Built empty in the shape of an ``ObjectPriorLatentCodec``'s float networks, filled by
    ``quantize_side`` or a model file."""

    def __init__(self, latent_codec: nn.Module):
        super().__init__()
        self.hyper = IntegerSynthesis(latent_codec.hyper.h_s)
        self.object = IntegerSynthesis(latent_codec.object.h_s)
        self.context = IntegerSynthesis(latent_codec.context) if latent_codec.context is not None else None
        mix = latent_codec.y.entropy_parameters.mix
        self.register_buffer("mix_weight", torch.zeros(mix.weight.shape, dtype=torch.int16))
        self.register_buffer("mix_bias", torch.zeros(mix.out_channels, dtype=torch.int32))
        self.register_buffer("mix_shift", torch.zeros(mix.out_channels, dtype=torch.int32))

    def activations(self, z_hat: Tensor, w_hat: Tensor, context: Tensor | None = None,
                    dtype: torch.dtype = torch.float32) -> Tensor:
        parts = [self.hyper(z_hat, dtype), self.object(w_hat, dtype)]
        if self.context is not None:
            if context is None:
                raise ValueError("this entropy model needs a context (a P-frame's reference latents)")
            parts.append(self.context(context, dtype))
        elif context is not None:
            raise ValueError("this entropy model takes no context")
        return torch.cat(parts, dim=1)

    def forward(self, z_hat: Tensor, w_hat: Tensor, context: Tensor | None = None,
                dtype: torch.dtype = torch.float32) -> Tensor:
        """float64 scales of y (exact: an integer times a power of two).  ``dtype``: what the sums run in; float32
        (the coding path) and float64 give the same, which ``test_integer_side`` checks."""
        a = self.activations(z_hat, w_hat, context, dtype)
        acc = F.conv2d(a, self.mix_weight.to(dtype), self.mix_bias.to(dtype))
        return acc.double() * torch.exp2(-self.mix_shift.double()).view(1, -1, 1, 1)

    def check(self) -> None:
        """Refuse integers whose sums float32 would not compute exactly (or an empty, never quantised side)."""
        if not bool(self.mix_weight.any()):
            raise ValueError("integer side not quantised (all-zero combiner): run roi-codec quantize-side")
        self.hyper.check("h_s")
        self.object.check("i_s")
        if self.context is not None:
            self.context.check("context")
        w = self.mix_weight.double().abs().sum(dim=(1, 2, 3))
        _check_bound("combiner", w * ACT_MAX + self.mix_bias.double().abs(), self.mix_shift)


# -- post-training quantisation -----------------------------------------------------------------------------------
def _percentile(values: list[Tensor], q: float) -> float:
    flat = torch.cat([v.reshape(-1) for v in values]).numpy()
    return max(float(np.percentile(flat, q)), 1e-6)  # numpy: torch.quantile refuses more than 16M values


def _quantize_layer(target: IntegerLayer, float_layer: nn.Module, in_step: float, out_step: float, in_max: float) -> None:
    """Integers of one float layer ``relu(W a + b)`` with inputs ``a = in_step * A`` and outputs ``out_step * A'``:
    ``W_int = round(W in_step / out_step 2**e)``, ``B_int = round(b / out_step 2**e) + 2**(e-1)`` (the rounding
    offset, so that floor rounds to nearest), ``e`` per channel as large as the bound allows."""
    weight = float_layer.weight.detach().double()
    bias = float_layer.bias.detach().double()
    w_out = weight.transpose(0, 1) if target.transposed else weight
    base, bias_base = w_out * (in_step / out_step), bias / out_step
    shifts = []
    for c in range(w_out.shape[0]):
        l1 = float(base[c].abs().sum())
        e = int(math.floor(math.log2((ACC_LIMIT - 1) / (l1 * in_max + abs(float(bias_base[c])) + 2.0))))
        e = min(max(e, 1), 40)
        while e > 1:
            wi, bi = torch.round(base[c] * 2.0**e), round(float(bias_base[c]) * 2.0**e) + 2 ** (e - 1)
            if float(wi.abs().sum()) * in_max + abs(bi) < ACC_LIMIT and float(wi.abs().max()) <= WEIGHT_MAX:
                break
            e -= 1
        shifts.append(e)
    e = torch.tensor(shifts, dtype=torch.float64)
    w_int = torch.round(base * torch.exp2(e).view(-1, 1, 1, 1))
    b_int = torch.round(bias_base * torch.exp2(e)) + torch.exp2(e - 1)
    target.weight.copy_((w_int.transpose(0, 1) if target.transposed else w_int).to(torch.int16))
    target.bias.copy_(b_int.to(torch.int32))
    target.shift.copy_(e.to(torch.int32))


def _float_activations(seq: nn.Module, x: Tensor) -> list[Tensor]:
    """The input and each ReLU's output of a float network (float64)."""
    out = [x]
    for m in seq:
        x = m(x)
        if isinstance(m, nn.ReLU):
            out.append(x)
    return out


def _quantize_synthesis(target: IntegerSynthesis, float_seq: nn.Module, inputs: list[Tensor]) -> float:
    """Fill ``target`` from ``float_seq`` calibrated on ``inputs``; returns the step of its output activations."""
    per_layer = [list(a) for a in zip(*[_float_activations(float_seq, x) for x in inputs])]
    input_max = math.ceil(max(float(x.abs().max()) for x in per_layer[0]) * 2**INPUT_FRAC * INPUT_HEADROOM) + 1
    target.input_max.fill_(input_max)
    in_step, in_max = 2.0**-INPUT_FRAC, float(input_max)
    for layer, float_layer, acts in zip(target.layers, _convs(float_seq), per_layer[1:]):
        out_step = _percentile(acts, PERCENTILE) / ACT_MAX
        _quantize_layer(layer, float_layer, in_step, out_step, in_max)
        in_step, in_max = out_step, float(ACT_MAX)
    return in_step


@torch.no_grad()
def quantize_side(latent_codec: nn.Module, samples: Iterable[Sequence[Tensor | None]]) -> IntegerScales:
    """``IntegerScales`` of a float ``ObjectPriorLatentCodec`` from calibration ``samples``: (z_hat, w_hat, context or
    None) as its coder sees them (float64 decoded side latents; a P-frame model's reference latents)."""
    samples = [tuple(None if t is None else t.detach().to("cpu", torch.float64) for t in s) for s in samples]
    if not samples:
        raise ValueError("quantize_side needs calibration samples")
    float_codec = copy.deepcopy(latent_codec).double().cpu().eval()
    out = IntegerScales(float_codec)
    steps = [_quantize_synthesis(out.hyper, float_codec.hyper.h_s, [s[0] for s in samples]),
             _quantize_synthesis(out.object, float_codec.object.h_s, [s[1] for s in samples])]
    if out.context is not None:
        contexts = [s[2] for s in samples]
        if any(c is None for c in contexts):
            raise ValueError("a P-frame entropy model is calibrated on samples with their reference latents")
        steps.append(_quantize_synthesis(out.context, float_codec.context, contexts))
    mix = float_codec.y.entropy_parameters.mix
    weight, bias = mix.weight.detach().double()[:, :, 0, 0], mix.bias.detach().double()
    # the combiner's input parts, in order, each with its activation step
    parts = [out.hyper, out.object] + ([out.context] if out.context is not None else [])
    sizes = [part.layers[-1].out_weight().shape[0] for part in parts]
    column_steps = torch.cat([torch.full((n,), s, dtype=torch.float64) for n, s in zip(sizes, steps)])
    base = weight * column_steps.view(1, -1)
    shifts = []
    for c in range(base.shape[0]):
        e = int(math.floor(math.log2((ACC_LIMIT - 1) / (float(base[c].abs().sum()) * ACT_MAX + abs(float(bias[c])) + 1.0))))
        e = min(max(e, 0), 40)
        while e > 0 and (float(torch.round(base[c] * 2.0**e).abs().sum()) * ACT_MAX + abs(round(float(bias[c]) * 2.0**e))
                         >= ACC_LIMIT or float(torch.round(base[c] * 2.0**e).abs().max()) > WEIGHT_MAX):
            e -= 1
        shifts.append(e)
    e = torch.tensor(shifts, dtype=torch.float64)
    out.mix_weight.copy_(torch.round(base * torch.exp2(e).view(-1, 1)).to(torch.int16).view_as(out.mix_weight))
    out.mix_bias.copy_(torch.round(bias * torch.exp2(e)).to(torch.int32))
    out.mix_shift.copy_(e.to(torch.int32))
    out.check()
    return out


__all__ = ["ACT_MAX", "IntegerLayer", "IntegerScales", "IntegerSynthesis", "quantize_side"]
