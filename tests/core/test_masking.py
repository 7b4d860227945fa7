from __future__ import annotations

import math

import pytest
import torch

from d2v.core.masking import (
    bert_corruption,
    block_mask_1d,
    block_mask_2d,
    equalize_kept,
    inverse_block_mask_2d,
    make_mask,
    random_mask_1d,
    select_exactly,
    span_mask_1d,
)
from d2v.core.spec import MaskSpec


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _components(mask_2d: torch.Tensor) -> list[int]:
    """Sizes of 4-connected True regions."""
    h, w = mask_2d.shape
    seen = torch.zeros_like(mask_2d)
    sizes = []
    for i in range(h):
        for j in range(w):
            if mask_2d[i, j] and not seen[i, j]:
                stack, size = [(i, j)], 0
                seen[i, j] = True
                while stack:
                    a, b = stack.pop()
                    size += 1
                    for da, db in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                        x, y = a + da, b + db
                        if 0 <= x < h and 0 <= y < w and mask_2d[x, y] and not seen[x, y]:
                            seen[x, y] = True
                            stack.append((x, y))
                sizes.append(size)
    return sizes


def test_block_mask_exact_ratio_and_blocky() -> None:
    masks = block_mask_2d(64, (14, 14), 0.6, 16, gen())
    assert masks.shape == (64, 196)
    assert (masks.sum(1) == round(0.6 * 196)).all()
    sizes = [s for m in masks for s in _components(m.view(14, 14))]
    # Rectangles of >= 16 patches merge into a few large regions, unlike i.i.d. masking.
    assert sum(sizes) / len(sizes) > 20


def _block_mask_one_draw_at_a_time(batch, grid, ratio, min_block, generator):
    """The block masker written the direct way, one torch.rand call per draw and torch slicing: the
    chunked drawing of block_mask_2d must give the same masks and leave the generator in the same state."""
    h, w = grid
    n_target = round(ratio * h * w)
    masks = torch.zeros(batch, h, w, dtype=torch.bool)
    low, high = math.log(0.3), math.log(1 / 0.3)
    for b in range(batch):
        for _ in range(10 * h * w):
            remaining = n_target - int(masks[b].sum())
            if remaining <= 0:
                break
            u = torch.rand(3, generator=generator).tolist()
            area = min_block + u[0] * max(remaining - min_block, 0)
            aspect = math.exp(low + u[1] * (high - low))
            bh = max(1, min(h, round(math.sqrt(area * aspect))))
            bw = max(1, min(w, round(math.sqrt(area / aspect))))
            top = int(u[2] * (h - bh + 1))
            left = int(torch.rand(1, generator=generator).item() * (w - bw + 1))
            new = bh * bw - int(masks[b, top : top + bh, left : left + bw].sum())
            if 0 < new <= max(remaining, min_block):
                masks[b, top : top + bh, left : left + bw] = True
    return select_exactly(masks.view(batch, h * w), n_target, None, generator)


@pytest.mark.parametrize(("grid", "ratio", "min_block"), [((7, 7), 0.6, 4), ((14, 14), 0.6, 16), ((14, 14), 0.4, 16), ((5, 9), 0.75, 2)])
def test_block_mask_draws_as_one_draw_at_a_time(grid, ratio, min_block) -> None:
    for seed in range(3):
        fast, direct = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        assert torch.equal(block_mask_2d(32, grid, ratio, min_block, fast),
                           _block_mask_one_draw_at_a_time(32, grid, ratio, min_block, direct))
        assert torch.equal(torch.rand(5, generator=fast), torch.rand(5, generator=direct))  # same state after


def test_block_mask_without_a_generator_draws_from_the_global_one() -> None:
    torch.manual_seed(7)
    fast = block_mask_2d(8, (7, 7), 0.6, 4, None)
    after_fast = torch.rand(3)
    torch.manual_seed(7)
    direct = _block_mask_one_draw_at_a_time(8, (7, 7), 0.6, 4, None)
    assert torch.equal(fast, direct) and torch.equal(after_fast, torch.rand(3))


def test_inverse_block_keeps_blocks() -> None:
    masks = inverse_block_mask_2d(64, (14, 14), 0.8, 3, 0.07, gen())
    assert (masks.sum(1) == round(0.8 * 196)).all()
    kept_sizes = [s for m in masks for s in _components(~m.view(14, 14))]
    # Kept patches come in 3x3 squares (trimmed to the exact count), not as isolated patches.
    assert sum(kept_sizes) / len(kept_sizes) > 4
    random = random_mask_1d(64, 196, 0.8, None, gen())
    random_sizes = [s for m in random for s in _components(~m.view(14, 14))]
    assert sum(kept_sizes) / len(kept_sizes) > 2 * sum(random_sizes) / len(random_sizes)


def test_span_mask_coverage_matches_span_start_probability() -> None:
    g = gen()
    # One row per draw: the batch-wide equalisation (to the smallest count) would bias a big batch.
    coverage = torch.cat([span_mask_1d(1, 500, 0.65, 10, None, g) for _ in range(200)]).float().mean()
    # Start probability 0.065 per step, span 10: expected coverage ~ 1 - (1 - 0.065)^10 = 0.49.
    assert coverage.item() == pytest.approx(1 - (1 - 0.065) ** 10, abs=0.02)
    batch = span_mask_1d(16, 500, 0.65, 10, None, g)
    assert (batch.sum(1) == batch.sum(1)[0]).all()  # same count in every row


