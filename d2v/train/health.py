"""The pretraining summary's health figures, kept up to date step by step and saved in checkpoints.

The model reports, every step, statistics at masked positions (d2v.core.health): the relative loss
(1 - R^2), the effective ranks of targets and predictions, and the realised masked fraction. The
per-step TSV holds them all; the summary condenses them:

    first_rel_loss        the first logged relative loss
    final_rel_loss        mean of the last RECENT logged relative losses (like final_loss_avg)
    final_target_rank     mean of the last RECENT logged effective ranks of the targets
    final_pred_rank       ... and of the predictions (single steps are noisy: a rank is estimated
                          from one batch's masked positions)
    mean_masked_fraction  mean over every logged step of the run

Only finite values count, from every logged step (a skipped update's statistics included when
finite), so each figure can be recomputed from the TSV. The state travels in the checkpoint, so a
resumed run writes the same summary as an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

RECENT = 10  # as many steps as the summary's final_loss_avg averages
AVERAGED = ("rel_loss", "target_rank", "pred_rank")  # the summary gives the mean of their last RECENT values


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


@dataclass
class HealthLog:
    """What the health figures of the summary need; `observe` is called once per logged step."""

    first_rel_loss: float = math.nan
    recent: dict[str, list[float]] = field(default_factory=lambda: {key: [] for key in AVERAGED})
    masked_fraction_sum: float = 0.0
    masked_fraction_steps: int = 0

    def observe(self, row: Mapping[str, Any]) -> None:
        for key in AVERAGED:
            value = _finite(row.get(key))
            if value is not None:
                self.recent[key] = (self.recent[key] + [value])[-RECENT:]
        rel_loss = _finite(row.get("rel_loss"))
        if rel_loss is not None and math.isnan(self.first_rel_loss):
            self.first_rel_loss = rel_loss
        masked = _finite(row.get("masked_fraction"))
        if masked is not None:
            self.masked_fraction_sum += masked
            self.masked_fraction_steps += 1

    def summary(self) -> dict[str, float]:
        """The summary's health keys; NaN (null in the JSON) when the model never reported a value."""
        return {
            "first_rel_loss": self.first_rel_loss,
            "final_rel_loss": _mean(self.recent["rel_loss"]),
            "final_target_rank": _mean(self.recent["target_rank"]),
            "final_pred_rank": _mean(self.recent["pred_rank"]),
            "mean_masked_fraction": (
                self.masked_fraction_sum / self.masked_fraction_steps if self.masked_fraction_steps else math.nan
            ),
        }

    def state_dict(self) -> dict[str, Any]:
        """Plain floats, ints and lists: loadable with torch.load(weights_only=True)."""
        return {
            "first_rel_loss": self.first_rel_loss,
            "recent": {key: list(values) for key, values in self.recent.items()},
            "masked_fraction_sum": self.masked_fraction_sum,
            "masked_fraction_steps": self.masked_fraction_steps,
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any] | None) -> HealthLog:
        """None (a checkpoint written before these figures existed) starts empty: the summary then
        covers the steps after the resume only."""
        if state is None:
            return cls()
        recent = state.get("recent", {})
        return cls(
            first_rel_loss=float(state["first_rel_loss"]),
            recent={key: [float(v) for v in recent.get(key, [])] for key in AVERAGED},
            masked_fraction_sum=float(state["masked_fraction_sum"]),
            masked_fraction_steps=int(state["masked_fraction_steps"]),
        )
