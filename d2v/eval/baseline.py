"""Pretrained vs random init: the same evaluation, budget and seed, and the difference recorded.

The record (one per task), as written to `metrics/eval/<modality>.json` under the task's name:

    task              name of the evaluation, e.g. "linear_probe", "finetune", "sst2", "ctc"
    metric            the metric compared, e.g. "top1", "score", "wer"
    higher_is_better  false for error rates (WER, CER): then a negative delta is the gain
    pretrained        the metric from the pretrained encoder
    random_init       the metric from a freshly initialised encoder of the same architecture
    delta             pretrained - random_init
    n_train, n_test   examples used for training and scoring
    wall_time_s       seconds for both runs together
    delta_ci95_low, delta_ci95_high
                      95 % paired-bootstrap interval of delta over the test examples
                      (d2v.eval.significance); null when not computed (no per-example outputs kept)
    pretrained_output_ratio, random_init_output_ratio
                      speech: characters emitted / reference characters on the scored split, per
                      run; null for other tasks. Below MIN_OUTPUT_RATIO the run's transcripts are
                      near-empty, and a win by that run is "inconclusive"

`metrics/eval/image_confusion.csv` (columns actual,predicted; one row per test image) feeds the
confusion-matrix template of `dvc plots`.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import torch

from d2v.atomic import atomic_write_json, atomic_write_text
from d2v.core.types import FeatureEncoder
from d2v.errors import D2VError
from d2v.eval.data import EvalResult
from d2v.eval.side_by_side import run_side_by_side, worth_running_side_by_side
from d2v.eval.significance import PairedTestSet, SubsetScore, paired_bootstrap_interval
from d2v.progress import run_label

LOWER_IS_BETTER = frozenset({"wer", "cer", "loss", "mse"})
# An ASR run that emits under half the reference's characters deletes most of it: it can beat a
# run full of insertions on WER (an empty transcript scores exactly 100 %) without recognising more.
MIN_OUTPUT_RATIO = 0.5


@dataclass(frozen=True)
class BaselineRecord:
    task: str
    metric: str
    higher_is_better: bool
    pretrained: float
    random_init: float
    delta: float
    n_train: int
    n_test: int
    wall_time_s: float
    delta_ci95_low: float | None = None
    delta_ci95_high: float | None = None
    pretrained_output_ratio: float | None = None
    random_init_output_ratio: float | None = None

    @property
    def inconclusive_reason(self) -> str | None:
        """Why the sign of delta means nothing, or None. Error rates only: when both runs score
        100 % or more (an empty transcript scores exactly 100 %, so neither recognises anything), or
        when the better run's transcripts are near-empty (it wins by deleting, not recognising)."""
        if not is_error_rate(self.metric):
            return None
        if min(self.pretrained, self.random_init) >= 1.0:
            return "both >= 100 %"
        winner_ratio = self.pretrained_output_ratio if self.delta < 0 else self.random_init_output_ratio
        if self.delta != 0 and winner_ratio is not None and winner_ratio < MIN_OUTPUT_RATIO:
            return f"the better run's transcripts are near-empty: {winner_ratio:.0%} of the reference length"
        return None

    @property
    def conclusive(self) -> bool:
        return self.inconclusive_reason is None

    @property
    def within_noise(self) -> bool:
        """True when the 95 % interval of delta contains 0: the test set cannot tell the runs apart."""
        if self.delta_ci95_low is None or self.delta_ci95_high is None:
            return False
        return self.delta_ci95_low <= 0.0 <= self.delta_ci95_high

    @property
    def pretraining_helps(self) -> bool:
        if not self.conclusive or self.within_noise:
            return False
        return self.delta > 0 if self.higher_is_better else self.delta < 0

    @property
    def verdict(self) -> str:
        reason = self.inconclusive_reason
        if reason is not None:
            return f"inconclusive ({reason})"
        if self.within_noise:
            return "within noise"
        return "yes" if self.pretraining_helps else "no"


def is_error_rate(metric: str) -> bool:
    """Word / character error rates, also when scored on an extra split (`asr_real_wer`)."""
    return metric in ("wer", "cer") or metric.endswith(("_wer", "_cer"))


def _metric(result: EvalResult, metric: str, task: str, which: str) -> float:
    if metric not in result.metrics:
        raise D2VError(f"{task}: the {which} run has no metric {metric!r} (has: {', '.join(result.metrics)})")
    return float(result.metrics[metric])


