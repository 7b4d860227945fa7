"""Images: ViT patch embedding, learned absolute positions, a CLS token."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from d2v.core.spec import ImageFrontSpec
from d2v.core.types import Batch
from d2v.errors import D2VError
from d2v.modalities.base import Features, Frontend


class ImageFrontend(Frontend):
    num_extra_tokens = 1

    def __init__(self, spec: ImageFrontSpec, dim: int, learned_mask: bool) -> None:
        super().__init__(dim, learned_mask)
        if spec.image_size % spec.patch_size:
            raise D2VError(f"image_size={spec.image_size} is not a multiple of patch_size={spec.patch_size}")
        self.spec = spec
        self.local_encoder = nn.Conv2d(spec.in_chans, dim, spec.patch_size, stride=spec.patch_size)
        side = spec.image_size // spec.patch_size
        self.pos_embed = nn.Parameter(torch.empty(1, side * side, dim).normal_(std=0.02))  # (1, N, D)
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim).normal_(std=0.02))

    def local_features(self, batch: Batch) -> Features:
        images = batch["image"]
        if images.ndim != 4 or images.shape[1] != self.spec.in_chans:
            raise D2VError(
                f"image batch must be (B, {self.spec.in_chans}, H, W), got {tuple(images.shape)}"
            )
        p = self.spec.patch_size
        if images.shape[2] % p or images.shape[3] % p:
            raise D2VError(f"image size {tuple(images.shape[2:])} is not a multiple of patch_size={p}")
        x = self.local_encoder(images)  # (B, D, H/p, W/p)
        grid = (x.shape[2], x.shape[3])
        return Features(x.flatten(2).transpose(1, 2), None, grid)  # (B, N, D)

    def add_positions(self, features: Features) -> Tensor:
        return features.x + self._pos_embed_for(features.grid)

    def extra_tokens(self, batch_size: int) -> Tensor:
        return self.cls_token.expand(batch_size, -1, -1)  # (B, 1, D)

    def _pos_embed_for(self, grid: tuple[int, int] | None) -> Tensor:
        side = self.spec.image_size // self.spec.patch_size
        if grid is None or grid == (side, side):
            return self.pos_embed
        # Another resolution than pretraining: interpolate the learned grid (as ViT fine-tuning does).
        table = self.pos_embed.reshape(1, side, side, self.dim).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=grid, mode="bicubic", align_corners=False)
        return table.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], self.dim)
