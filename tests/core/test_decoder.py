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


def _reference(decoder: ConvDecoder, x: torch.Tensor, grid: tuple[int, int] | None) -> torch.Tensor:
    """The decoder as its definition reads, in the (B, C, *spatial) layout convolutions use: per block
    conv, LayerNorm over channels, GELU, plus the block's input when the widths match; then the projection."""
    b, t, d = x.shape
    y = x.transpose(1, 2).reshape(b, d, *grid) if grid else x.transpose(1, 2)
    for block in decoder.blocks:
        conv = block.conv
        z = (torch.nn.functional.conv2d if grid else torch.nn.functional.conv1d)(
            y, conv.weight, conv.bias, padding=conv.padding, groups=conv.groups)
        z = torch.nn.functional.gelu(torch.nn.functional.layer_norm(z.movedim(1, -1), (block.dim,)).movedim(-1, 1))
        y = z + y if decoder.residual and z.shape == y.shape else z
    return decoder.proj(y.flatten(2).transpose(1, 2))


def test_one_d_decoder_is_conv_over_time_layer_norm_over_channels_gelu() -> None:
    torch.manual_seed(0)
    for spec, width in ((DecoderSpec(dim=16, layers=3, kernel=9), 16), (DecoderSpec(dim=8, layers=2, kernel=5, groups=4), 16)):
        decoder = ConvDecoder(spec, width, 12, two_d=False)
        x = torch.randn(3, 11, width)
        torch.testing.assert_close(decoder(x), _reference(decoder, x, None), rtol=1e-5, atol=1e-5)


def test_two_d_decoder_convolves_the_row_major_patch_grid() -> None:
    torch.manual_seed(0)
    decoder = ConvDecoder(DecoderSpec(dim=16, layers=3, kernel=3, groups=8), 16, 12, two_d=True)
    x = torch.randn(2, 4 * 5, 16)
    torch.testing.assert_close(decoder(x, (4, 5)), _reference(decoder, x, (4, 5)), rtol=1e-5, atol=1e-5)


def test_gradients_reach_the_conv_weights_in_their_own_shape() -> None:
    decoder = ConvDecoder(DecoderSpec(dim=8, layers=1, kernel=3), 8, 8, two_d=False)
    decoder(torch.randn(2, 5, 8)).sum().backward()
    conv = decoder.blocks[0].conv
    assert conv.weight.grad is not None and conv.weight.grad.shape == conv.weight.shape == (8, 8, 3)
