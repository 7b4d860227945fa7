import math

import pytest
import torch

from d2v.train._selftest import tiny_config
from d2v.train.schedules import StepScheduler, cosine_lr, lr_at, tri_stage_lr


def test_cosine_golden_values() -> None:
    kw = dict(peak=1.0, warmup_steps=4, total_steps=14, min_lr=0.1)
    got = [cosine_lr(s, **kw) for s in (0, 1, 3, 4, 9, 14, 20)]
    # warm-up (s+1)/4; then 0.1 + 0.9 * (1 + cos(pi * (s-4)/10)) / 2, clamped after the end.
    assert got == pytest.approx([0.25, 0.5, 1.0, 1.0, 0.55, 0.1, 0.1])


def test_cosine_without_warmup_starts_at_peak() -> None:
    assert cosine_lr(0, peak=2e-3, warmup_steps=0, total_steps=10, min_lr=0.0) == pytest.approx(2e-3)
    assert cosine_lr(5, peak=2e-3, warmup_steps=0, total_steps=10, min_lr=0.0) == pytest.approx(1e-3)


def test_tri_stage_golden_values() -> None:
    # 100 steps at 10/40/50: warm-up 0..9, hold 10..49, exponential decay 50..99 to min_lr.
    kw = dict(peak=1.0, total_steps=100, fractions=(0.1, 0.4, 0.5), min_lr=0.01)
    assert tri_stage_lr(0, **kw) == pytest.approx(0.01 + 0.99 * 0.1)
    assert tri_stage_lr(9, **kw) == pytest.approx(1.0)
    assert tri_stage_lr(10, **kw) == pytest.approx(1.0)
    assert tri_stage_lr(49, **kw) == pytest.approx(1.0)
    assert tri_stage_lr(74, **kw) == pytest.approx(0.1)  # halfway through the decay: sqrt(0.01)
    assert tri_stage_lr(99, **kw) == pytest.approx(0.01)
    assert tri_stage_lr(150, **kw) == pytest.approx(0.01)


def test_tri_stage_decay_is_monotonic() -> None:
    kw = dict(peak=5e-4, total_steps=50, fractions=(0.03, 0.9, 0.07), min_lr=5e-6)
    values = [tri_stage_lr(s, **kw) for s in range(50)]
    assert values[1] == 5e-4 and all(a >= b for a, b in zip(values[2:], values[3:]))


def test_step_scheduler_sets_groups_and_round_trips() -> None:
    cfg = tiny_config(schedule="tri_stage", max_steps=10, tri_stage=(0.2, 0.3, 0.5), min_lr=1e-4)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = StepScheduler(opt, cfg)
    for _ in range(3):
        sched.apply()
        sched.advance()
    restored = StepScheduler(opt, cfg)
    restored.load_state_dict(sched.state_dict())
    lr = restored.apply()
    assert lr == lr_at(3, cfg) == cfg.lr
    assert all(math.isclose(g["lr"], lr) for g in opt.param_groups)
