from __future__ import annotations

import numpy as np
import pytest

from d2v.errors import D2VError
from d2v.eval.data import LengthBucketBatches, make_bucketed_loader


def _padded_frames(batches: list[list[int]], lengths: np.ndarray) -> int:
    return sum(len(b) * int(lengths[b].max()) for b in batches)


def test_length_buckets_cover_every_item_once_per_pass_and_pad_less_than_random_batches() -> None:
    lengths = np.random.default_rng(3).integers(20, 450, size=214)
    sampler = LengthBucketBatches(lengths.tolist(), batch_size=8, seed=0)
    first, second = list(sampler), list(sampler)
    for batches in (first, second):
        assert sorted(i for b in batches for i in b) == list(range(214))
        assert len(batches) == len(sampler)
        assert all(1 <= len(b) <= 8 for b in batches)
    assert first != second  # each pass draws a new order
    order = np.random.default_rng(0).permutation(214)
    random_batches = [order[i : i + 8] for i in range(0, 214, 8)]
    assert _padded_frames(first, lengths) < 0.8 * _padded_frames(random_batches, lengths)


def test_length_buckets_repeat_exactly_for_a_seed() -> None:
    lengths = list(range(50, 0, -1))
    first = list(LengthBucketBatches(lengths, 4, seed=7))
    assert list(LengthBucketBatches(lengths, 4, seed=7)) == first
    assert list(LengthBucketBatches(lengths, 4, seed=8)) != first


def test_length_buckets_count_partial_batches_per_window() -> None:
    # 2 windows of 3 x 2 items, then 5 left over: 3 + 3 + ceil(5 / 2) batches.
    sampler = LengthBucketBatches([1] * 17, batch_size=2, seed=0, window=3)
    assert len(sampler) == 9 == len(list(sampler))


def test_bucketed_loader_rejects_mismatched_lengths_and_bad_sizes() -> None:
    with pytest.raises(D2VError, match="3 lengths for 2 items"):
        make_bucketed_loader([{"x": 1}, {"x": 2}], [1, 2, 3], 2, seed=0)
    with pytest.raises(D2VError, match="batch_size and window must be >= 1"):
        LengthBucketBatches([1, 2], batch_size=0, seed=0)
