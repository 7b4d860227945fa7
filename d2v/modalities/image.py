"""Images: ViT patch embedding, a CLS token, and one of three kinds of positions.

- sincos (data2vec 2.0): a fixed 2-D sin-cos table added to the patch embeddings, never trained.
- relative_bias (data2vec 1.0 / BEiT): no absolute positions; one table of learned per-head biases
  for every relative offset between patches (and the CLS token), shared by all blocks.
- learned: a trained absolute table (ViT), kept as an option.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from d2v.core.spec import ImageFrontSpec
from d2v.core.types import Batch
from d2v.errors import D2VError
from d2v.modalities.base import Features, Frontend


def sincos_2d(dim: int, grid: tuple[int, int]) -> Tensor:
    """MAE's fixed 2-D table, (H*W, dim), patches row-major. The first half of the channels encodes
    a patch's column, the second half its row (MAE builds its grid with meshgrid(w, h)); each half
    is [sin(p * w_k), cos(p * w_k)] with w_k = 10000^(-k / (dim / 4)), k < dim / 4."""
    if dim % 4:
        raise D2VError(f"image positions: sincos needs encoder.dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # (dim/4,)
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")

    def axis(pos: Tensor) -> Tensor:
        angles = pos.flatten().double()[:, None] * omega[None, :]  # (N, dim/4)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([axis(cols), axis(rows)], dim=1).float()  # (N, dim)


class RelativePositionBias(nn.Module):
    """BEiT's shared relative position bias: a (H, N+1, N+1) attention bias read from a table of
    (2h-1)(2w-1) patch offsets plus three entries for CLS->patch, patch->CLS and CLS->CLS."""

    def __init__(self, grid: tuple[int, int], heads: int) -> None:
        super().__init__()
        h, w = grid
        self.grid = grid
        offsets = (2 * h - 1) * (2 * w - 1)
        self.table = nn.Parameter(torch.zeros(offsets + 3, heads))  # BEiT starts it at zero
        coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")).flatten(1)  # (2, N)
        relative = coords[:, :, None] - coords[:, None, :]  # (2, N, N): position i minus position j
        n = h * w
        index = torch.empty(n + 1, n + 1, dtype=torch.long)
        index[1:, 1:] = (relative[0] + h - 1) * (2 * w - 1) + (relative[1] + w - 1)
        index[0, :] = offsets  # CLS attends to a patch
        index[:, 0] = offsets + 1  # a patch attends to CLS
        index[0, 0] = offsets + 2
        self.register_buffer("index", index, persistent=False)

    def forward(self) -> Tensor:
        return self.table[self.index].permute(2, 0, 1).unsqueeze(0)  # (1, H, N+1, N+1)


class ImageFrontend(Frontend):
    num_extra_tokens = 1

    def __init__(self, spec: ImageFrontSpec, dim: int, heads: int, version: int) -> None:
        super().__init__(dim, learned_mask=version == 1)
        if spec.image_size % spec.patch_size:
            raise D2VError(f"image_size={spec.image_size} is not a multiple of patch_size={spec.patch_size}")
        if spec.positions == "relative_bias" and version != 1:
            raise D2VError("image.positions: relative_bias needs data2vec 1.0 (the v2 student sees only kept patches)")
        self.spec = spec
        self.local_encoder = nn.Conv2d(spec.in_chans, dim, spec.patch_size, stride=spec.patch_size)
        if spec.patch_init == "xavier":  # as a Linear over the flattened patch (MAE, fairseq v2)
            nn.init.xavier_uniform_(self.local_encoder.weight.view(dim, -1))
        side = spec.image_size // spec.patch_size
        self.grid = (side, side)
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim).normal_(std=spec.cls_init_std))
        self.relative_bias: RelativePositionBias | None = None
        if spec.positions == "learned":
            self.pos_embed = nn.Parameter(torch.empty(1, side * side, dim).normal_(std=0.02))  # (1, N, D)
        elif spec.positions == "sincos":
            self.register_buffer("pos_embed", sincos_2d(dim, self.grid)[None], persistent=False)  # (1, N, D)
        else:
            self.register_buffer("pos_embed", None)
            self.relative_bias = RelativePositionBias(self.grid, heads)

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
        if self.pos_embed is None:  # relative positions live in the attention bias
            return features.x
        return features.x + self._pos_embed_for(features.grid)

    def attention_bias(self, features: Features) -> Tensor | None:
        if self.relative_bias is None:
            return None
        if features.grid not in (None, self.grid):
            raise D2VError(f"image positions: the relative bias was built for a {self.grid} patch grid, got {features.grid}")
        return self.relative_bias()

    def extra_tokens(self, batch_size: int) -> Tensor:
        return self.cls_token.expand(batch_size, -1, -1)  # (B, 1, D)

    def _pos_embed_for(self, grid: tuple[int, int] | None) -> Tensor:
        assert self.pos_embed is not None
        if grid is None or grid == self.grid:
            return self.pos_embed
        if self.spec.positions == "sincos":  # a fixed function of position: computed for any grid
            return sincos_2d(self.dim, grid)[None].to(self.pos_embed)
        # Another resolution than pretraining: interpolate the learned grid (as ViT fine-tuning does).
        side = self.grid[0]
        table = self.pos_embed.reshape(1, side, side, self.dim).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=grid, mode="bicubic", align_corners=False)
        return table.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], self.dim)
