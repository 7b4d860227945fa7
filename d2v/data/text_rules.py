"""What a valid prepared text task looks like, per task: its classes, its plausible class balance,
the splits it may hold, its score range (regression).

One global "no class above 60 %" rule cannot fit GLUE: real CoLA is ~70 % acceptable, MRPC ~68 %
paraphrase, QQP ~63 % not duplicate. The bounds below sit ~10 points outside the published shares
of GLUE train and dev (so a seeded valid split passes) and catch a file whose labels were mangled
or one class lost. Tasks without a rule (the embedded ones) keep the original rule: no class above
60 % of a split. Shares are judged on splits of at least 100 rows only (GX suite condition).
"""

from __future__ import annotations

from dataclasses import dataclass

BASE_SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class TaskRule:
    classes: int | None = None  # expected class count; None = as meta.json says; 1 = regression
    min_share: float = 0.0  # every expected class at least this share of a split
    max_share: float = 0.6  # no class above this share of a split
    score_range: tuple[float, float] | None = None  # regression labels lie in [low, high]
    extra_splits: tuple[str, ...] = ()  # beyond train/valid/test


DEFAULT_RULE = TaskRule()
TASK_RULES: dict[str, TaskRule] = {
    "cola": TaskRule(2, 0.2, 0.8),  # ~70 % acceptable
    "sst2": TaskRule(2, 0.35, 0.65),  # ~56 % positive in train
    "mrpc": TaskRule(2, 0.22, 0.78),  # ~68 % paraphrase
    "qqp": TaskRule(2, 0.27, 0.73),  # ~63 % not duplicate
    "stsb": TaskRule(1, score_range=(0.0, 5.0)),
    "mnli": TaskRule(3, 0.25, 0.42, extra_splits=("test_mismatched",)),  # ~1/3 each, dev ~35 % at most
    "qnli": TaskRule(2, 0.4, 0.6),
    "rte": TaskRule(2, 0.4, 0.6),
    "wnli": TaskRule(2, 0.35, 0.65),  # ~51 % in train; dev has 71 rows (not judged)
}


def task_rule(task: str) -> TaskRule:
    return TASK_RULES.get(task, DEFAULT_RULE)


def expected_classes(task: str, meta_classes: int) -> int:
    """The class count validation checks labels against: the rule's when it has one."""
    rule = task_rule(task)
    return rule.classes if rule.classes is not None else meta_classes


def allowed_splits(task: str) -> list[str]:
    return [*BASE_SPLITS, *task_rule(task).extra_splits]
