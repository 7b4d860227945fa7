"""One call per modality: every evaluation of that modality, pretrained and random init, files written.

These are what the `evaluate@<modality>` stage calls once it has loaded the checkpoint (the
pretrained encoder), a factory for the same architecture with fresh weights, and the prepared
splits from d2v/data. Each returns its records (see d2v.eval.baseline for the keys) and writes
`<out_dir>/<modality>.json`; the image run also writes `<out_dir>/image_confusion.csv`.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Callable, Mapping, Sequence

from torch.utils.data import Dataset, default_collate

from d2v.core.types import Batch, FeatureEncoder
from d2v.errors import D2VError
from d2v.eval.augment import ImageAugment
from d2v.eval.baseline import Comparison, compare_with_random_init, make_record, paired_interval, with_input_baseline
from d2v.eval.config import ImageEvalConfig, SpeechEvalConfig, TextEvalConfig
from d2v.eval.ctc import ctc_finetune
from d2v.eval.data import Collate, EvalResult, get_split
from d2v.eval.device import CPU_FP32, EvalRuntime
from d2v.eval.finetune import finetune
from d2v.eval.input_features import BagOfNgrams, LogMelFrames, RawPixels
from d2v.eval.linear_probe import linear_probe
from d2v.layout import confusion_name
from d2v.eval.metrics import NOT_AVERAGED, glue_average, glue_task_key, glue_task_kind, glue_task_metrics
from d2v.eval.record import BaselineRecord, write_confusion_csv, write_eval_metrics
from d2v.eval.significance import (
    PairedTestSet,
    SubsetScore,
    accuracy_scorer,
    error_rate_scorer,
    glue_scorer,
    paired_bootstrap_interval,
)

EncoderFactory = Callable[[], FeatureEncoder]
Splits = Mapping[str, Dataset]
# Task -> its extra test splits and the record each becomes: GLUE reports MNLI on both dev sets, from
# one fine-tuning (the prepared mnli.csv holds dev_mismatched as split "test_mismatched").
TEXT_EXTRA_TEST: dict[str, dict[str, str]] = {"mnli": {"test_mismatched": "mnlimm"}}


def _top1(result: EvalResult) -> SubsetScore:
    return accuracy_scorer(result.predictions, result.references)


def _glue_score(task: str) -> Callable[[EvalResult], SubsetScore]:
    def scorer(result: EvalResult) -> SubsetScore:
        kind = glue_task_kind(task, regression="pearson" in result.metrics)
        return glue_scorer(kind, result.predictions, result.references)

    return scorer


def _error_rate(unit: str) -> Callable[[EvalResult], SubsetScore]:
    return lambda result: error_rate_scorer(unit, result.predictions, result.references)


def evaluate_image(
    pretrained: FeatureEncoder,
    random_init: EncoderFactory,
    splits: Splits,
    cfg: ImageEvalConfig,
    out_dir: str | Path,
    class_names: Sequence[str] | None = None,
    collate: Collate | None = None,
    side_by_side: bool = False,
    runtime: EvalRuntime = CPU_FP32,
) -> list[BaselineRecord]:
    """Linear probe (the main task) and fine-tuning; confusion matrix of the pretrained probe.

    The input baseline is the raw pixels: through the probe, standardised pixels and a linear
    classifier; through fine-tuning, a LayerNorm + linear head on the pixels trained end to end
    with the fine-tuning recipe (augmentation included)."""
    common = dict(splits=splits, pooling=cfg.pooling, n_test=cfg.n_test, seed=cfg.seed, collate=collate, runtime=runtime)
    pixels = RawPixels.for_batch(sample_batch(splits, collate, "image evaluation"))
    probe = compare_with_random_init(
        "linear_probe", "top1", partial(linear_probe, cfg=cfg.linear_probe, **common), pretrained, random_init, cfg.seed,
        scorer=_top1, side_by_side=side_by_side, input_baseline=pixels, runtime=runtime,
    )
    tuned = compare_with_random_init(
        "finetune",
        "top1",
        partial(finetune, cfg=cfg.finetune, augment=ImageAugment(cfg.augment), where="image fine-tuning", **common),
        pretrained,
        random_init,
        cfg.seed,
        scorer=_top1,
        side_by_side=side_by_side,
        input_baseline=pixels,
        runtime=runtime,
    ).record
    out_dir = Path(out_dir)
    write_confusion_csv(
        out_dir / confusion_name("image"), probe.pretrained.references, probe.pretrained.predictions, class_names
    )
    records = [probe.record, tuned]
    write_eval_metrics(out_dir / "image.json", records)
    return records


def sample_batch(splits: Splits, collate: Collate | None, where: str) -> Batch:
    """The first training example as a batch of one: what an input baseline sizes itself from."""
    return (collate or default_collate)([get_split(splits, "train", where)[0]])


def glue_task(
    encoder: FeatureEncoder, splits: Splits, task: str, cfg: TextEvalConfig, collate: Collate | None,
    runtime: EvalRuntime = CPU_FP32,
) -> EvalResult:
    """Fine-tune on one task and score it as GLUE does (`score` = the task's primary number). MNLI's
    model also scores the mismatched dev set (`<split>_score`), as GLUE reports MNLI-mm."""
    item_length = None
    if cfg.length_buckets:
        item_length = getattr(collate, "length", None)
        if item_length is None:
            raise D2VError(f"text task {task}: evaluate.text.length_buckets needs a collate with a length(item) "
                           f"method (TextCollate), got {type(collate).__name__}")
    result = finetune(
        encoder, splits, cfg.finetune, pooling=cfg.pooling, n_test=cfg.n_test, seed=cfg.seed,
        collate=collate, where=f"text task {task}", extra_test_splits=tuple(TEXT_EXTRA_TEST.get(glue_task_key(task), {})),
        runtime=runtime, item_length=item_length,
    )
    kind = glue_task_kind(task, "pearson" in result.metrics)
    result.metrics = glue_task_metrics(kind, result.predictions, result.references)
    for split, (predictions, references) in result.extra_transcripts.items():
        result.metrics[f"{split}_score"] = glue_task_metrics(kind, predictions, references)["score"]
    return result


def _extra_split_records(task: str, comparison: Comparison, seed: int) -> list[BaselineRecord]:
    """A task record per extra test split of `task` (MNLI -> mnlimm), from the same fine-tuned runs."""
    records = []
    for split, record_task in TEXT_EXTRA_TEST.get(glue_task_key(task), {}).items():
        runs = [comparison.pretrained, comparison.random_init, comparison.input_baseline]
        if split not in comparison.pretrained.extra_transcripts:
            continue
        ours, theirs, words = (_as_split(run, split) if run is not None else None for run in runs)
        scorer = _glue_score(task)
        interval = paired_interval(scorer, ours, theirs, seed)
        record = make_record(record_task, "score", ours, theirs, comparison.record.wall_time_s, interval=interval)
        if words is not None:
            record = with_input_baseline(record, ours, words, str(comparison.record.input_baseline_name), scorer, seed)
        records.append(record)
    return records


def _as_split(result: EvalResult, split: str) -> EvalResult:
    """`result` as if `split` were its test split: its outputs there and their score."""
    moved = result.on_split(split)
    return replace(moved, metrics={**result.metrics, "score": result.metrics[f"{split}_score"]},
                   n_test=len(moved.references))  # fmt: skip


def evaluate_text(
    pretrained: FeatureEncoder,
    random_init: EncoderFactory,
    task_splits: Mapping[str, Splits],
    cfg: TextEvalConfig,
    out_dir: str | Path,
    collate: Collate | None = None,
    side_by_side: bool = False,
    runtime: EvalRuntime = CPU_FP32,
) -> list[BaselineRecord]:
    """Every task in cfg.tasks, then their GLUE-style average (the main record, listed first).

    The input baseline of each task is a bag of piece n-grams (pair features for pair tasks) through
    the same fine-tuning code: a LayerNorm + linear head on fixed features, the same recipe."""
    missing = [task for task in cfg.tasks if task not in task_splits]
    if missing:
        raise D2VError(f"text evaluation: no data for task(s) {missing} (have: {', '.join(task_splits) or 'none'})")
    comparisons: dict[str, Comparison] = {}
    for task in cfg.tasks:
        evaluate = partial(glue_task, splits=task_splits[task], task=task, cfg=cfg, collate=collate, runtime=runtime)
        words = BagOfNgrams.for_batch(sample_batch(task_splits[task], collate, f"text task {task}"))
        comparisons[task] = compare_with_random_init(
            task, "score", evaluate, pretrained, random_init, cfg.seed, scorer=_glue_score(task),
            side_by_side=side_by_side, input_baseline=words, runtime=runtime,
        )
    records = [glue_average_record(comparisons, cfg.seed), *(c.record for c in comparisons.values())]
    records += [r for task, c in comparisons.items() for r in _extra_split_records(task, c, cfg.seed)]
    write_eval_metrics(Path(out_dir) / "text.json", records)
    return records


def _average_interval(
    comparisons: Mapping[str, Comparison], other: Callable[[Comparison], EvalResult | None], seed: int
) -> tuple[float, float] | None:
    """The average's interval: every task's test set resampled on each draw (paired within each
    task); None when any task's runs cannot be paired."""
    test_sets = []
    for task, c in comparisons.items():
        theirs = other(c)
        if theirs is None or not c.pretrained.references or c.pretrained.references != theirs.references:
            return None
        scorer = _glue_score(task)
        test_sets.append(PairedTestSet(len(c.pretrained.references), scorer(c.pretrained), scorer(theirs)))
    return paired_bootstrap_interval(test_sets, seed=seed) if test_sets else None


def glue_average_record(comparisons: Mapping[str, Comparison], seed: int) -> BaselineRecord:
    """The GLUE-style average of the task records (MNLI-mm left out), with both intervals."""
    records = [c.record for c in comparisons.values()]
    averaged = {task: c for task, c in comparisons.items() if glue_task_key(task) not in NOT_AVERAGED}
    interval = _average_interval(averaged, lambda c: c.random_init, seed)
    pretrained_avg = glue_average({r.task: r.pretrained for r in records})
    random_avg = glue_average({r.task: r.random_init for r in records})
    average = BaselineRecord(
        task="average",
        metric="score",
        higher_is_better=True,
        pretrained=pretrained_avg,
        random_init=random_avg,
        delta=pretrained_avg - random_avg,
        n_train=sum(r.n_train for r in records),
        n_test=sum(r.n_test for r in records),
        wall_time_s=round(sum(r.wall_time_s for r in records), 3),
        delta_ci95_low=None if interval is None else interval[0],
        delta_ci95_high=None if interval is None else interval[1],
    )
    if any(r.input_baseline is None for r in records):
        return average
    names = sorted({str(r.input_baseline_name) for r in records})
    baseline_avg = glue_average({r.task: r.input_baseline for r in records})  # type: ignore[misc]
    interval = _average_interval(averaged, lambda c: c.input_baseline, seed)
    return replace(
        average,
        input_baseline_name=", ".join(names),
        input_baseline=baseline_avg,
        input_baseline_delta=pretrained_avg - baseline_avg,
        input_baseline_delta_ci95_low=None if interval is None else interval[0],
        input_baseline_delta_ci95_high=None if interval is None else interval[1],
    )


def evaluate_speech(
    pretrained: FeatureEncoder,
    random_init: EncoderFactory,
    splits: Splits,
    cfg: SpeechEvalConfig,
    out_dir: str | Path,
    collate: Collate | None = None,
    extra_test_splits: Sequence[str] = (),
    side_by_side: bool = False,
    input_baseline: FeatureEncoder | None = None,
    runtime: EvalRuntime = CPU_FP32,
) -> list[BaselineRecord]:
    """CTC fine-tuning: WER (main) and CER on "test", plus each extra test split that exists.

    The input baseline (default: log-mel frames on wav2vec 2.0's 20 ms grid; the stage passes the
    model's own grid) is a linear CTC head on those frames, trained with the same recipe."""
    evaluate = partial(
        ctc_finetune, splits=splits, cfg=cfg, collate=collate, extra_test_splits=extra_test_splits, runtime=runtime
    )
    comparison = compare_with_random_init(
        "ctc", "wer", evaluate, pretrained, random_init, cfg.seed, scorer=_error_rate("word"),
        side_by_side=side_by_side, input_baseline=LogMelFrames() if input_baseline is None else input_baseline,
        runtime=runtime,
    )
    main, ours, theirs, frames = comparison
    records = [main]
    for metric in ours.metrics:  # the same runs, scored on other metrics and extra test splits
        if metric != "wer":
            split = metric.rsplit("_", 1)[0] if "_" in metric else "test"
            scorer = _error_rate("char" if metric.endswith("cer") else "word")
            interval = paired_interval(scorer, ours.on_split(split), theirs.on_split(split), cfg.seed)
            record = make_record(
                f"ctc_{metric}", metric, ours, theirs, main.wall_time_s,
                n_test=ours.extra_test_sizes.get(split), interval=interval, split=split,
            )
            if frames is not None:
                record = with_input_baseline(record, ours, frames, str(main.input_baseline_name), scorer, cfg.seed, split)
            records.append(record)
    write_eval_metrics(Path(out_dir) / "speech.json", records)
    return records
