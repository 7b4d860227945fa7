"""Pretrained vs random init and vs the input itself: the same evaluation, budget and seed, and the
differences recorded.

The record each comparison produces, and the files it is written to: d2v.eval.record.
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial
from typing import Callable, NamedTuple

import torch

from d2v.core.types import FeatureEncoder
from d2v.errors import D2VError
from d2v.eval.data import EvalResult
from d2v.eval.device import CPU_FP32, EvalRuntime, log_line
from d2v.eval.record import LOWER_IS_BETTER, BaselineRecord
from d2v.eval.side_by_side import run_side_by_side, worth_running_side_by_side
from d2v.eval.significance import PairedTestSet, SubsetScore, paired_bootstrap_interval
from d2v.progress import run_label

FINAL_LOSS_WINDOW = 10


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
        pretrained_final_train_loss=final_train_loss(pretrained),
        random_init_final_train_loss=final_train_loss(random_init),
        pretrained_weight_decay=pretrained.metrics.get("weight_decay"),
        random_init_weight_decay=random_init.metrics.get("weight_decay"),
    )


def final_train_loss(result: EvalResult) -> float | None:
    """Mean training loss over the run's last FINAL_LOSS_WINDOW updates; None when it kept none."""
    tail = result.train_losses[-FINAL_LOSS_WINDOW:]
    return round(sum(tail) / len(tail), 6) if tail else None


def paired_interval(
    scorer: Callable[[EvalResult], SubsetScore], pretrained: EvalResult, random_init: EvalResult, seed: int
) -> tuple[float, float] | None:
    """95 % paired-bootstrap interval of delta, or None when the runs kept no per-example predictions
    or scored different test examples (then there is nothing to pair)."""
    if not pretrained.references or pretrained.references != random_init.references:
        return None
    test_set = PairedTestSet(len(pretrained.references), scorer(pretrained), scorer(random_init))
    return paired_bootstrap_interval([test_set], seed=seed)


class Comparison(NamedTuple):
    """A comparison's record and the finished runs behind it (for re-scoring on other metrics)."""

    record: BaselineRecord
    pretrained: EvalResult
    random_init: EvalResult
    input_baseline: EvalResult | None = None


def compare_with_random_init(
    task: str,
    metric: str,
    evaluate: Callable[[FeatureEncoder], EvalResult],
    pretrained: FeatureEncoder,
    random_init: Callable[[], FeatureEncoder],
    seed: int,
    scorer: Callable[[EvalResult], SubsetScore] | None = None,
    side_by_side: bool = False,
    input_baseline: FeatureEncoder | None = None,
    runtime: EvalRuntime = CPU_FP32,
) -> Comparison:
    """Run `evaluate` on both encoders (and the input baseline) from the same seed; the record and the runs.

    `random_init` builds the same architecture with fresh weights; it is called under `seed`, so
    the baseline itself is reproducible. `scorer` (a result -> its metric on any subset of its test
    examples) adds the 95 % intervals. `input_baseline` (d2v.eval.input_features) is run through the
    same `evaluate` as a third run. `side_by_side` runs the evaluations at the same time in
    single-threaded processes (d2v.eval.side_by_side) where this process has at most two threads,
    else in turn; the seeding is the same either way. `runtime` is where `evaluate` runs (the caller
    binds it into `evaluate`): side by side being a CPU trick, a runtime it does not suit (CUDA,
    loader workers, compile) makes the runs go in turn, and a log line says so.
    """
    start = time.perf_counter()
    torch.manual_seed(seed)
    baseline_encoder = random_init()
    runs = [partial(_labelled, "pretrained", evaluate, pretrained), partial(_labelled, "random init", evaluate, baseline_encoder)]
    labels = [f"{task} (pretrained)", f"{task} (random init)"]
    if input_baseline is not None:
        runs.append(partial(_labelled, "input baseline", evaluate, input_baseline))
        labels.append(f"{task} (input baseline)")
    # The decision is the pair's: the input baseline, a linear model on fixed features (seconds),
    # joins them as a third single-threaded process and fills the gaps two tiny-model runs leave.
    blocker = runtime.side_by_side_blocker() if side_by_side else None
    if blocker is not None:
        log_line(f"{task}: evaluate.side_by_side is a CPU trick and {blocker}: the runs go one after the other")
    if side_by_side and blocker is None and worth_running_side_by_side(2):
        results = run_side_by_side(runs, seed, labels=labels)
    else:
        results = []
        for run in runs:
            torch.manual_seed(seed)
            results.append(run())
    pretrained_result, baseline_result = results[0], results[1]
    interval = None if scorer is None else paired_interval(scorer, pretrained_result, baseline_result, seed)
    record = make_record(task, metric, pretrained_result, baseline_result, time.perf_counter() - start, interval=interval)
    input_result = results[2] if input_baseline is not None else None
    if input_result is not None:
        name = getattr(input_baseline, "baseline_name", type(input_baseline).__name__)
        record = with_input_baseline(record, pretrained_result, input_result, name, scorer, seed)
    return Comparison(record, pretrained_result, baseline_result, input_result)


def with_input_baseline(
    record: BaselineRecord,
    pretrained: EvalResult,
    input_baseline: EvalResult,
    name: str,
    scorer: Callable[[EvalResult], SubsetScore] | None,
    seed: int,
    split: str = "test",
) -> BaselineRecord:
    """The record with the input baseline's score on the record's metric, pretrained - baseline and
    its 95 % interval (scored on `split`, as the record's interval is)."""
    if (pretrained.n_train, pretrained.n_test) != (input_baseline.n_train, input_baseline.n_test):
        raise D2VError(f"{record.task}: pretrained and input-baseline runs saw different data; the comparison would be unfair")
    score = _metric(input_baseline, record.metric, record.task, "input-baseline")
    interval = None
    if scorer is not None:
        interval = paired_interval(scorer, pretrained.on_split(split), input_baseline.on_split(split), seed)
    return replace(
        record,
        input_baseline_name=name,
        input_baseline=score,
        input_baseline_delta=record.pretrained - score,
        input_baseline_delta_ci95_low=None if interval is None else interval[0],
        input_baseline_delta_ci95_high=None if interval is None else interval[1],
        input_baseline_output_ratio=input_baseline.output_ratios.get(split),
        input_baseline_final_train_loss=final_train_loss(input_baseline),
        input_baseline_weight_decay=input_baseline.metrics.get("weight_decay"),
    )


def _labelled(label: str, evaluate: Callable[[FeatureEncoder], EvalResult], encoder: FeatureEncoder) -> EvalResult:
    with run_label(label):
        return evaluate(encoder)
