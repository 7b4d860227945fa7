"""Learning-rate schedules, shared by pretraining (d2v.train) and fine-tuning (d2v.eval).

Pure functions of `step`, the 0-based index of the update about to be made, returning that update's
lr for a given `peak`. With peak=1.0 they are multipliers of each parameter group's own lr, which is
how fine-tuning uses them (torch's LambdaLR over layer-decayed groups):

    LambdaLR(optimizer, multiplier(cosine_lr, warmup_steps=w, total_steps=n, min_lr=0.0))

Conventions (tests/train/test_schedules.py pins both with golden values):
- tri_stage_lr is fairseq's `tri_stage` scheduler (wav2vec 2.0 / data2vec speech): update 0 runs at
  init_lr_scale * peak, the lr rises linearly to reach peak on the first hold update, holds, then
  decays exponentially from peak (first decay update) to final_lr_scale * peak, reached at update
  warmup + hold + decay and kept after. Phase lengths are fairseq's int(fraction * max_steps).
- cosine_lr warms up from zero, so its warm-up is shifted by one update: update s < warmup runs at
  peak * (s + 1) / warmup. Starting at s / warmup would spend update 0 at lr 0, doing nothing.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import torch

from d2v.train.config import TrainConfig


def phase_steps(total_steps: int, fraction: float) -> int:
    """int(fraction * total_steps), as fairseq, except that a product a rounding error below an
    integer counts as that integer (0.29 * 100 is 28.999999999999996 in floating point, not 28)."""
    exact = fraction * total_steps
    nearest = round(exact)
    return nearest if math.isclose(exact, nearest, rel_tol=0.0, abs_tol=1e-9) else math.floor(exact)


def warmup_steps_for(total_steps: int, warmup_fraction: float) -> int:
    """Fine-tuning recipes give the cosine warm-up as a fraction of all updates: the nearest count."""
    return int(round(total_steps * warmup_fraction))


def cosine_lr(step: int, *, peak: float, warmup_steps: int, total_steps: int, min_lr: float) -> float:
    """Linear warm-up to `peak` over `warmup_steps`, then half a cosine down to `min_lr` at the end."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def tri_stage_lr(
    step: int,
    *,
    peak: float,
    total_steps: int,
    fractions: tuple[float, float, float],
    init_scale: float,
    final_scale: float,
) -> float:
    """fairseq's tri-stage: warm-up from init_scale * peak, hold at peak, exponential decay to final_scale * peak."""
    warmup, hold = phase_steps(total_steps, fractions[0]), phase_steps(total_steps, fractions[1])
    decay = max(1, phase_steps(total_steps, fractions[2]))  # fairseq would divide by zero
    if step < warmup:
        init = init_scale * peak
        return init + (peak - init) * step / warmup
    if step < warmup + hold:
        return peak
    progress = min(1.0, (step - warmup - hold) / decay)
    return peak * math.exp(math.log(final_scale) * progress)


def multiplier(schedule: Callable[..., float], **kwargs: Any) -> Callable[[int], float]:
    """`step -> schedule(step, peak=1.0, **kwargs)`: a LambdaLR multiplier of each group's own lr."""
    return functools.partial(schedule, peak=1.0, **kwargs)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate of update `step` under the pretraining recipe `cfg`."""
    if cfg.schedule == "cosine":
        return cosine_lr(
            step, peak=cfg.lr, warmup_steps=cfg.warmup_steps, total_steps=cfg.max_steps, min_lr=cfg.min_lr
        )
    # The pretraining recipe names one floor, min_lr: the warm-up's start and the decay's end.
    scale = cfg.min_lr / cfg.lr
    return tri_stage_lr(
        step, peak=cfg.lr, total_steps=cfg.max_steps, fractions=cfg.tri_stage, init_scale=scale, final_scale=scale
    )


class StepScheduler:
    """Sets every param group's lr from `lr_at(step)`. Its state is one int (checkpoint-friendly)."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> None:
        self.optimizer = optimizer
        self.cfg = cfg
        self.step_index = 0

    def apply(self) -> float:
        """Set the lr of the update about to be made; return it."""
        lr = lr_at(self.step_index, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def advance(self) -> None:
        self.step_index += 1

    def state_dict(self) -> dict[str, Any]:
        return {"step_index": self.step_index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_index = int(state["step_index"])
