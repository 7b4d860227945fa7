import math

import pytest
import torch

from d2v.train._selftest import tiny_config
from d2v.train.schedules import (
    StepScheduler,
    cosine_lr,
    lr_at,
    multiplier,
    phase_steps,
    tri_stage_lr,
    warmup_steps_for,
)


def test_cosine_golden_values() -> None:
    kw = dict(peak=1.0, warmup_steps=4, total_steps=14, min_lr=0.1)
    got = [cosine_lr(s, **kw) for s in (0, 1, 3, 4, 9, 13, 14, 20)]
    # warm-up (s+1)/4 (update 0 already moves); then 0.1 + 0.9 * (1 + cos(pi * (s-4)/10)) / 2,
    # clamped after the end. Update 13 is the last of 14.
    last = 0.1 + 0.9 * (1 + math.cos(math.pi * 0.9)) / 2
    assert got == pytest.approx([0.25, 0.5, 1.0, 1.0, 0.55, last, 0.1, 0.1])


def test_cosine_without_warmup_starts_at_peak() -> None:
    assert cosine_lr(0, peak=2e-3, warmup_steps=0, total_steps=10, min_lr=0.0) == pytest.approx(2e-3)
    assert cosine_lr(5, peak=2e-3, warmup_steps=0, total_steps=10, min_lr=0.0) == pytest.approx(1e-3)


TRI = dict(peak=2.0, total_steps=100, fractions=(0.1, 0.4, 0.5), init_scale=0.01, final_scale=0.05)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 0.02),  # update 0 runs at init_lr_scale * peak
        (5, 0.02 + 1.98 * 5 / 10),
        (9, 0.02 + 1.98 * 9 / 10),  # last warm-up update: one rate-step below peak
        (10, 2.0),  # first hold update: peak
        (49, 2.0),  # last hold update
        (50, 2.0),  # first decay update starts from peak
        (75, 2.0 * 0.05**0.5),  # halfway through the decay
        (99, 2.0 * 0.05**0.98),  # the last update of max_steps
        (100, 0.1),  # warmup + hold + decay: final_lr_scale * peak ...
        (150, 0.1),  # ... and it stays there
    ],
)
def test_tri_stage_golden_values(step: int, expected: float) -> None:
    # 100 steps at 10/40/50: warm-up 0..9, hold 10..49, exponential decay 50..100.
    assert tri_stage_lr(step, **TRI) == pytest.approx(expected, rel=1e-12)


class FairseqTriStage:
    """fairseq's TriStageLRSchedule (phase_ratio form), transcribed: the reference the schedule follows."""

    def __init__(self, peak: float, max_update: int, ratios: tuple[float, float, float], init: float, final: float):
        self.peak_lr, self.init_lr, self.final_lr = peak, init * peak, final * peak
        self.warmup_steps, self.hold_steps, self.decay_steps = (int(max_update * r) for r in ratios)
        self.warmup_rate = (self.peak_lr - self.init_lr) / self.warmup_steps if self.warmup_steps else 0
        self.decay_factor = -math.log(final) / self.decay_steps

    def step_update(self, num_updates: int) -> float:
        """fairseq's trainer calls this with the number of updates done at the start of an epoch and
        after each update, so update s (0-based) runs at step_update(s)."""
        if num_updates < self.warmup_steps:
            self.lr = self.init_lr + self.warmup_rate * num_updates
        elif num_updates < self.warmup_steps + self.hold_steps:
            self.lr = self.peak_lr
        elif num_updates <= self.warmup_steps + self.hold_steps + self.decay_steps:
            self.lr = self.peak_lr * math.exp(-self.decay_factor * (num_updates - self.warmup_steps - self.hold_steps))
        else:
            self.lr = self.final_lr
        return self.lr


@pytest.mark.parametrize(
    ("total", "fractions"),
    [(100, (0.1, 0.4, 0.5)), (40, (0.25, 0.25, 0.5)), (600, (0.1, 0.4, 0.5)), (20, (0.0, 0.5, 0.5))],
)
def test_tri_stage_matches_fairseq_update_by_update(total: int, fractions: tuple[float, float, float]) -> None:
    reference = FairseqTriStage(5e-4, total, fractions, init=0.01, final=0.05)
    for step in range(total + 5):
        used_by_fairseq = reference.step_update(step)
        ours = tri_stage_lr(step, peak=5e-4, total_steps=total, fractions=fractions, init_scale=0.01, final_scale=0.05)
        assert ours == pytest.approx(used_by_fairseq, rel=1e-12), f"update {step}"


def test_phase_lengths_truncate_like_fairseq_but_ignore_float_error() -> None:
    assert phase_steps(50, 0.03) == 1  # 1.5 -> 1, fairseq's int()
    assert phase_steps(50, 0.07) == 3
    assert phase_steps(100, 0.29) == 29  # 28.999999999999996 in floating point
    assert phase_steps(600, 0.1) == 60 and phase_steps(600, 0.4) == 240
    assert warmup_steps_for(378, 0.06) == 23  # fine-tuning's warm-up: the nearest count (22.68)


def test_tri_stage_decay_is_monotonic() -> None:
    kw = dict(peak=5e-4, total_steps=50, fractions=(0.03, 0.9, 0.07), init_scale=0.01, final_scale=0.01)
    values = [tri_stage_lr(s, **kw) for s in range(50)]
    # 50 steps: warm-up 1 (update 0 at 5e-6), hold 45 (updates 1..45), decay 3 (46..49 = final).
    assert values[0] == pytest.approx(5e-6) and values[1] == 5e-4 and values[45] == 5e-4
    assert values[49] == pytest.approx(5e-6)
    assert all(a >= b for a, b in zip(values[1:], values[2:]))


def test_multiplier_scales_each_groups_own_lr() -> None:
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD([{"params": [params[0]], "lr": 1.0}, {"params": [params[1]], "lr": 0.5}])
    fn = multiplier(cosine_lr, warmup_steps=2, total_steps=6, min_lr=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, fn)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.25]  # update 0: (0 + 1) / 2
    opt.step()
    schedule.step()
    assert [g["lr"] for g in opt.param_groups] == [1.0, 0.5]
    assert fn(4) == cosine_lr(4, peak=1.0, warmup_steps=2, total_steps=6, min_lr=0.0) == pytest.approx(0.5)


def test_pretraining_tri_stage_starts_and_ends_at_min_lr() -> None:
    cfg = tiny_config(schedule="tri_stage", lr=1e-2, max_steps=10, tri_stage=(0.2, 0.3, 0.5), min_lr=1e-4)
    lrs = [lr_at(s, cfg) for s in range(11)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[1] == pytest.approx(1e-4 + (1e-2 - 1e-4) / 2)
    assert lrs[2] == lrs[4] == lrs[5] == 1e-2  # hold 2..4, decay starts from peak at 5
    assert lrs[10] == pytest.approx(1e-4) and lrs[9] > 1e-4


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