def make_record(
    task: str,
    metric: str,
    pretrained: EvalResult,
    random_init: EvalResult,
    wall_time_s: float,
    n_test: int | None = None,
    interval: tuple[float, float] | None = None,
    split: str = "test",
) -> BaselineRecord:
    """The record comparing two finished runs on one metric (several metrics can share the runs).

    n_test overrides the result's test size for metrics scored on another split; interval is the
    95 % interval of delta (`paired_interval`); split names the scored split, whose output-length
    ratios (speech) the record keeps.
    """
    if (pretrained.n_train, pretrained.n_test) != (random_init.n_train, random_init.n_test):
        raise D2VError(f"{task}: pretrained and random-init runs saw different data; the comparison would be unfair")
    score = _metric(pretrained, metric, task, "pretrained")
    baseline = _metric(random_init, metric, task, "random-init")
    return BaselineRecord(
        task=task,
        metric=metric,
        higher_is_better=metric.rsplit("_", 1)[-1] not in LOWER_IS_BETTER,
        pretrained=score,
        random_init=baseline,
        delta=score - baseline,
        n_train=pretrained.n_train,
        n_test=pretrained.n_test if n_test is None else n_test,
        wall_time_s=round(wall_time_s, 3),
        delta_ci95_low=None if interval is None else interval[0],
        delta_ci95_high=None if interval is None else interval[1],
        pretrained_output_ratio=pretrained.output_ratios.get(split),
        random_init_output_ratio=random_init.output_ratios.get(split),
    )


def paired_interval(
    scorer: Callable[[EvalResult], SubsetScore], pretrained: EvalResult, random_init: EvalResult, seed: int
) -> tuple[float, float] | None:
    """95 % paired-bootstrap interval of delta, or None when the runs kept no per-example predictions
    or scored different test examples (then there is nothing to pair)."""
    if not pretrained.references or pretrained.references != random_init.references:
        return None
    test_set = PairedTestSet(len(pretrained.references), scorer(pretrained), scorer(random_init))
    return paired_bootstrap_interval([test_set], seed=seed)


def compare_with_random_init(
    task: str,
    metric: str,
    evaluate: Callable[[FeatureEncoder], EvalResult],
    pretrained: FeatureEncoder,
    random_init: Callable[[], FeatureEncoder],
    seed: int,
    scorer: Callable[[EvalResult], SubsetScore] | None = None,
    side_by_side: bool = False,
) -> tuple[BaselineRecord, EvalResult, EvalResult]:
    """Run `evaluate` on both encoders from the same seed; return the record and both results.

    `random_init` builds the same architecture with fresh weights; it is called under `seed`, so
    the baseline itself is reproducible. `scorer` (a result -> its metric on any subset of its test
    examples) adds the 95 % interval of delta. `side_by_side` runs the two evaluations at the same
    time in two single-threaded processes (d2v.eval.side_by_side) where this process has at most
    two threads, else in turn; the seeding is the same either way.
    """
    start = time.perf_counter()
    torch.manual_seed(seed)
    baseline_encoder = random_init()
    runs = [partial(_labelled, "pretrained", evaluate, pretrained), partial(_labelled, "random init", evaluate, baseline_encoder)]
    if side_by_side and worth_running_side_by_side(len(runs)):
        pretrained_result, baseline_result = run_side_by_side(
            runs, seed, labels=[f"{task} (pretrained)", f"{task} (random init)"]
        )
    else:
        torch.manual_seed(seed)
        pretrained_result = runs[0]()
        torch.manual_seed(seed)
        baseline_result = runs[1]()
    interval = None if scorer is None else paired_interval(scorer, pretrained_result, baseline_result, seed)
    record = make_record(task, metric, pretrained_result, baseline_result, time.perf_counter() - start, interval=interval)
    return record, pretrained_result, baseline_result


def _labelled(label: str, evaluate: Callable[[FeatureEncoder], EvalResult], encoder: FeatureEncoder) -> EvalResult:
    with run_label(label):
        return evaluate(encoder)


def write_eval_metrics(path: str | Path, records: Sequence[BaselineRecord]) -> Path:
    """`metrics/eval/<modality>.json`: {task: record}; the first task is the modality's main task."""
    if not records:
        raise D2VError(f"{path}: no evaluation records to write")
    names = [r.task for r in records]
    if len(set(names)) != len(names):
        raise D2VError(f"{path}: duplicate task names {names}")
    return atomic_write_json(path, {r.task: asdict(r) for r in records}, sort_keys=False)


def write_confusion_csv(
    path: str | Path, actual: Sequence[int], predicted: Sequence[int], class_names: Sequence[str] | None = None
) -> Path:
    """One row per test example (actual,predicted), the layout DVC's confusion template reads."""
    if len(actual) != len(predicted) or not actual:
        raise D2VError(f"{path}: need equal, non-empty actual/predicted lists, got {len(actual)} and {len(predicted)}")

    def name(label: int) -> str | int:
        if class_names is None:
            return label
        if not 0 <= label < len(class_names):
            raise D2VError(f"{path}: label {label} has no class name ({len(class_names)} names)")
        return class_names[label]

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["actual", "predicted"])
    writer.writerows((name(int(a)), name(int(p))) for a, p in zip(actual, predicted))
    return atomic_write_text(path, buffer.getvalue())
