"""d2v.core.health: effective rank and relative loss from their definitions (tests/train/test_health.py covers the run summary)."""

from __future__ import annotations

import math

import torch

from d2v.core.health import effective_rank, relative_loss


def _with_singular_values(values: list[float], rows: int = 64, dim: int = 16) -> torch.Tensor:
    """A centred (rows, dim) matrix whose singular values are exactly `values` (the rest zero)."""
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(rows, len(values), generator=generator, dtype=torch.float64)
    # Orthonormal columns spanning mean-free vectors are mean-free: the matrix needs no centring.
    left, _ = torch.linalg.qr(left - left.mean(dim=0, keepdim=True))
    right, _ = torch.linalg.qr(torch.randn(dim, len(values), generator=generator, dtype=torch.float64))
    return (left * torch.tensor(values, dtype=torch.float64)) @ right.T


def test_effective_rank_is_exp_entropy_of_the_normalised_singular_values() -> None:
    x = _with_singular_values([3.0, 2.0, 1.0])
    p = torch.tensor([3.0, 2.0, 1.0]) / 6.0
    expected = math.exp(float(-(p * p.log()).sum()))
    assert abs(float(effective_rank(x.float())) - expected) < 1e-4


def test_effective_rank_limits_one_direction_and_isotropic() -> None:
    assert abs(float(effective_rank(_with_singular_values([5.0]).float())) - 1.0) < 1e-3
    assert abs(float(effective_rank(_with_singular_values([1.0] * 16).float())) - 16.0) < 1e-3


def test_effective_rank_with_fewer_rows_than_channels_matches_an_svd() -> None:
    x = torch.randn(10, 64, generator=torch.Generator().manual_seed(1))
    centred = x - x.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(centred.double())
    p = s / s.sum()
    p = p[p > 1e-12]
    expected = math.exp(float(-(p * p.log()).sum()))
    assert abs(float(effective_rank(x)) - expected) < 1e-4


def test_effective_rank_of_a_constant_is_one() -> None:
    assert float(effective_rank(torch.ones(8, 4))) == 1.0


def test_relative_loss_is_one_for_the_channel_mean_and_zero_for_the_target() -> None:
    target = torch.randn(32, 8, generator=torch.Generator().manual_seed(2))
    mean = target.mean(dim=0, keepdim=True).expand_as(target)
    assert abs(float(relative_loss(mean, target)) - 1.0) < 1e-6
    assert float(relative_loss(target, target)) == 0.0
