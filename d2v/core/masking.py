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


class _UniformDraws:
    """The uniform draws `torch.rand` would give one call at a time, taken from `generator` in
    chunks. CPU uniform draws are sequential, so torch.rand(n) is n single draws in order; `finish`
    rewinds the generator and advances it by exactly the draws used, leaving it where one-at-a-time
    calls would have. A Python loop then costs no torch call per draw (BEiT's block masking drew
    ~900 times per batch of 64: 7 ms of a 120 ms image step)."""

    def __init__(self, generator: torch.Generator | None, chunk: int = 1024) -> None:
        self.generator = generator if generator is not None else torch.default_generator
        self.start = self.generator.get_state()
        self.chunk = chunk
        self.buffer: list[float] = []
        self.used = 0

    def take(self, n: int) -> list[float]:
        while len(self.buffer) < self.used + n:
            self.buffer += torch.rand(self.chunk, generator=self.generator).tolist()
        out = self.buffer[self.used : self.used + n]
        self.used += n
        return out

    def finish(self) -> None:
        self.generator.set_state(self.start)
        if self.used:
            torch.rand(self.used, generator=self.generator)


def block_mask_2d(
    batch: int, grid: tuple[int, int], ratio: float, min_block: int, generator: torch.Generator | None
) -> Tensor:
    """BEiT block-wise masking: random rectangles (aspect 0.3..3.3, area >= min_block patches) until
    round(ratio * N) patches are masked; the count is then made exact. -> (B, H*W).

    Each attempt draws four uniforms (area, aspect, top, left). The rectangles are placed on Python
    lists: on a 7 x 7 or 14 x 14 grid, torch calls per attempt would cost more than the arithmetic."""
    h, w = grid
    n_target = round(ratio * h * w)
    log_aspect = (math.log(0.3), math.log(1 / 0.3))
    draws = _UniformDraws(generator)
    rows: list[list[bool]] = []
    for _ in range(batch):
        mask = [[False] * w for _ in range(h)]
        masked = 0
        for _ in range(10 * h * w):  # bounded: each accepted rectangle masks >= 1 new patch
            remaining = n_target - masked
            if remaining <= 0:
                break
            u = draws.take(4)
            area = min_block + u[0] * max(remaining - min_block, 0)
            aspect = math.exp(log_aspect[0] + u[1] * (log_aspect[1] - log_aspect[0]))
            bh = max(1, min(h, round(math.sqrt(area * aspect))))
            bw = max(1, min(w, round(math.sqrt(area / aspect))))
            top = int(u[2] * (h - bh + 1))
            left = int(u[3] * (w - bw + 1))
            new = bh * bw - sum(sum(row[left : left + bw]) for row in mask[top : top + bh])
            if 0 < new <= max(remaining, min_block):
                for row in mask[top : top + bh]:
                    row[left : left + bw] = [True] * bw
                masked += new
        rows.append([cell for row in mask for cell in row])
    draws.finish()
    flat = torch.tensor(rows, dtype=torch.bool).reshape(batch, h * w)
    return select_exactly(flat, n_target, None, generator)


def _block_centres(batch: int, n: int, count: int, generator: torch.Generator | None) -> Tensor:
    """`count` positions per row drawn uniformly WITH replacement (fairseq's randint): (B, n) bool."""
    centres = torch.zeros(batch, n, dtype=torch.bool)
    if count > 0:
        drawn = torch.randint(0, n, (batch, count), generator=generator)
        centres.scatter_(1, drawn, True)
    return centres


def inverse_block_mask_2d(
    batch: int, grid: tuple[int, int], ratio: float, block: int, adjust: float, generator: torch.Generator | None
) -> Tensor:
    """data2vec 2.0 image masking (fairseq compute_block_mask_2d, inverse_mask): int(N x (1 - ratio +
    adjust) / block^2) centres per row, drawn with replacement; the `block` x `block` square around each
    (cut at the border) is KEPT; then exactly int(N x (1 - ratio)) patches are kept per row, surplus
    kept ones dropped or missing ones added at random. -> (B, H*W) True = masked."""
    h, w = grid
    n = h * w
    keep_fraction = 1.0 - ratio
    centres = _block_centres(batch, n, int(n * (keep_fraction + adjust) / block**2), generator)
    grid_centres = centres.view(batch, 1, h, w).float()
    pad = block // 2  # offsets -pad .. block-1-pad around the centre, as fairseq's
    kept = F.max_pool2d(F.pad(grid_centres, (block - 1 - pad, pad, block - 1 - pad, pad)), block, stride=1)
    kept = select_exactly(kept.bool().view(batch, n), int(n * keep_fraction), None, generator)
    return ~kept


