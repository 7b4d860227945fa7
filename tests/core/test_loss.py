from __future__ import annotations

import math

import pytest
import torch

from d2v.core.loss import channel_spread, regression_loss
from d2v.core.spec import LossSpec

PRED = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
TARGET = torch.tensor([[1.0, -1.0, 3.0, 0.0], [1.0, 1.0, 1.0, 1.0]])


def test_l2_summed_over_channels_scaled_by_inverse_sqrt_dim() -> None:
    out = regression_loss(PRED, TARGET, LossSpec(kind="l2", reduction="sum", scale=None))
    # Row 0: 1 + 1 + 9 + 0 = 11, times 1/sqrt(4).
    torch.testing.assert_close(out, torch.tensor([11 / 2, 0.0]))


def test_smooth_l1_beta_summed_unscaled() -> None:
    out = regression_loss(PRED, TARGET, LossSpec(kind="smooth_l1", beta=4.0, reduction="sum", scale=1.0))
    # |d| < beta everywhere: 0.5 d^2 / beta -> 0.125 + 0.125 + 1.125 + 0.
    torch.testing.assert_close(out, torch.tensor([1.375, 0.0]))


def test_smooth_l1_linear_region_and_mean_reduction() -> None:
    out = regression_loss(
        torch.zeros(1, 2), torch.tensor([[3.0, 1.0]]), LossSpec(kind="smooth_l1", beta=2.0, reduction="mean", scale=1.0)
    )
    # |3| >= 2: 3 - 1 = 2; |1| < 2: 0.5 * 1 / 2 = 0.25; mean over 2 channels.
    torch.testing.assert_close(out, torch.tensor([1.125]))


def test_zero_beta_smooth_l1_is_l2() -> None:
    a = regression_loss(PRED, TARGET, LossSpec(kind="smooth_l1", beta=0.0, scale=1.0))
    b = regression_loss(PRED, TARGET, LossSpec(kind="l2", scale=1.0))
    torch.testing.assert_close(a, b)


def test_channel_spread_detects_collapse() -> None:
    collapsed = torch.ones(10, 4)
    assert float(channel_spread(collapsed)) == pytest.approx(math.sqrt(1e-6), rel=1e-3)
    torch.manual_seed(0)
    assert float(channel_spread(torch.randn(2000, 4))) == pytest.approx(1.0, abs=0.05)


def test_channel_spread_is_the_mean_unbiased_standard_deviation_over_rows() -> None:
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [5.0, 6.0]])  # column variances 4 and 12 (unbiased)
    expected = ((4.0 + 1e-6) ** 0.5 + (12.0 + 1e-6) ** 0.5) / 2
    assert float(channel_spread(x)) == pytest.approx(expected, rel=1e-6)
