from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from d2v.errors import D2VError
from d2v.eval.data import (
    PREFETCH_FACTOR, LengthBucketBatches, Loading, first_batch, make_bucketed_loader, make_loader,
)

from eval_standins import DictDataset


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


# ------------------------------------------------------------------------------ loader workers

def _passes(loader, first: bool = True) -> list:
    """What a procedure sees: (fine-tuning's) first batch, then two full passes; and the global RNG after."""
    seen = [first_batch(loader)["label"].tolist()] if first else []
    for _ in range(2):
        seen += [batch["label"].tolist() for batch in loader]
    return [seen, torch.rand(3).tolist()]


def test_loader_workers_change_no_batch_and_no_draw() -> None:
    data = DictDataset(label=torch.arange(40))  # 40 = 4 batches of 10: passes end exactly, prefetch runs ahead
    runs = []
    for workers in (0, 2):
        torch.manual_seed(0)
        shuffled = make_loader(data, 10, shuffle=True, seed=3, loading=Loading(num_workers=workers))
        bucketed = make_bucketed_loader(data, list(range(40, 0, -1)), 10, seed=3, loading=Loading(num_workers=workers))
        runs.append([_passes(shuffled), _passes(bucketed, first=False)])
    assert runs[0] == runs[1]
    assert runs[0][0][0][1:11] != runs[0][0][0][11:21]  # the two passes differ: the order was really drawn


def test_plain_persistent_workers_would_change_the_order() -> None:
    """Why DrawsAsInProcess exists: torch's persistent workers draw the base seed once, not per pass."""
    data = DictDataset(label=torch.arange(40))

    def orders(**workers) -> list:
        loader = DataLoader(data, batch_size=10, shuffle=True, generator=torch.Generator().manual_seed(3), **workers)
        return [[b["label"].tolist() for b in loader] for _ in range(2)]

    plain = orders(num_workers=2, persistent_workers=True)
    assert plain[0] == orders(num_workers=0)[0] and plain[1] != orders(num_workers=0)[1]


def test_loader_options_for_workers() -> None:
    loader = make_loader(DictDataset(label=torch.arange(4)), 2, shuffle=False, seed=0, loading=Loading(num_workers=2))
    assert loader.num_workers == 2 and loader.persistent_workers and loader.prefetch_factor == PREFETCH_FACTOR
    assert not loader.pin_memory  # pinned only on CUDA (EvalRuntime.from_config)
    in_process = make_loader(DictDataset(label=torch.arange(4)), 2, shuffle=False, seed=0)
    assert in_process.num_workers == 0 and not in_process.persistent_workers
    with pytest.raises(D2VError, match=r"evaluate\.num_workers: must be >= 0"):
        Loading(num_workers=-1)
