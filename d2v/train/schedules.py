"""Learning-rate schedules as pure functions of the optimizer step, plus a tiny stateful driver.

`step` is the 0-based index of the update about to be made, so the first update of a warm-up
already gets a non-zero learning rate.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from d2v.train.config import TrainConfig


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
    min_lr: float,
) -> float:
    """data2vec speech schedule: linear warm-up min_lr -> peak, hold, exponential decay to min_lr."""
    warmup = round(fractions[0] * total_steps)
    hold = round(fractions[1] * total_steps)
    decay = max(1, total_steps - warmup - hold)
    if step < warmup:
        return min_lr + (peak - min_lr) * (step + 1) / warmup
    if step < warmup + hold:
        return peak
    progress = min(1.0, (step - warmup - hold + 1) / decay)
    return peak * (min_lr / peak) ** progress


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate of update `step` under the recipe `cfg`."""
    if cfg.schedule == "cosine":
        return cosine_lr(
            step, peak=cfg.lr, warmup_steps=cfg.warmup_steps, total_steps=cfg.max_steps, min_lr=cfg.min_lr
        )
    return tri_stage_lr(
        step, peak=cfg.lr, total_steps=cfg.max_steps, fractions=cfg.tri_stage, min_lr=cfg.min_lr
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
