"""What every evaluation procedure shares: named splits, deterministic subsets and loaders, pooling.

A procedure receives `splits`: a mapping of split name -> torch Dataset whose items are dicts (the
readers in d2v/data produce them), and optionally the readers' `collate` function for variable-length
items (text, speech). Without one, torch's default collate stacks equal-shaped tensors (images).

Loaders load in this process by default; `Loading(num_workers=n)` moves loading into n worker
processes without changing a single batch: the order comes from the same seeded draws (see
`DrawsAsInProcess`), and the evaluation datasets and collates draw no random numbers themselves.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler, Subset, default_collate

from d2v.core.types import Batch, EncoderOutput
from d2v.errors import D2VError

Collate = Callable[[list[Any]], Batch]


@dataclass
class EvalResult:
    """One evaluation's outcome: named metrics plus what plots and baselines need."""

    metrics: dict[str, float]
    n_train: int
    n_test: int
    predictions: list[Any] = field(default_factory=list)  # class ids, regression values or strings
    references: list[Any] = field(default_factory=list)  # the matching gold labels / transcripts
    train_losses: list[float] = field(default_factory=list)  # one per update, in order
    # speech: split ("test" and each extra split) -> characters emitted / reference characters
    output_ratios: dict[str, float] = field(default_factory=dict)
    # extra test split -> (outputs, references), one per example, for its interval: speech transcripts,
    # or a text task's predictions (MNLI's mismatched dev set)
    extra_transcripts: dict[str, tuple[list[Any], list[Any]]] = field(default_factory=dict)

    @property
    def extra_test_sizes(self) -> dict[str, int]:
        """Extra test split -> utterances scored on it."""
        return {split: len(references) for split, (_, references) in self.extra_transcripts.items()}

    def on_split(self, split: str) -> EvalResult:
        """This result's per-example outputs on `split` ("test" or an extra test split), as a result
        that paired-interval scorers read; a split without kept outputs gives empty lists."""
        if split == "test":
            return self
        hypotheses, references = self.extra_transcripts.get(split, ([], []))
        return replace(self, predictions=list(hypotheses), references=list(references), extra_transcripts={})


def get_split(splits: Mapping[str, Dataset], name: str, where: str = "splits") -> Dataset:
    """The named split; a clear error naming what exists when it is missing or empty."""
    if name not in splits:
        raise D2VError(f"{where}: missing split {name!r} (have: {', '.join(sorted(splits)) or 'none'})")
    dataset = splits[name]
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise D2VError(f"{where}: split {name!r} is empty")
    return dataset


def take_subset(dataset: Dataset, n: int | None, seed: int) -> Dataset:
    """A seeded random subset of n items (all of them when n is None or >= the size)."""
    size = len(dataset)  # type: ignore[arg-type]
    if n is None or n >= size:
        return dataset
    if n < 1:
        raise D2VError(f"subset size must be >= 1 or null, got {n}")
    indices = np.random.default_rng(seed).permutation(size)[:n]
    return Subset(dataset, sorted(indices.tolist()))


PREFETCH_FACTOR = 4  # batches each worker keeps ready ahead of the model
# Worker seeds come from their own generator (seeded from the loader's seed plus this), so starting
# workers draws nothing from the generators the batch order and the model use.
_WORKER_SEED_OFFSET = 7_919


@dataclass(frozen=True)
class Loading:
    """How evaluation loaders load: in this process (num_workers 0, the default) or in workers."""

    num_workers: int = 0
    pin_memory: bool = False  # page-locked batches: faster, asynchronous copies to a GPU

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise D2VError(f"evaluate.num_workers: must be >= 0 (0 = load in process), got {self.num_workers}")


IN_PROCESS = Loading()


class DrawsAsInProcess(Sampler):
    """A (batch) sampler that, on every pass, first makes the one draw a fresh in-process loader
    iterator makes for its workers' base seed, from `generator` (None: the global torch RNG).

    Persistent workers keep one iterator for every pass, so that draw would happen once instead of
    once per pass: a shuffled loader's second epoch would come out in another order, and the global
    RNG (dropout) would be left in another state. Drawing here instead keeps every sequence of draws
    what num_workers 0 gives; the workers' own seeds come from a separate generator."""

    def __init__(self, inner: Iterable[Any], generator: torch.Generator | None) -> None:
        self.inner = inner
        self.generator = generator

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        yield from self.inner


