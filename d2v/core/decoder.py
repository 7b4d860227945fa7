"""data2vec 2.0 lightweight convolutional decoders.

The student encoder only sees kept tokens; the decoder receives the full-length sequence with the
encoder outputs at kept positions and Gaussian noise at masked ones, and predicts the teacher
targets everywhere (the loss reads masked positions only). Blocks are grouped conv -> LayerNorm
without parameters -> GELU, with residual connections between blocks, then a linear projection.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from d2v.core.spec import DecoderSpec


class _ConvBlock(nn.Module):
    def __init__(self, conv: nn.Module, dim: int) -> None:
        super().__init__()
        self.conv = conv
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:  # x (B, C, *spatial)
        y = self.conv(x)
        y = F.layer_norm(y.movedim(1, -1), (self.dim,)).movedim(-1, 1)
        return F.gelu(y)


def _projection(dim: int, out_dim: int, layers: int) -> nn.Module:
    if layers == 1:
        return nn.Linear(dim, out_dim)
    parts: list[nn.Module] = []
    for _ in range(layers - 1):
        parts += [nn.Linear(dim, dim), nn.GELU()]
    return nn.Sequential(*parts, nn.Linear(dim, out_dim))


class ConvDecoder(nn.Module):
    """1-D (sequences) or 2-D (patch grids) decoder: (B, T, D_in) -> (B, T, D_out)."""

    def __init__(self, spec: DecoderSpec, in_dim: int, out_dim: int, two_d: bool) -> None:
        super().__init__()
        if spec.kernel % 2 == 0:
            raise ValueError(f"decoder.kernel must be odd to keep the length, got {spec.kernel}")
        conv = nn.Conv2d if two_d else nn.Conv1d
        self.two_d = two_d
        self.residual = spec.residual
        self.blocks = nn.ModuleList(
            _ConvBlock(
                conv(in_dim if i == 0 else spec.dim, spec.dim, spec.kernel, padding=spec.kernel // 2, groups=spec.groups),
                spec.dim,
            )
            for i in range(spec.layers)
        )
        self.proj = _projection(spec.dim, out_dim, spec.projection_layers)

    def forward(self, x: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
        b, t, d = x.shape
        if self.two_d:
            if grid is None or grid[0] * grid[1] != t:
                raise ValueError(f"2-D decoder needs a grid matching {t} tokens, got {grid}")
            y = x.transpose(1, 2).reshape(b, d, *grid)  # (B, D, H, W)
        else:
            y = x.transpose(1, 2)  # (B, D, T)
        residual = None
        for block in self.blocks:
            out = block(y)
            if self.residual and residual is not None and residual.shape == out.shape:
                out = out + residual
            residual = y = out
        y = y.flatten(2).transpose(1, 2)  # (B, T, D_dec)
        return self.proj(y)
