"""Image front end parity: fixed sin-cos positions (v2), BEiT's relative position bias (v1), inits."""

from __future__ import annotations

import math

import pytest
import torch

from d2v.core.spec import ImageFrontSpec
from d2v.errors import D2VError
from d2v.modalities.base import Features
from d2v.modalities.image import ImageFrontend, RelativePositionBias, sincos_2d


def test_sincos_table_matches_its_definition_on_a_small_grid() -> None:
    # dim 8 -> quarter 2, omega = (1, 10000^-0.5) = (1, 0.01); patches row-major on a 2 x 3 grid.
    table = sincos_2d(8, (2, 3))
    assert table.shape == (6, 8)
    row, col = 1, 2  # patch index 1 * 3 + 2 = 5
    expected = [math.sin(col), math.sin(col * 0.01), math.cos(col), math.cos(col * 0.01),
                math.sin(row), math.sin(row * 0.01), math.cos(row), math.cos(row * 0.01)]
    torch.testing.assert_close(table[5], torch.tensor(expected), atol=1e-6, rtol=0)
    # Patch 0 (row 0, col 0): sines 0, cosines 1.
    torch.testing.assert_close(table[0], torch.tensor([0.0, 0, 1, 1, 0, 0, 1, 1]))


def test_v2_positions_are_fixed_and_not_trained() -> None:
    front = ImageFrontend(ImageFrontSpec(image_size=12, patch_size=4, in_chans=1, positions="sincos"), 8, 2, version=2)
    assert "pos_embed" not in dict(front.named_parameters())
    features = front.local_features({"image": torch.zeros(1, 1, 12, 12)})
    torch.testing.assert_close(front.add_positions(features)[0] - features.x[0], sincos_2d(8, (3, 3)))
    # Another resolution gets the same function on its own grid, not an interpolation.
    bigger = Features(torch.zeros(1, 16, 8), None, (4, 4))
    torch.testing.assert_close(front.add_positions(bigger)[0], sincos_2d(8, (4, 4)))


def test_relative_bias_index_follows_beit() -> None:
    bias = RelativePositionBias((2, 2), heads=1)
    offsets = 3 * 3
    index = bias.index
    assert index.shape == (5, 5)
    assert index[0, 0] == offsets + 2 and (index[0, 1:] == offsets).all() and (index[1:, 0] == offsets + 1).all()
    # Patches (0,0) and (1,1): offset (-1,-1) from the first's view -> (0 * 3 + 0); the reverse -> (2 * 3 + 2).
    assert index[1, 4] == 0 and index[4, 1] == 8
    assert (index[1:, 1:].diagonal() == 4).all()  # zero offset is the centre of the 3 x 3 table
    with torch.no_grad():
        bias.table.copy_(torch.arange(offsets + 3, dtype=torch.float)[:, None])
    assert bias().shape == (1, 1, 5, 5) and bias()[0, 0, 2, 3] == index[2, 3]


def test_v1_uses_only_the_relative_bias_and_v2_refuses_it() -> None:
    spec = ImageFrontSpec(image_size=8, patch_size=4, in_chans=1, positions="relative_bias")
    front = ImageFrontend(spec, 8, 2, version=1)
    features = front.local_features({"image": torch.randn(2, 1, 8, 8)})
    torch.testing.assert_close(front.add_positions(features), features.x)
    assert front.attention_bias(features).shape == (1, 2, 5, 5)
    with pytest.raises(D2VError, match="relative_bias needs data2vec 1.0"):
        ImageFrontend(spec, 8, 2, version=2)


def test_v2_cls_token_and_patch_embedding_inits() -> None:
    torch.manual_seed(0)
    spec = ImageFrontSpec(image_size=32, patch_size=4, in_chans=3, cls_init_std=1.0, patch_init="xavier")
    front = ImageFrontend(spec, 256, 4, version=2)
    assert 0.8 < float(front.cls_token.detach().std()) < 1.2  # N(0, 1), not 0.02
    fan_in, fan_out = 3 * 4 * 4, 256
    bound = math.sqrt(6.0 / (fan_in + fan_out))  # Xavier over the flattened (256, 48) kernel
    weight = front.local_encoder.weight.detach()
    assert float(weight.abs().max()) <= bound and float(weight.abs().max()) > 0.9 * bound
