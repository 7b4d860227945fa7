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
