"""Speech pretraining crops packed from whole utterances: every crop has the same, chosen length.

The released data2vec audio recipe drops utterances under 2 s, buckets the rest by length under a
token budget and crops each batch to its shortest member; on LibriSpeech that gives crops of about
10-15 s. The embedded Asterisk prompts are short (median 1.6 s, 57 % under 2 s; the rest are
chunks of at most `data.speech.max_seconds`), so that recipe would discard most utterances and
make batches of one or two 12 s chunks beside batches of eight 2 s prompts. Packing keeps all the
audio and gives every step the same shape: in each epoch the utterances, each normalised on its
own first (SpeechDataset), are concatenated in a seeded random order, and the stream is cut into
crops of `crop_samples`, starting at a seeded random offset so crop boundaries move between epochs.

Item `i` of epoch `e` is a pure function of (seed, e, i): a resumed run, or a DataLoader worker,
reads exactly the crop an uninterrupted single-process run reads.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from d2v.errors import D2VError


class UtteranceSource(Protocol):
    """What packing needs of a speech dataset (d2v.data.datasets.SpeechDataset provides it)."""

    def __len__(self) -> int: ...

    def n_samples(self, i: int) -> int: ...

    def waveform(self, i: int) -> np.ndarray: ...


class PackedSpeechCrops(torch.utils.data.Dataset):
    """float32 crops (crop_samples,) cut from the epoch's shuffled, concatenated utterances."""

    def __init__(self, utterances: UtteranceSource, crop_samples: int, seed: int) -> None:
        if crop_samples < 1:
            raise D2VError(f"speech crops: crop length must be at least 1 sample, got {crop_samples}")
        self.utterances, self.crop, self.seed = utterances, crop_samples, seed
        self.lengths = np.array([utterances.n_samples(i) for i in range(len(utterances))], dtype=np.int64)
        total = int(self.lengths.sum())
        # One crop fewer than fits: whatever the epoch's start offset (< one crop), all of them fit.
        self.count = total // crop_samples - 1
        if self.count < 1:
            raise D2VError(
                f"speech crops: {total} samples of audio ({len(self.lengths)} utterances) do not fill two "
                f"crops of {crop_samples} samples; lower pretrain.speech.crop_seconds"
            )
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """The epoch's utterance order and start offset (the training loop calls this)."""
        rng = np.random.default_rng([self.seed, epoch])
        self.order = rng.permutation(len(self.lengths))  # (N,) utterance ids in stream order
        self.ends = np.cumsum(self.lengths[self.order])  # (N,) stream position after each utterance
        self.offset = int(rng.integers(0, self.crop))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < self.count:
            raise IndexError(f"crop {i} out of range (0..{self.count - 1})")
        start = self.offset + i * self.crop  # stream position of the crop's first sample
        crop = np.empty(self.crop, dtype=np.float32)  # (S,)
        filled = 0
        k = int(np.searchsorted(self.ends, start, side="right"))  # the utterance holding `start`
        while filled < self.crop:
            utterance = int(self.order[k])
            begins = int(self.ends[k]) - int(self.lengths[utterance])
            lo = start + filled - begins
            piece = self.utterances.waveform(utterance)[lo : lo + self.crop - filled]
            crop[filled : filled + len(piece)] = piece
            filled += len(piece)
            k += 1
        return crop


def stack_crops(items: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """Equal-length crops -> {"waveform": (B, S)}; no padding, so no padding mask."""
    return {"waveform": torch.from_numpy(np.stack(items))}
