"""What the modality-agnostic Data2Vec model needs from a modality front end."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from d2v.core.types import Batch


@dataclass
class Features:
    """Local (pre-Transformer) features of a batch, before positional information is added."""

    x: Tensor  # (B, T, D)
    padding_mask: Tensor | None = None  # (B, T) True = padding
    grid: tuple[int, int] | None = None  # images: the patch grid, T = grid[0] * grid[1]


class Frontend(nn.Module, abc.ABC):
    """Base class. Subclasses set `dim`, `local_encoder` and implement `local_features`."""

    dim: int
    local_encoder: nn.Module  # shared with the teacher; frozen for CTC fine-tuning
    num_extra_tokens: int = 0  # tokens (CLS) prepended in front of the sequence

    def __init__(self, dim: int, learned_mask: bool) -> None:
        super().__init__()
        self.dim = dim
        # data2vec 1.0's learned mask embedding. Only created when used (v1, not text, which uses its
        # [MASK] token), so every parameter gets a gradient (DDP requires it).
        self.mask_embed = nn.Parameter(torch.empty(dim).normal_(std=0.02)) if learned_mask else None

    @abc.abstractmethod
    def local_features(self, batch: Batch) -> Features:
        """The modality's own feature encoder: raw batch -> (B, T, D) features."""

    def add_positions(self, features: Features) -> Tensor:
        """Positional information for the (unmasked or mask-substituted) features -> (B, T, D)."""
        return features.x

    def attention_bias(self, features: Features) -> Tensor | None:
        """An additive (1, H, T', T') attention bias for every block (T' counts extra tokens), or None."""
        return None

    def extra_tokens(self, batch_size: int) -> Tensor | None:
        return None

    def mask_input(
        self, features: Features, mask: Tensor, batch: Batch, generator: torch.Generator | None
    ) -> Features:
        """data2vec 1.0 student input: masked positions replaced by the mask embedding."""
        if self.mask_embed is None:
            raise RuntimeError("this front end was built without a mask embedding (data2vec 2.0)")
        x = torch.where(mask.unsqueeze(-1), self.mask_embed.to(features.x.dtype), features.x)
        return Features(x, features.padding_mask, features.grid)
