"""data2vec 2.0 lightweight convolutional decoders.

The student encoder only sees kept tokens; the decoder receives the full-length sequence with the
encoder outputs at kept positions and Gaussian noise at masked ones, and predicts the teacher
targets everywhere (the loss reads masked positions only). Dropout on the input, then blocks of
grouped conv -> LayerNorm without parameters -> GELU; every block adds its input where the widths
match (the first block: the decoder input itself, when the decoder is as wide as the encoder); then
a linear projection (or Linear -> GELU -> Linear, widened by `projection_ratio`).
"""

from __future__ import annotations

import torch
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


def _projection(dim: int, out_dim: int, layers: int, ratio: float) -> nn.Module:
    if layers == 1:
        return nn.Linear(dim, out_dim)
    parts: list[nn.Module] = []
    width = dim
    for i in range(layers - 1):
        hidden = int(width * ratio) if i == 0 else width  # only the first hidden layer widens
        parts += [nn.Linear(width, hidden), nn.GELU()]
        width = hidden
    return nn.Sequential(*parts, nn.Linear(width, out_dim))


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
        self.input_dropout = nn.Dropout(spec.input_dropout)
        self.proj = _projection(spec.dim, out_dim, spec.projection_layers, spec.projection_ratio)

    def decoder_input(self, kept: Tensor, keep_ids: Tensor, length: int, noise_std: float) -> Tensor:
        """The encoder's outputs at kept positions (after input dropout, as fairseq's decoder_input)
        and Gaussian noise at masked ones: kept (B, K, D), keep_ids (B, K) -> (B, length, D)."""
        kept = self.input_dropout(kept)
        b, _, d = kept.shape
        noise = torch.randn(b, length, d, dtype=kept.dtype, device=kept.device) * noise_std  # (B, T, D)
        return noise.scatter(1, keep_ids.unsqueeze(-1).expand(-1, -1, d), kept)

    def forward(self, x: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
        b, t, d = x.shape
        if self.two_d:
            if grid is None or grid[0] * grid[1] != t:
                raise ValueError(f"2-D decoder needs a grid matching {t} tokens, got {grid}")
            y = x.transpose(1, 2).reshape(b, d, *grid)  # (B, D, H, W)
        else:
            y = x.transpose(1, 2)  # (B, D, T)
        for block in self.blocks:
            out = block(y)
            y = out + y if self.residual and y.shape == out.shape else out
        y = y.flatten(2).transpose(1, 2)  # (B, T, D_dec)
        return self.proj(y)