def block_mask_1d(
    batch: int,
    length: int,
    ratio: float,
    span: int,
    adjust: float,
    padding_mask: Tensor | None,
    generator: torch.Generator | None,
) -> Tensor:
    """data2vec 2.0 audio masking (fairseq compute_block_mask_1d): per row of unpadded length L,
    int(L x (ratio + adjust) / span) centres drawn with replacement, `span` steps around each masked
    (cut at the ends), then exactly int(L x ratio) masked, surplus unmasked or missing added at
    random. -> (B, T) True = masked."""
    valid = _valid(batch, length, padding_mask)
    lengths = valid.sum(dim=1)  # (B,)
    # Centres uniform over each row's own length: a uniform draw scaled by L_i.
    n_centres = int(length * (ratio + adjust) / span)
    drawn = (_rand((batch, max(n_centres, 1)), generator) * lengths[:, None]).long()  # (B, C)
    per_row = (lengths.double() * (ratio + adjust) / span).long()  # int() per row, as fairseq's
    use = torch.arange(drawn.shape[1])[None, :] < per_row[:, None]
    centres = torch.zeros(batch, length + span, dtype=torch.bool)
    centres.scatter_(1, torch.where(use, drawn, length + span - 1), True)  # unused draws land off the end
    centres = centres[:, :length]
    pad = span // 2
    mask = F.max_pool1d(F.pad(centres[:, None].float(), (span - 1 - pad, pad)), span, stride=1)[:, 0].bool()
    mask = mask & valid
    counts = (lengths.double() * ratio).long()
    return select_exactly(mask, counts, valid, generator)


def span_mask_1d(
    batch: int,
    length: int,
    ratio: float,
    span: int,
    padding_mask: Tensor | None,
    generator: torch.Generator | None,
) -> Tensor:
    """wav2vec 2.0 / data2vec 1.0 span masking (fairseq compute_mask_indices): max(1, int(ratio x L /
    span + U)) distinct span starts in [0, L - span) per sequence (L = its unpadded length), each
    masking `span` steps; overlaps merge. Every row then gets the batch's smallest masked count, as
    require_same_masks does. -> (B, T)."""
    valid = _valid(batch, length, padding_mask)  # (B, T)
    lengths = valid.sum(dim=1)  # (B,)
    n_spans = (ratio * lengths.float() / span + _rand((batch,), generator)).floor().long().clamp_min(1)
    positions = torch.arange(length).expand(batch, length)
    can_start = positions < (lengths - span).clamp_min(1).unsqueeze(1)
    starts = select_exactly(torch.zeros_like(valid), n_spans, can_start & valid, generator)  # (B, T)
    mask = torch.zeros(batch, length + span, dtype=torch.bool)
    for offset in range(span):
        mask[:, offset : offset + length] |= starts
    mask = mask[:, :length] & valid
    return select_exactly(mask, int(mask.sum(dim=1).min()), valid, generator)


def random_mask_1d(
    batch: int, length: int, ratio: float, padding_mask: Tensor | None, generator: torch.Generator | None
) -> Tensor:
    """MAE's random masking: int(L x (1 - ratio)) positions kept, the other L - int(...) masked, chosen
    uniformly per row (L = unpadded length). -> (B, T)."""
    valid = _valid(batch, length, padding_mask)
    lengths = valid.sum(dim=1)
    counts = lengths - (lengths.double() * (1.0 - ratio)).long()
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
    if spec.kind == "block_1d":
        return block_mask_1d(batch, length, spec.ratio, spec.span, spec.adjust, padding_mask, generator)
    if spec.kind == "span":
        return span_mask_1d(batch, length, spec.ratio, spec.span, padding_mask, generator)
    return random_mask_1d(batch, length, spec.ratio, padding_mask, generator)  # random and bert


def _valid(batch: int, length: int, padding_mask: Tensor | None) -> Tensor:
    if padding_mask is None:
        return torch.ones(batch, length, dtype=torch.bool)
    return ~padding_mask.cpu()
