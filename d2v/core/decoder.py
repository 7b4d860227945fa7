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
    """conv -> LayerNorm over channels (no parameters) -> GELU, on channels-last activations.

    The activations stay (B, H, W, C) from block to block (1-D sequences as H = 1): the convolution
    reads them through a channels-last view and writes channels-last, which is the layout LayerNorm
    and the residual want. The usual (B, C, T) layout costs a transposed copy before and after every
    LayerNorm: one text-decoder block (16 x 128 positions, width 128, kernel 9) took 11.3 ms forward
    and backward that way against 7.0 here, and the whole text 2.0 step is ~5 % faster
    (docs/benchmarks.md). The conv module keeps its 1-D or 2-D weights: checkpoints are unchanged."""

    def __init__(self, conv: nn.Conv1d | nn.Conv2d, dim: int) -> None:
        super().__init__()
        self.conv = conv
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:  # x (B, H, W, C_in) -> (B, H, W, dim)
        conv = self.conv
        if isinstance(conv, nn.Conv1d):  # a 1-D convolution is a 2-D one of height 1
            weight, padding = conv.weight.unsqueeze(2), (0, conv.padding[0])
        else:
            weight, padding = conv.weight, conv.padding
        y = F.conv2d(x.permute(0, 3, 1, 2), weight, conv.bias, padding=padding, groups=conv.groups)
        return F.gelu(F.layer_norm(y.permute(0, 2, 3, 1), (self.dim,)))


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
            y = x.reshape(b, grid[0], grid[1], d)  # (B, H, W, D): tokens are row-major
        else:
            y = x.reshape(b, 1, t, d)  # (B, 1, T, D)
        for block in self.blocks:
            out = block(y)
            y = out + y if self.residual and y.shape == out.shape else out
        return self.proj(y.reshape(b, t, -1))  # (B, T, D_dec) -> (B, T, D_out)
