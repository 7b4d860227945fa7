"""data2vec 2.0 decoder parity: the first block's residual, input dropout on kept tokens only, the
widened projection."""

from __future__ import annotations

import torch
from torch import nn

from d2v.core.decoder import ConvDecoder
from d2v.core.spec import DecoderSpec


def _silenced(decoder: ConvDecoder) -> ConvDecoder:
    """Every conv outputs zero, so a block contributes gelu(layer_norm(0)) = 0: only residuals remain."""
    with torch.no_grad():
        for block in decoder.blocks:
            block.conv.weight.zero_()
            block.conv.bias.zero_()
    return decoder


def test_first_block_adds_the_decoder_input_when_widths_match() -> None:
    decoder = _silenced(ConvDecoder(DecoderSpec(dim=8, layers=2, kernel=3), 8, 8, two_d=False))
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(decoder(x), decoder.proj(x))  # the input survives both blocks


def test_no_input_residual_when_the_decoder_is_narrower_or_residuals_are_off() -> None:
    narrower = _silenced(ConvDecoder(DecoderSpec(dim=4, layers=2, kernel=3, groups=4), 8, 8, two_d=False))
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(narrower(x), narrower.proj(torch.zeros(2, 5, 4)))
    off = _silenced(ConvDecoder(DecoderSpec(dim=8, layers=2, kernel=3, residual=False), 8, 8, two_d=False))
    torch.testing.assert_close(off(x), off.proj(torch.zeros(2, 5, 8)))


def test_input_dropout_reaches_kept_outputs_not_the_noise() -> None:
    decoder = ConvDecoder(DecoderSpec(dim=8, layers=1, kernel=3, input_dropout=0.5), 8, 8, two_d=False).train()
    kept = torch.ones(4, 6, 8)
    keep_ids = torch.arange(6).expand(4, 6)
    torch.manual_seed(0)
    filled = decoder.decoder_input(kept, keep_ids, 10, noise_std=0.01)
    at_kept = filled[:, :6]
    assert set(at_kept.unique().tolist()) <= {0.0, 2.0} and (at_kept == 0).any()  # dropped out, rescaled
    noise = filled[:, 6:]
    assert float(noise.abs().max()) < 0.1 and float(noise.std()) > 0.005  # noise untouched by dropout


def test_text_projection_widens_by_the_ratio() -> None:
    decoder = ConvDecoder(DecoderSpec(dim=16, layers=1, kernel=3, projection_layers=2, projection_ratio=2.0), 16, 16, two_d=False)
    linears = [m for m in decoder.proj if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 32), (32, 16)]
