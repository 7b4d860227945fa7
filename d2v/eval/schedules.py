"""Learning-rate multipliers for torch's LambdaLR (they scale each parameter group's own lr)."""

from __future__ import annotations

import math
from typing import Callable


def warmup_cosine(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """Linear warmup from ~0 to 1, then cosine decay to 0 (the fine-tuning recipes' schedule)."""
    warmup = int(round(total_steps * warmup_fraction))

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return multiplier


def tri_stage(
    total_steps: int,
    fractions: tuple[float, float, float],
    init_scale: float,
    final_scale: float,
) -> Callable[[int], float]:
    """wav2vec 2.0's schedule: linear warmup from init_scale to 1, hold at 1, exponential decay to final_scale."""
    warmup = int(round(total_steps * fractions[0]))
    hold = int(round(total_steps * fractions[1]))
    decay = max(1, total_steps - warmup - hold)

    def multiplier(step: int) -> float:
        if step < warmup:
            return init_scale + (1.0 - init_scale) * step / warmup
        if step < warmup + hold:
            return 1.0
        progress = min(1.0, (step - warmup - hold) / decay)
        return math.exp(math.log(final_scale) * progress)

    return multiplier