def _seed_worker_libraries(worker_id: int) -> None:
    """torch seeds each worker (base seed + id); python's and numpy's RNGs get the same seed, so
    whatever a dataset might draw there repeats from run to run."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def _worker_options(loading: Loading, seed: int) -> dict[str, Any]:
    return dict(
        num_workers=loading.num_workers,
        pin_memory=loading.pin_memory,
        persistent_workers=True,  # fine-tuning and CTC go over their loader many times
        prefetch_factor=PREFETCH_FACTOR,
        worker_init_fn=_seed_worker_libraries,
        generator=torch.Generator().manual_seed(seed + _WORKER_SEED_OFFSET),
    )


def make_loader(
    dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int, collate: Collate | None = None,
    loading: Loading = IN_PROCESS,
) -> DataLoader:
    """Shuffling draws from the loader's own seeded generator, so runs repeat exactly, and with any
    number of workers (`DrawsAsInProcess`)."""
    generator = torch.Generator().manual_seed(seed)
    if loading.num_workers == 0:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=collate or default_collate,
            num_workers=0,
            pin_memory=loading.pin_memory,
        )
    # The sampler DataLoader itself would build for shuffle=True, drawing from the same generator.
    order: Sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=DrawsAsInProcess(order, generator),
        collate_fn=collate or default_collate,
        **_worker_options(loading, seed),
    )


class LengthBucketBatches(Sampler[list[int]]):
    """Batches of similar-length items for variable-length data (speech): every pass shuffles the
    items, sorts each window of `window` batches' worth by length, cuts it into batches and shuffles
    the batch order. Padding then costs little (on the embedded ASR split: ~34 % fewer padded frames
    than random batches), while each pass still sees a different seeded order."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, window: int = 16) -> None:
        if batch_size < 1 or window < 1:
            raise D2VError(f"length buckets: batch_size and window must be >= 1, got {batch_size}, {window}")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.window = batch_size, window
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        span = self.batch_size * self.window
        full, rest = divmod(len(self.lengths), span)
        return full * self.window + -(-rest // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = self.rng.permutation(len(self.lengths))
        span = self.batch_size * self.window
        batches = []
        for start in range(0, len(order), span):
            window = order[start : start + span]
            window = window[np.argsort(self.lengths[window], kind="stable")]
            batches += [window[i : i + self.batch_size].tolist() for i in range(0, len(window), self.batch_size)]
        for b in self.rng.permutation(len(batches)):
            yield batches[b]


def make_bucketed_loader(
    dataset: Dataset, lengths: Sequence[int], batch_size: int, *, seed: int, collate: Collate | None = None,
    loading: Loading = IN_PROCESS,
) -> DataLoader:
    """A shuffling loader whose batches group items of similar length (`LengthBucketBatches`)."""
    if len(lengths) != len(dataset):  # type: ignore[arg-type]
        raise D2VError(f"length buckets: {len(lengths)} lengths for {len(dataset)} items")  # type: ignore[arg-type]
    sampler = LengthBucketBatches(lengths, batch_size, seed)
    if loading.num_workers == 0:
        return DataLoader(
            dataset, batch_sampler=sampler, collate_fn=collate or default_collate, num_workers=0,
            pin_memory=loading.pin_memory,
        )
    # No generator here: each in-process pass draws its workers' base seed from the global RNG.
    return DataLoader(
        dataset, batch_sampler=DrawsAsInProcess(sampler, None), collate_fn=collate or default_collate,
        **_worker_options(loading, seed),
    )


def labels_of(batch: Batch, where: str = "batch") -> Tensor:
    if not isinstance(batch, Mapping):
        raise D2VError(f"{where}: batches must be dicts of tensors, got {type(batch).__name__}; pass the readers' collate")
    if "label" not in batch:
        raise D2VError(f"{where}: no 'label' key (have: {', '.join(batch)})")
    return batch["label"]


def collect_labels(dataset: Dataset, where: str, collate: Collate | None = None) -> Tensor:
    """All labels of a labelled split, read through the readers' collate (items may be tuples)."""
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise D2VError(f"{where}: empty label set")
    loader = make_loader(dataset, 256, shuffle=False, seed=0, collate=collate)
    return torch.cat([labels_of(batch, where) for batch in loader])


def num_classes_of(labels: Tensor, where: str) -> int:
    """Class count from integer labels 0..C-1; at least two distinct classes are needed to learn."""
    if labels.numel() == 0:
        raise D2VError(f"{where}: empty label set")
    if labels.is_floating_point():
        raise D2VError(f"{where}: float labels given to a classifier (regression tasks take float labels)")
    if int(labels.min()) < 0:
        raise D2VError(f"{where}: negative label {int(labels.min())}; labels must be 0..C-1")
    if labels.unique().numel() < 2:
        raise D2VError(f"{where}: only one distinct label ({int(labels[0])}); need at least two classes")
    return int(labels.max()) + 1


def pool(output: EncoderOutput, pooling: str) -> Tensor:
    """(B, T, D) features -> (B, D): the CLS output, or the mean over non-padding positions."""
    if pooling == "cls":
        if output.cls is None:
            raise D2VError("pooling 'cls': this encoder has no CLS output; use pooling: mean")
        return output.cls
    if pooling != "mean":
        raise D2VError(f"unknown pooling {pooling!r} (expected mean or cls)")
    if output.padding_mask is None:
        # One token (the input baselines' features): itself, without a reduction over a (B, 1, D) copy.
        return output.x[:, 0] if output.x.shape[1] == 1 else output.x.mean(dim=1)
    keep = (~output.padding_mask).unsqueeze(-1).to(output.x.dtype)  # (B, T, 1)
    return (output.x * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)


def first_batch(loader: DataLoader) -> Batch:
    """The loader's first batch, with exactly the draws an in-process pass makes for it.

    A pass with workers prefetches: left after one batch, it may already have run the sampler to its
    end, where RandomSampler draws once more, and the next pass's order would depend on num_workers.
    So with workers the batch is read here, from the loader's own batch sampler, in this process."""
    if loader.num_workers == 0:
        return next(iter(loader))
    indices = next(iter(loader.batch_sampler))  # type: ignore[call-overload]
    return loader.collate_fn([loader.dataset[i] for i in indices])


def as_list(values: Tensor | Sequence[Any]) -> list[Any]:
    return values.tolist() if isinstance(values, Tensor) else list(values)
