from __future__ import annotations

import torch

from d2v.core.spec import TargetSpec
from d2v.core.targets import average_top_k, instance_norm_over_time, normalize


def test_instance_norm_over_time_golden() -> None:
    # One sample, one channel over 4 steps: mean 2.5, variance 1.25.
    x = torch.tensor([[[1.0], [2.0], [3.0], [4.0]]])
    expected = (torch.tensor([1.0, 2.0, 3.0, 4.0]) - 2.5) / (1.25 + 1e-5) ** 0.5
    torch.testing.assert_close(instance_norm_over_time(x)[0, :, 0], expected)


def test_instance_norm_ignores_padding() -> None:
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    padding = torch.tensor([[False, False, True]])
    out = instance_norm_over_time(x, padding)
    # Statistics from [1, 3] only: mean 2, variance 1.
    torch.testing.assert_close(out[0, :2, 0], torch.tensor([-1.0, 1.0]) / (1 + 1e-5) ** 0.5)


def test_layer_norm_is_over_channels_without_parameters() -> None:
    x = torch.tensor([[[1.0, 3.0], [0.0, 4.0]]])
    out = normalize(x, "layer")
    torch.testing.assert_close(out, torch.tensor([[[-1.0, 1.0], [-1.0, 1.0]]]), atol=1e-4, rtol=0)


def test_top_k_average_uses_only_the_last_k_layers() -> None:
    layers = [torch.full((1, 2, 2), float(v)) for v in (100.0, 1.0, 3.0)]
    out = average_top_k(layers, TargetSpec(top_k=2, layer_norm="none", final_norm="none"))
    torch.testing.assert_close(out, torch.full((1, 2, 2), 2.0))


def test_top_k_average_with_instance_norm_golden() -> None:
    a = torch.tensor([[[0.0], [2.0]]])  # -> [-1, 1]
    b = torch.tensor([[[5.0], [1.0]]])  # -> [1, -1]
    c = torch.tensor([[[0.0], [4.0]]])  # -> [-1, 1]
    out = average_top_k([a, b, c], TargetSpec(top_k=3, layer_norm="instance", final_norm="none"))
    scale = 1 / (1 + 1e-5) ** 0.5
    torch.testing.assert_close(out[0, :, 0], torch.tensor([-1 / 3, 1 / 3]) * scale)


def test_final_layer_norm_applies_after_averaging() -> None:
    torch.manual_seed(0)
    layers = [torch.randn(2, 5, 8) for _ in range(4)]
    out = average_top_k(layers, TargetSpec(top_k=2, layer_norm="layer", final_norm="layer"))
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(2, 5), atol=1e-3, rtol=0)


def test_instance_norm_over_time_matches_the_population_variance_on_a_batch() -> None:
    x = torch.randn(3, 17, 5, generator=torch.Generator().manual_seed(0)) * 4 + 2
    expected = (x - x.mean(dim=1, keepdim=True)) / torch.sqrt(x.var(dim=1, unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(instance_norm_over_time(x), expected)
