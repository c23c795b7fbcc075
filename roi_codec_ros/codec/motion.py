"""Block motion on y's grid: a P-frame's prediction of its latents from the reference's, by whole latent cells.

The reference latents ``y_hat_{t-1}`` are integers; a P-frame codes ``round(y_t) - prediction``.  Under camera
motion the plain reference (``prediction = y_hat_{t-1}``) is a poor prediction: at 16 pixels per latent cell,
content moves by cells between frames.  Here each block of ``block`` x ``block`` cells (64 x 64 pixels at 4)
takes the reference shifted by (dy, dx) whole cells, |dy|, |dx| <= ``max_shift``, or no prediction at all (zeros:
new content, where coding the latents themselves is cheaper than a residual).  Whole-cell shifts of integers are
integers: the prediction, hence the decoded latents ``prediction + residual = round(y_t)``, are exact on every
machine, so the P-frame still decodes to the intra frame's picture.

The encoder picks each block's choice by the sum of ``log2(1 + |residual|)`` over the block (a proxy of its bits),
a plain search over ``(2 * max_shift + 1)**2 + 1`` candidates; the choices travel in the frame as a ``MotionField``
(``bitstream.pack_motion``), a few dozen bytes.  Given ``warped`` latents (the integer latents of the reference
picture warped by a flow field, ``warp.py``), they are one more candidate, the last.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .bitstream import MotionField

DEFAULT_BLOCK = 4
DEFAULT_MAX_SHIFT = 2


def candidate(index: int, max_shift: int) -> tuple[int, int] | None:
    """Choice ``index`` -> (dy, dx), or None for "no prediction" (index 0)."""
    if index == 0:
        return None
    side = 2 * max_shift + 1
    dy, dx = divmod(index - 1, side)
    return dy - max_shift, dx - max_shift


def shifted(reference: Tensor, dy: int, dx: int) -> Tensor:
    """``out[..., i, j] = reference[..., i - dy, j - dx]``, the border cells repeated where that falls outside."""
    s = max(abs(dy), abs(dx))
    return _shift_view(_padded(reference, s), s, dy, dx, reference.shape[-2:]) if s else reference


def _padded(reference: Tensor, s: int) -> Tensor:
    return F.pad(reference, (s, s, s, s), mode="replicate")


def _shift_view(padded: Tensor, s: int, dy: int, dx: int, shape) -> Tensor:
    """``shifted`` as a view of the reference replicate-padded by ``s`` cells (no copy)."""
    return padded[..., s - dy : s - dy + shape[0], s - dx : s - dx + shape[1]]


def _block_map(choices: Tensor, block: int, shape: tuple[int, int]) -> Tensor:
    """Per-block choices (hb, wb) -> per-cell choices (h, w)."""
    return choices.repeat_interleave(block, 0).repeat_interleave(block, 1)[: shape[0], : shape[1]]


def predict(reference: Tensor, field: MotionField, warped: Tensor | None = None) -> Tensor:
    """The prediction of a P-frame's latents from its reference's (1, M, h, w) under ``field`` (same dtype);
    ``warped``: the latents of the warped reference picture, which a field with ``warped`` needs."""
    if field.warped and warped is None:
        raise ValueError("this motion field predicts from the warped reference picture: give its latents")
    shape = tuple(reference.shape[-2:])
    blocks = field.blocks_shape(shape)
    choices = torch.tensor(list(field.choices), dtype=torch.long).reshape(blocks)
    cells = _block_map(choices, field.block, shape)
    padded = _padded(reference, field.max_shift)
    out = torch.zeros_like(reference)
    for index in torch.unique(choices).tolist():
        if field.warped and index == field.candidates - 1:
            out = torch.where(cells == index, warped, out)
            continue
        shift = candidate(index, field.max_shift)
        if shift is not None:
            out = torch.where(cells == index, _shift_view(padded, field.max_shift, *shift, shape), out)
    return out


def search(latents: Tensor, reference: Tensor, block: int = DEFAULT_BLOCK, max_shift: int = DEFAULT_MAX_SHIFT,
           warped: Tensor | None = None) -> MotionField:
    """Each block's cheapest candidate for coding the integer ``latents`` against ``reference`` (both (1, M, h, w)):
    the one with the least sum of log2(1 + |latents - prediction|); ties go to the lower index (no motion before
    motion, small shifts before large ones in scan order, the warped picture last).  ``warped``: see the module
    doc; the field comes back with ``warped`` only if a block chose it."""
    return _choose(_block_costs(latents, reference, block, max_shift, warped), block, max_shift, warped is not None)[0]


def search_with_warp(latents: Tensor, reference: Tensor, warped: Tensor, block: int = DEFAULT_BLOCK,
                     max_shift: int = DEFAULT_MAX_SHIFT) -> tuple[MotionField, MotionField, float]:
    """One search, two answers: (the field with the warped candidate, the field without it, how much the first
    saves over the second in sum log2(1 + |residual|)), so the encoder can weigh that saving against the flow's
    bytes."""
    costs = _block_costs(latents, reference, block, max_shift, warped)
    with_warp, cost_with = _choose(costs, block, max_shift, True)
    plain, cost_plain = _choose(costs[:-1], block, max_shift, False)
    return with_warp, plain, (cost_plain - cost_with) * block * block  # the costs are block means


def _block_costs(latents: Tensor, reference: Tensor, block: int, max_shift: int, warped: Tensor | None) -> Tensor:
    """(candidates, hb, wb): each candidate's mean log2(1 + |residual|) per cell of each block (padding counts 0)."""
    h, w = latents.shape[-2:]
    pad = (0, (-w) % block, 0, (-h) % block)

    def block_cost(residual: Tensor) -> Tensor:  # in place on a fresh tensor: this loop is the encoder's search
        return F.avg_pool2d(F.pad(residual.abs_().add_(1).log2_().sum(1, keepdim=True), pad), block)

    costs = [block_cost(latents.clone())]
    side = 2 * max_shift + 1
    padded = _padded(reference, max_shift)
    for index in range(1, side * side + 1):
        dy, dx = candidate(index, max_shift)
        costs.append(block_cost(latents - _shift_view(padded, max_shift, dy, dx, (h, w))))
    if warped is not None:
        costs.append(block_cost(latents - warped))
    return torch.cat(costs, dim=1)[0]


def _choose(costs: Tensor, block: int, max_shift: int, offers_warp: bool) -> tuple[MotionField, float]:
    """Each block's cheapest candidate of ``_block_costs`` -> (the field, the sum of the chosen block costs)."""
    side = 2 * max_shift + 1
    # prefer no shift on (near-)ties: the zero shift is index 1 + max_shift * side + max_shift
    still = 1 + max_shift * side + max_shift
    best = costs.argmin(0)
    keep = costs[still] <= costs.gather(0, best[None])[0] * (1 + 1e-6)
    best = torch.where(keep, torch.full_like(best, still), best)
    choices = bytes(best.reshape(-1).to(torch.uint8).tolist())
    uses_warp = offers_warp and bool((best == side * side + 1).any())
    field = MotionField(block=block, max_shift=max_shift, choices=choices, warped=uses_warp)
    return field, float(costs.gather(0, best[None]).sum())


__all__ = ["DEFAULT_BLOCK", "DEFAULT_MAX_SHIFT", "candidate", "predict", "search", "search_with_warp", "shifted"]