def test_span_mask_never_masks_padding_and_equalises_counts() -> None:
    padding = torch.arange(100)[None, :] >= torch.tensor([[100], [60], [80]])
    masks = span_mask_1d(3, 100, 0.65, 10, padding, gen())
    assert not (masks & padding).any()
    assert len(set(masks.sum(1).tolist())) == 1


def test_random_mask_exact_fraction_of_valid_tokens() -> None:
    padding = torch.arange(50)[None, :] >= torch.tensor([[50], [20]])
    masks = random_mask_1d(2, 50, 0.48, padding, gen())
    assert masks.sum(1).tolist() == [24, 10]
    assert not (masks & padding).any()


def test_equalize_kept_gives_every_row_the_same_kept_count() -> None:
    padding = torch.arange(50)[None, :] >= torch.tensor([[50], [20]])
    masks = equalize_kept(random_mask_1d(2, 50, 0.48, padding, gen()), padding, gen(1))
    kept = (~masks & ~padding).sum(1)
    assert kept[0] == kept[1] == 10


def test_bert_corruption_splits_80_10_10() -> None:
    mask = torch.ones(200, 200, dtype=torch.bool)
    use_mask, use_random = bert_corruption(mask, MaskSpec(kind="bert", ratio=0.15), gen())
    assert use_mask.float().mean().item() == pytest.approx(0.8, abs=0.01)
    assert use_random.float().mean().item() == pytest.approx(0.1, abs=0.01)
    assert not (use_mask & use_random).any()


def test_masks_are_deterministic_under_a_generator() -> None:
    spec = MaskSpec(kind="inverse_block", ratio=0.8, span=3, adjust=0.07)
    a = make_mask(spec, 8, 49, grid=(7, 7), generator=gen(3))
    b = make_mask(spec, 8, 49, grid=(7, 7), generator=gen(3))
    c = make_mask(spec, 8, 49, grid=(7, 7), generator=gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_image_masks_need_a_matching_grid() -> None:
    with pytest.raises(ValueError, match="patch grid"):
        make_mask(MaskSpec(kind="block", ratio=0.6), 2, 50, grid=(7, 7))


# ---- parity with the released code's mask counts (fairseq data_utils / MAE random_masking) ----


@pytest.mark.parametrize(("grid", "ratio", "kept"), [((7, 7), 0.8, 9), ((14, 14), 0.8, 39), ((14, 14), 0.75, 49)])
def test_inverse_block_keeps_exactly_int_of_the_kept_fraction(grid: tuple[int, int], ratio: float, kept: int) -> None:
    # compute_block_mask_2d(inverse_mask=True) keeps exactly int(N x (1 - mask_prob)) patches:
    # 7 x 7 at 0.8 keeps int(9.8) = 9 and masks 40 (81.6 %), not round(0.8 x 49) = 39.
    masks = inverse_block_mask_2d(32, grid, ratio, 3, 0.07, gen())
    assert ((~masks).sum(1) == kept).all()


@pytest.mark.parametrize("length", [49, 50, 149, 500])
def test_block_1d_masks_exactly_half_of_every_row(length: int) -> None:
    # compute_block_mask_1d with require_same_masks: exactly int(L x 0.5) masked, whatever overlaps.
    masks = block_mask_1d(16, length, 0.5, 5, 0.05, None, gen())
    assert (masks.sum(1) == int(length * 0.5)).all()


def test_block_1d_counts_each_rows_own_length_and_never_masks_padding() -> None:
    padding = torch.arange(100)[None, :] >= torch.tensor([[100], [61], [80]])
    masks = block_mask_1d(3, 100, 0.5, 5, 0.05, padding, gen())
    assert masks.sum(1).tolist() == [50, 30, 40]
    assert not (masks & padding).any()


def test_block_1d_masks_blocks_not_isolated_frames() -> None:
    masks = block_mask_1d(64, 200, 0.5, 5, 0.05, None, gen())
    starts = (masks[:, 1:] & ~masks[:, :-1]).sum() + masks[:, 0].sum()
    mean_run = masks.sum() / starts
    # Runs of i.i.d. masking at 50 % average 2 frames; 5-frame blocks (merged by overlaps) are longer.
    assert mean_run > 4.0


def test_span_starts_stop_before_the_last_span() -> None:
    # compute_mask_indices draws starts from [0, L - span): the last step is never masked.
    g = gen()
    masks = torch.cat([span_mask_1d(1, 40, 0.65, 10, None, g) for _ in range(300)])
    assert not masks[:, -1].any() and masks[:, -2].any()


def test_block_1d_is_a_make_mask_kind() -> None:
    spec = MaskSpec(kind="block_1d", ratio=0.5, span=5, adjust=0.05)
    mask = make_mask(spec, 4, 120, generator=gen())
    assert (mask.sum(1) == 60).all()
