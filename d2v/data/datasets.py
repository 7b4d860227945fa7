"""Readers of the prepared formats: torch Datasets and collates producing d2v.core.types batches."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from d2v.core.types import BOS_ID, EOS_ID, PAD_ID
from d2v.data.io import read_csv
from d2v.data.tokenizer import load_tokenizer
from d2v.errors import D2VError


def _manifest(root: Path, split: str, column: str = "split") -> list[dict[str, str]]:
    path = root / "manifest.csv"
    if not path.is_file():
        raise D2VError(f"{path}: not found (run the prepare stage)")
    rows = [r for r in read_csv(path) if r[column] == split]
    if not rows:
        raise D2VError(f"{path}: no rows for split {split!r}")
    return rows


@lru_cache(maxsize=64)
def _mmap(path: str) -> np.ndarray:
    return np.load(path, mmap_mode="r")


class ImageDataset(Dataset):
    """(uint8 (H, W, C) array, label) of one split; `transform` (if given) maps the array first."""

    def __init__(self, root: str | Path, split: str, transform: Callable | None = None):
        self.root = Path(root)
        self.rows = _manifest(self.root, split)
        self.meta = json.loads((self.root / "meta.json").read_text(encoding="utf-8"))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = self.rows[i]
        image = np.asarray(_mmap(str(self.root / row["shard"]))[int(row["index"])])
        return (self.transform(image) if self.transform else image), int(row["label"])


class ImageCollate:
    """[(uint8 HWC, label)] -> {"image": float (B, C, H, W) normalised, "label": long (B,)}."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, items):
        images = torch.as_tensor(np.stack([np.asarray(x) for x, _ in items]))  # (B, H, W, C) uint8
        images = images.permute(0, 3, 1, 2).float().div_(255.0)  # (B, C, H, W)
        return {"image": (images - self.mean) / self.std, "label": torch.tensor([y for _, y in items])}


