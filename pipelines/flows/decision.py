"""Champion/challenger: read a modality's primary score and decide whether to promote.

Prefect-free and pure, so the retrain decision is unit-tested directly. A candidate is promoted
when it is not worse than the champion on the champion's metric (ties promote: the newer model saw
the newer data), when there is no champion yet, and never when its score is not a finite number or
measures something else than the champion's (a changed primary task is a decision for a person).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from d2v.errors import D2VError
from pipelines.dvc_stages import read_json

# Metrics for which smaller is better, for records that do not say (evaluation records carry
# `higher_is_better`; champion pointers record only a name and a value).
LOWER_IS_BETTER = frozenset({"wer", "cer", "loss", "mse", "final_loss", "final_loss_avg"})


@dataclass(frozen=True)
class Score:
    name: str    # "<task>/<metric>", e.g. "linear_probe/top1": what the champion pointer records
    value: float
    higher_is_better: bool | None = None  # None: decided by the metric's name

    @property
    def is_higher_better(self) -> bool:
        if self.higher_is_better is not None:
            return self.higher_is_better
        return self.name.rsplit("/", 1)[-1].lower() not in LOWER_IS_BETTER


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    candidate: Score
    champion: Score | None

    def as_record(self) -> dict:
        """What the manifest's `extra` keeps: the decision and both scores."""
        return {
            "decision": "promoted" if self.promote else "kept_champion",
            "reason": self.reason,
            "candidate": {"metric": self.candidate.name, "value": self.candidate.value},
            "champion": None if self.champion is None
            else {"metric": self.champion.name, "value": self.champion.value},
        }


def decide(candidate: Score, champion: Score | None) -> Decision:
    if not math.isfinite(candidate.value):
        return Decision(False, f"candidate {candidate.name}={candidate.value} is not finite", candidate, champion)
    if champion is None:
        return Decision(True, "no champion yet", candidate, None)
    if champion.name != candidate.name:
        return Decision(False, f"primary metric changed ({champion.name} -> {candidate.name}); "
                        "promote by hand if intended", candidate, champion)
    if candidate.is_higher_better:
        better_or_equal = candidate.value >= champion.value
    else:
        better_or_equal = candidate.value <= champion.value
    direction = "higher" if candidate.is_higher_better else "lower"
    verdict = "not worse than" if better_or_equal else "worse than"
    reason = (f"{candidate.name}={candidate.value:.6g} is {verdict} the champion's "
              f"{champion.value:.6g} ({direction} is better)")
    return Decision(better_or_equal, reason, candidate, champion)


def eval_records(eval_json: Path) -> list[dict]:
    """metrics/eval/<modality>.json as a list of records, the primary one first.

    The stage writes {task: record} in task order; a plain list of records is accepted too.
    """
    data = read_json(eval_json)
    records = list(data.values()) if isinstance(data, dict) else data
    if not records or not all(isinstance(r, dict) for r in records):
        raise D2VError(f"{eval_json}: expected evaluation records ({{task: record}}), got {data!r:.200}")
    return records


def primary_eval_score(eval_json: Path) -> Score:
    """The modality's primary metric (its first record), scored by the pretrained model."""
    first = eval_records(eval_json)[0]
    try:
        hib = first.get("higher_is_better")
        return Score(f"{first['task']}/{first['metric']}", float(first["pretrained"]),
                     None if hib is None else bool(hib))
    except (KeyError, TypeError, ValueError) as exc:
        raise D2VError(f"{eval_json}: first record lacks task/metric/pretrained: {exc}") from None


def pretrain_loss_score(pretrain_json: Path) -> Score:
    """The pretraining loss (last 10 updates): the score to use where no evaluate stage runs."""
    summary = read_json(pretrain_json)
    try:
        return Score("pretrain/final_loss_avg", float(summary["final_loss_avg"]), False)  # type: ignore[index]
    except (KeyError, TypeError, ValueError) as exc:
        raise D2VError(f"{pretrain_json}: no final_loss_avg: {exc}") from None


__all__ = ["Decision", "LOWER_IS_BETTER", "Score", "decide", "eval_records", "pretrain_loss_score", "primary_eval_score"]
