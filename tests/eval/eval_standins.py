"""Small stand-in encoders and datasets for the evaluation tests (imported by name: a helper
module, not a conftest, so it never collides with another conftest on sys.path)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from d2v.core.types import Batch, EncoderOutput


class ResidualMLPBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mlp(self.norm(x))


class PatchEmbed(nn.Module):
    def __init__(self, channels: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, stride=patch)

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        return self.proj(batch["image"]).flatten(2).transpose(1, 2), None  # (B, T, D)


class TokenEmbed(nn.Module):
    def __init__(self, vocab: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        return self.embed(batch["tokens"]), batch.get("padding_mask")  # (B, T, D)


class FrameEmbed(nn.Module):
    """Waveform -> one feature vector per `frame` samples (a 1-layer stand-in for the wav2vec CNN)."""

    def __init__(self, dim: int, frame: int) -> None:
        super().__init__()
        self.frame = frame
        self.conv = nn.Conv1d(1, dim, frame, stride=frame)

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        x = self.conv(batch["waveform"].unsqueeze(1)).transpose(1, 2)  # (B, T, D)
        mask = batch.get("padding_mask")
        return x, None if mask is None else mask[:, :: self.frame][:, : x.shape[1]]


class StandInEncoder(nn.Module):
    """feature_extractor -> [CLS] + tokens -> blocks -> final norm, as real encoders are laid out."""

    def __init__(self, feature_extractor: nn.Module, dim: int, depth: int, with_cls: bool = True) -> None:
        super().__init__()
        self.feature_extractor = feature_extractor
        self.embed_dim = dim
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02) if with_cls else None
        self.blocks = nn.ModuleList(ResidualMLPBlock(dim) for _ in range(depth))
        self.final_norm = nn.LayerNorm(dim)

    def forward(self, batch: Batch) -> EncoderOutput:
        x, mask = self.feature_extractor(batch)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + T, D)
            if mask is not None:
                mask = torch.cat([torch.zeros_like(mask[:, :1]), mask], dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.final_norm(x)
        if self.cls_token is None:
            return EncoderOutput(x=x, padding_mask=mask)
        return EncoderOutput(x=x[:, 1:], padding_mask=None if mask is None else mask[:, 1:], cls=x[:, 0])


class DictDataset(Dataset):
    """Items are dicts of per-example values, as the data readers produce."""

    def __init__(self, **columns: Tensor | list) -> None:
        self.columns = columns
        self.size = len(next(iter(columns.values())))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        return {key: values[index] for key, values in self.columns.items()}


def make_image_splits(n_train: int, n_test: int, classes: int = 4, seed: int = 0) -> dict[str, Dataset]:
    """8x8 one-channel images: class k = a bright kxk-free quadrant pattern plus noise (easily learnt)."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(classes, 1, 8, 8, generator=generator)

    def split(n: int) -> Dataset:
        labels = torch.arange(n) % classes
        images = prototypes[labels] + 0.3 * torch.randn(n, 1, 8, 8, generator=generator)
        return DictDataset(image=images, label=labels)

    return {"train": split(n_train), "test": split(n_test)}


# ------------------------------------------------------------------------------ placement checks
#
# Without a GPU nothing can be on the wrong device, so these make "not placed" visible on the CPU:
# `PlacementGuard` is a CPU runtime that marks every tensor it places (on a fresh copy, so a tensor
# that never went through it is never marked), every module it places or borrows, and the time
# spent inside its autocast(); `Guarded*` encoders fail on any batch tensor, module or forward pass
# that skipped it. A procedure that forgets one `runtime.place(batch)` fails these tests, as it
# would fail on CUDA with a device mismatch.

import contextlib  # noqa: E402
import contextvars  # noqa: E402
import copy  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, Iterator, Mapping  # noqa: E402

from d2v.eval.device import EvalRuntime  # noqa: E402
from d2v.eval.input_features import BagOfNgrams, LogMelFrames, RawPixels  # noqa: E402

_MARK = "_placed_by_runtime"
_IN_AUTOCAST = contextvars.ContextVar("in_runtime_autocast", default=False)


def _mark_modules(module: nn.Module) -> nn.Module:
    for sub in module.modules():
        object.__setattr__(sub, _MARK, True)
    return module


@dataclass(frozen=True)
class PlacementGuard(EvalRuntime):
    """A CPU runtime that marks what goes through it (see above)."""

    def place(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        placed = super().place(batch)
        for key, value in placed.items():
            if isinstance(value, Tensor):
                value = value.clone()  # on a real device `.to` makes a new tensor too
                setattr(value, _MARK, True)
                placed[key] = value
        return placed

    def place_module(self, module):  # type: ignore[no-untyped-def]
        return _mark_modules(super().place_module(module))

    def borrow_module(self, module):  # type: ignore[no-untyped-def]
        return _mark_modules(copy.deepcopy(module))  # as on another device: the caller's stays unmarked

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        token = _IN_AUTOCAST.set(True)
        try:
            yield
        finally:
            _IN_AUTOCAST.reset(token)


def check_placed(module: nn.Module, batch: Batch, what: str) -> None:
    if not getattr(module, _MARK, False):
        raise AssertionError(f"{what}: the module was not placed through the runtime")
    for key, value in batch.items():
        if isinstance(value, Tensor) and not getattr(value, _MARK, False):
            raise AssertionError(f"{what}: batch[{key!r}] was not placed through the runtime")
    if not _IN_AUTOCAST.get():
        raise AssertionError(f"{what}: an encoder forward pass outside runtime.autocast()")


class GuardedEncoder(StandInEncoder):
    def forward(self, batch: Batch) -> EncoderOutput:
        check_placed(self, batch, "encoder forward")
        return super().forward(batch)


class GuardedPixels(RawPixels):
    def forward(self, batch: Batch) -> EncoderOutput:
        check_placed(self, batch, "raw pixels")
        return super().forward(batch)


class GuardedWords(BagOfNgrams):
    def forward(self, batch: Batch) -> EncoderOutput:
        check_placed(self, batch, "bag of words")
        return super().forward(batch)


class GuardedLogMel(LogMelFrames):
    def frozen_features(self, batch: Batch) -> Batch:
        check_placed(self, batch, "log-mel cache")
        return super().frozen_features(batch)

    def forward(self, batch: Batch) -> EncoderOutput:
        check_placed(self, batch, "log-mel frames")
        return super().forward(batch)
