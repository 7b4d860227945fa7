"""What every evaluation procedure shares: named splits, deterministic subsets and loaders, pooling.

A procedure receives `splits`: a mapping of split name -> torch Dataset whose items are dicts (the
readers in d2v/data produce them), and optionally the readers' `collate` function for variable-length
items (text, speech). Without one, torch's default collate stacks equal-shaped tensors (images).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, default_collate

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


def make_loader(
    dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int, collate: Collate | None = None
) -> DataLoader:
    """Single-process loader; shuffling draws from its own seeded generator, so runs repeat exactly."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=collate or default_collate,
        num_workers=0,
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
    dataset: Dataset, lengths: Sequence[int], batch_size: int, *, seed: int, collate: Collate | None = None
) -> DataLoader:
    """A shuffling loader whose batches group items of similar length (`LengthBucketBatches`)."""
    if len(lengths) != len(dataset):  # type: ignore[arg-type]
        raise D2VError(f"length buckets: {len(lengths)} lengths for {len(dataset)} items")  # type: ignore[arg-type]
    sampler = LengthBucketBatches(lengths, batch_size, seed)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate or default_collate, num_workers=0)


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


def to_device(batch: Batch, device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


def first_batch(loader: DataLoader) -> Batch:
    return next(iter(loader))


def as_list(values: Tensor | Sequence[Any]) -> list[Any]:
    return values.tolist() if isinstance(values, Tensor) else list(values)