def normalize_utterance(wave: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Zero mean, unit variance over one whole utterance (data2vec's `normalize: true`).

    The only place d2v normalises waveforms: it runs on the utterance before any crop, pack or pad,
    so a crop keeps the loudness it has within its utterance (a quiet onset stays quiet).
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.size == 0:
        return wave
    mean, var = float(wave.mean(dtype=np.float64)), float(wave.var(dtype=np.float64))
    return ((wave - mean) / np.sqrt(var + eps)).astype(np.float32)


class SpeechDataset(Dataset):
    """(float32 waveform (S,) at 16 kHz, transcript or None, speaker) of one split.

    `normalize`: each utterance is normalised on its own (`normalize_utterance`) when read. Pass the
    model's `SpeechFrontSpec.normalize_waveform`: the model's front end does not normalise, so
    everything that feeds it waveforms reads them through here (crops and padding come later).
    """

    def __init__(self, root: str | Path, split: str, *, normalize: bool):
        self.root = Path(root)
        self.rows = _manifest(self.root, split)
        self.normalize = normalize

    def __len__(self) -> int:
        return len(self.rows)

    def n_samples(self, i: int) -> int:
        """Length of utterance `i` in samples, from the manifest (no audio is read)."""
        return int(self.rows[i]["n_samples"])

    def waveform(self, i: int) -> np.ndarray:
        row = self.rows[i]
        start, n = int(row["offset"]), int(row["n_samples"])
        wave = _mmap(str(self.root / row["shard"]))[start : start + n].astype(np.float32) / 32768.0
        return normalize_utterance(wave) if self.normalize else wave

    def __getitem__(self, i: int):
        row = self.rows[i]
        return self.waveform(i), (row["transcript"] or None), row["speaker"]


class SpeechCollate:
    """-> {"waveform": (B, S), "padding_mask": (B, S) True = pad}; `crop=True` crops every item to
    the shortest (random offset) instead of padding; `max_samples` caps S. Items arrive normalised
    (SpeechDataset), so padding and crops do not change any utterance's scale."""

    def __init__(self, crop: bool = False, max_samples: int | None = None, seed: int = 0):
        self.crop, self.max_samples = crop, max_samples
        self.rng = np.random.default_rng(seed)

    def __call__(self, items):
        waves = [np.asarray(w) for w, _, _ in items]
        target = min(map(len, waves)) if self.crop else max(map(len, waves))
        if self.max_samples:
            target = min(target, self.max_samples)
        batch = torch.zeros(len(waves), target)  # (B, S)
        mask = torch.ones(len(waves), target, dtype=torch.bool)  # (B, S)
        for b, w in enumerate(waves):
            start = int(self.rng.integers(0, len(w) - target + 1)) if len(w) > target else 0
            piece = torch.from_numpy(w[start : start + target])
            batch[b, : len(piece)], mask[b, : len(piece)] = piece, False
        return {"waveform": batch, "padding_mask": mask}


class TextBlockDataset(Dataset):
    """Contiguous blocks of the pretraining token stream: long (block_size,), BOS first."""

    def __init__(self, root: str | Path, split: str, block_size: int):
        self.root = Path(root)
        meta = json.loads((self.root / "meta.json").read_text(encoding="utf-8"))
        path = self.root / f"tokens-{split}.bin"
        if not path.is_file():
            raise D2VError(f"{path}: not found (run the tokenize stage)")
        self.tokens = np.memmap(path, dtype=np.dtype(meta["dtype"]), mode="r")
        self.span = block_size - 1  # one slot for BOS
        if len(self.tokens) < self.span:
            raise D2VError(f"{path}: {len(self.tokens)} tokens, fewer than one block of {block_size}")

    def __len__(self) -> int:
        return len(self.tokens) // self.span

    def __getitem__(self, i: int) -> torch.Tensor:
        body = np.asarray(self.tokens[i * self.span : (i + 1) * self.span], dtype=np.int64)
        return torch.from_numpy(np.concatenate([[BOS_ID], body]))


class TextTaskDataset(Dataset):
    """(ids_a list[int], ids_b list[int] | None, label) of one downstream task split."""

    def __init__(self, root: str | Path, task: str, split: str):
        self.root = Path(root)
        path = self.root / "tasks" / f"{task}.csv"
        if not path.is_file():
            raise D2VError(f"{path}: unknown task {task!r}")
        self.rows = [r for r in read_csv(path) if r["split"] == split]
        self.info = json.loads((self.root / "meta.json").read_text(encoding="utf-8"))["tasks"][task]
        self.sp = load_tokenizer(self.root)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = self.rows[i]
        label = float(row["label"]) if self.info["num_classes"] == 1 else int(row["label"])
        ids_b = self.sp.encode(row["text_b"]) if self.info["pair"] else None
        return self.sp.encode(row["text_a"]), ids_b, label


class TextCollate:
    """-> {"tokens": long (B, T), "padding_mask": (B, T) True = pad, "label": (B,)}.
    Single: BOS a EOS. Pair: BOS a EOS EOS b EOS (RoBERTa). Truncated to `max_length`, longest first."""

    def __init__(self, max_length: int = 128):
        self.max_length = max_length

    def _join(self, a: list[int], b: list[int] | None) -> list[int]:
        if b is None:
            return [BOS_ID, *a[: self.max_length - 2], EOS_ID]
        a, b = list(a), list(b)
        while len(a) + len(b) > self.max_length - 4:
            (a if len(a) >= len(b) else b).pop()
        return [BOS_ID, *a, EOS_ID, EOS_ID, *b, EOS_ID]

    def length(self, item) -> int:
        """Tokens of `item` once collated (BOS/EOS included, truncated): for batching by length."""
        a, b, _ = item
        return len(self._join(a, b))

    def __call__(self, items):
        seqs = [self._join(a, b) for a, b, _ in items]
        tokens = torch.full((len(seqs), max(map(len, seqs))), PAD_ID, dtype=torch.long)  # (B, T)
        for i, s in enumerate(seqs):
            tokens[i, : len(s)] = torch.tensor(s)
        labels = [y for _, _, y in items]
        dtype = torch.float32 if isinstance(labels[0], float) else torch.long
        return {"tokens": tokens, "padding_mask": tokens.eq(PAD_ID), "label": torch.tensor(labels, dtype=dtype)}
