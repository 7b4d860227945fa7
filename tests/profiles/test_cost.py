"""The cost estimate counts the model's FLOPs and scales them by the run's samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from d2v.config import load_params
from d2v.profiles.cost import Cost, pretraining_cost

ROOT = Path(__file__).resolve().parents[2]


def test_counted_flops_scale_with_batch_gpus_and_updates() -> None:
    params = load_params(ROOT / "params.yaml")  # tiny image model, 64 images per update, 200 updates
    one = pretraining_cost(params, "image", gpus=1)
    two = pretraining_cost(params, "image", gpus=2)
    assert one.flop_per_sample > 1e6  # a tiny ViT on a 28 px image: millions, counted, not zero
    assert one.flop_per_sample == two.flop_per_sample
    assert two.total_flop == pytest.approx(2 * one.total_flop)
    assert one.total_flop == pytest.approx(one.flop_per_sample * 64 * 200)


def test_hours_follow_the_assumed_utilisation() -> None:
    cost = Cost(flop_per_sample=1e12, samples_per_update=1000, updates=3600, gpus=4)  # 3.6e18 FLOP
    assert cost.gpu_hours(mfu=0.5, peak_tflops=1000.0) == pytest.approx(2.0)
    assert cost.wall_hours(mfu=0.5, peak_tflops=1000.0) == pytest.approx(0.5)
