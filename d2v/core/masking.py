"""Maskers. Convention, written down once: in every mask tensor True = masked (hidden from the
student, where the loss is computed); padding positions are never masked.

All maskers draw from an explicit `torch.Generator` (CPU) so masks are reproducible and resumable;
they return CPU bool tensors of shape (B, T) (images: T = grid_h * grid_w patches, row-major).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from d2v.core.spec import MaskSpec


def _rand(shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, generator=generator)


def _ranks(scores: Tensor) -> Tensor:
    """Rank of every entry in its row, 0 = largest score."""
    return scores.argsort(dim=1, descending=True).argsort(dim=1)


def select_exactly(
    preferred: Tensor, count: Tensor | int, allowed: Tensor | None, generator: torch.Generator | None
) -> Tensor:
    """Per row, exactly `count` True positions among `allowed`, keeping `preferred` ones first.

    Used to give every row the same number of masked (or kept) tokens: surplus preferred positions
    are dropped at random, a shortfall is filled with random allowed positions.
    """
    scores = preferred.float() * 2.0 + _rand(tuple(preferred.shape), generator)  # preferred first
    if allowed is not None:
        scores = scores.masked_fill(~allowed, -1.0)
    count = torch.as_tensor(count).reshape(-1, 1) if isinstance(count, Tensor) else count
    chosen = _ranks(scores) < count
    return chosen if allowed is None else chosen & allowed


def block_mask_2d(
    batch: int, grid: tuple[int, int], ratio: float, min_block: int, generator: torch.Generator | None
) -> Tensor:
    """BEiT block-wise masking: random rectangles (aspect 0.3..3.3, area >= min_block patches) until
    round(ratio * N) patches are masked; the count is then made exact. -> (B, H*W)."""
    h, w = grid
    n_target = round(ratio * h * w)
    masks = torch.zeros(batch, h, w, dtype=torch.bool)
    log_aspect = (math.log(0.3), math.log(1 / 0.3))
    for b in range(batch):
        mask = masks[b]
        for _ in range(10 * h * w):  # bounded: each accepted rectangle masks >= 1 new patch
            remaining = n_target - int(mask.sum())
            if remaining <= 0:
                break
            u = _rand((3,), generator).tolist()
            area = min_block + u[0] * max(remaining - min_block, 0)
            aspect = math.exp(log_aspect[0] + u[1] * (log_aspect[1] - log_aspect[0]))
            bh = max(1, min(h, round(math.sqrt(area * aspect))))
            bw = max(1, min(w, round(math.sqrt(area / aspect))))
            top = int(u[2] * (h - bh + 1))
            left = int(_rand((1,), generator).item() * (w - bw + 1))
            new = bh * bw - int(mask[top : top + bh, left : left + bw].sum())
            if 0 < new <= max(remaining, min_block):
                mask[top : top + bh, left : left + bw] = True
    flat = masks.view(batch, h * w)
    return select_exactly(flat, n_target, None, generator)


def inverse_block_mask_2d(
    batch: int, grid: tuple[int, int], ratio: float, block: int, adjust: float, generator: torch.Generator | None
) -> Tensor:
    """data2vec 2.0 image masking: KEEP `block` x `block` squares around random centres (about
    (1 - ratio + adjust) / block^2 centres per patch, `adjust` compensating for overlap), mask the
    rest, then make exactly round(ratio * N) masked per row. -> (B, H*W)."""
    h, w = grid
    n = h * w
    n_centres = max(1, int(n * (1.0 - ratio + adjust) / block**2))
    centres = _ranks(_rand((batch, n), generator)) < n_centres  # (B, N)
    grid_centres = centres.view(batch, 1, h, w).float()
    kept = F.max_pool2d(grid_centres, kernel_size=block, stride=1, padding=block // 2)[..., :h, :w]
    masked = ~kept.bool().view(batch, n)
    return select_exactly(masked, round(ratio * n), None, generator)


def span_mask_1d(
    batch: int,
    length: int,
    ratio: float,
    span: int,
    padding_mask: Tensor | None,
    generator: torch.Generator | None,
) -> Tensor:
    """wav2vec 2.0 / data2vec span masking: floor(ratio * L / span + U) distinct span starts per
    sequence (L = its unpadded length), each masking `span` steps; overlaps merge. Every row then gets
    the batch's smallest masked count, as fairseq's require_same_masks does. -> (B, T)."""
    valid = _valid(batch, length, padding_mask)  # (B, T)
    lengths = valid.sum(dim=1)  # (B,)
    n_spans = (ratio * lengths.float() / span + _rand((batch,), generator)).floor().long().clamp_min(1)
    positions = torch.arange(length).expand(batch, length)
    can_start = positions <= (lengths - span).clamp_min(0).unsqueeze(1)
    starts = select_exactly(torch.zeros_like(valid), n_spans, can_start & valid, generator)  # (B, T)
    mask = torch.zeros(batch, length + span, dtype=torch.bool)
    for offset in range(span):
        mask[:, offset : offset + length] |= starts
    mask = mask[:, :length] & valid
    return select_exactly(mask, int(mask.sum(dim=1).min()), valid, generator)


def random_mask_1d(
    batch: int, length: int, ratio: float, padding_mask: Tensor | None, generator: torch.Generator | None
) -> Tensor:
    """Exactly round(ratio * L) uniformly chosen positions per row (L = unpadded length). -> (B, T)."""
    valid = _valid(batch, length, padding_mask)
    counts = (ratio * valid.sum(dim=1).float()).round().long()
    return select_exactly(torch.zeros_like(valid), counts, valid, generator)


def equalize_kept(mask: Tensor, padding_mask: Tensor | None, generator: torch.Generator | None) -> Tensor:
    """data2vec 2.0 runs the student on kept tokens only, batched, so every row must keep the same
    number: rows keeping more than the minimum get extra random positions masked. -> (B, T)."""
    valid = _valid(mask.shape[0], mask.shape[1], padding_mask)
    kept = ~mask & valid
    n_keep = int(kept.sum(dim=1).min())
    new_kept = select_exactly(kept, n_keep, valid, generator)
    return valid & ~new_kept


def bert_corruption(
    mask: Tensor, spec: MaskSpec, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """BERT's 80/10/10 split of masked positions -> (use [MASK] token, use a random token), (B, T)."""
    u = _rand(tuple(mask.shape), generator)
    use_mask_token = mask & (u < 1.0 - spec.bert_random - spec.bert_keep)
    use_random = mask & ~use_mask_token & (u < 1.0 - spec.bert_keep)
    return use_mask_token, use_random


def make_mask(
    spec: MaskSpec,
    batch: int,
    length: int,
    padding_mask: Tensor | None = None,
    grid: tuple[int, int] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Dispatch on `spec.kind`. Image kinds need `grid` with grid[0] * grid[1] == length."""
    if spec.kind in ("block", "inverse_block"):
        if grid is None or grid[0] * grid[1] != length:
            raise ValueError(f"mask.kind={spec.kind} needs a patch grid matching {length} tokens, got {grid}")
        if spec.kind == "block":
            return block_mask_2d(batch, grid, spec.ratio, spec.min_block, generator)
        return inverse_block_mask_2d(batch, grid, spec.ratio, spec.span, spec.adjust, generator)
    if spec.kind == "span":
        return span_mask_1d(batch, length, spec.ratio, spec.span, padding_mask, generator)
    return random_mask_1d(batch, length, spec.ratio, padding_mask, generator)  # random and bert


def _valid(batch: int, length: int, padding_mask: Tensor | None) -> Tensor:
    if padding_mask is None:
        return torch.ones(batch, length, dtype=torch.bool)
    return ~padding_mask.cpu()
