from __future__ import annotations

import csv
import json
from functools import partial
from typing import Callable

import pytest
import torch

from d2v.errors import D2VError
from d2v.eval.baseline import compare_with_random_init, make_record, paired_interval, with_input_baseline
from d2v.eval.config import LinearProbeConfig
from d2v.eval.data import EvalResult
from d2v.eval.linear_probe import linear_probe
from d2v.eval.record import write_confusion_csv, write_eval_metrics
from d2v.eval.significance import accuracy_scorer

from eval_standins import PatchEmbed, StandInEncoder

RECORD_KEYS = {
    "task", "metric", "higher_is_better", "pretrained", "random_init", "delta", "n_train", "n_test", "wall_time_s",
    "delta_ci95_low", "delta_ci95_high", "pretrained_output_ratio", "random_init_output_ratio",
    "input_baseline_name", "input_baseline", "input_baseline_delta", "input_baseline_delta_ci95_low",
    "input_baseline_delta_ci95_high", "input_baseline_output_ratio",
    "pretrained_final_train_loss", "random_init_final_train_loss", "input_baseline_final_train_loss",
    "pretrained_weight_decay", "random_init_weight_decay", "input_baseline_weight_decay",
}
JSON_KEYS = RECORD_KEYS | {"beats_input_baseline"}  # the verdict, derived, is written too


def fake_evaluate(encoder: torch.nn.Module) -> EvalResult:
    """Scores 0.9 for the 'pretrained' encoder (marked), 0.6 otherwise; WER the other way round."""
    good = getattr(encoder, "pretrained", False)
    return EvalResult(metrics={"top1": 0.9 if good else 0.6, "wer": 0.2 if good else 0.7}, n_train=10, n_test=5)


def test_record_keys_and_delta() -> None:
    pretrained = torch.nn.Linear(2, 2)
    pretrained.pretrained = True
    record, ours, theirs, no_input = compare_with_random_init("probe", "top1", fake_evaluate, pretrained, lambda: torch.nn.Linear(2, 2), seed=0)
    assert set(record.__dict__) == RECORD_KEYS and no_input is None
    assert record.delta_ci95_low is None and record.delta_ci95_high is None  # no scorer, no interval
    assert record.delta == pytest.approx(0.3) and record.higher_is_better and record.pretraining_helps
    assert (record.n_train, record.n_test) == (10, 5) and record.wall_time_s >= 0
    assert ours.metrics["top1"] == 0.9 and theirs.metrics["top1"] == 0.6
    wer = compare_with_random_init("asr", "wer", fake_evaluate, pretrained, lambda: torch.nn.Linear(2, 2), seed=0).record
    assert wer.delta == pytest.approx(-0.5) and not wer.higher_is_better and wer.pretraining_helps


def test_each_run_keeps_its_final_training_loss() -> None:
    def run(losses: list[float]) -> EvalResult:
        return EvalResult(metrics={"top1": 0.5}, n_train=10, n_test=5, train_losses=losses)

    converging = [2.0] * 5 + [0.1] * 10  # the mean over the last 10 updates, not the whole run
    record = make_record("probe", "top1", run(converging), run([]), wall_time_s=1.0)
    assert record.pretrained_final_train_loss == pytest.approx(0.1)
    assert record.random_init_final_train_loss is None  # a run that kept no losses says nothing
    record = with_input_baseline(record, run(converging), run([3.0, 1.0]), "raw pixels", None, seed=0)
    assert record.input_baseline_final_train_loss == pytest.approx(2.0)


def test_each_run_keeps_the_weight_decay_its_probe_picked() -> None:
    def run(metrics: dict[str, float]) -> EvalResult:
        return EvalResult(metrics={"top1": 0.5, **metrics}, n_train=10, n_test=5)

    record = make_record("probe", "top1", run({"weight_decay": 0.01}), run({"weight_decay": 3.0}), wall_time_s=1.0)
    assert (record.pretrained_weight_decay, record.random_init_weight_decay) == (0.01, 3.0)
    record = with_input_baseline(record, run({}), run({"weight_decay": 30.0}), "raw pixels", None, seed=0)
    assert record.input_baseline_weight_decay == 30.0
    assert make_record("finetune", "top1", run({}), run({}), wall_time_s=1.0).pretrained_weight_decay is None


def test_output_ratios_come_from_the_scored_split() -> None:
    ours = EvalResult({"wer": 0.99, "real_wer": 0.5}, 10, 5, output_ratios={"test": 0.02, "real": 0.8})
    theirs = EvalResult({"wer": 1.3, "real_wer": 0.7}, 10, 5, output_ratios={"test": 1.4, "real": 1.0})
    main = make_record("ctc", "wer", ours, theirs, 0.0)
    extra = make_record("ctc_real_wer", "real_wer", ours, theirs, 0.0, split="real")
    assert (main.pretrained_output_ratio, main.random_init_output_ratio) == (0.02, 1.4)
    assert main.verdict.startswith("inconclusive (the better run's transcripts are near-empty")
    assert (extra.pretrained_output_ratio, extra.verdict) == (0.8, "yes")


def test_interval_only_where_the_test_examples_can_be_paired() -> None:
    """With per-example predictions the record gets a bootstrap interval around its delta; runs that
    scored different references get none rather than a meaningless one."""
    labels = [i % 2 for i in range(200)]

    def evaluate(encoder: torch.nn.Module) -> EvalResult:
        good = getattr(encoder, "pretrained", False)
        predictions = labels if good else [0] * 200  # 100 % vs 50 % on 200 examples
        return EvalResult({"top1": 1.0 if good else 0.5}, 10, 200, predictions=predictions, references=labels)

    pretrained = torch.nn.Linear(2, 2)
    pretrained.pretrained = True
    scorer = lambda result: accuracy_scorer(result.predictions, result.references)  # noqa: E731
    record = compare_with_random_init("probe", "top1", evaluate, pretrained, lambda: torch.nn.Linear(2, 2), 0, scorer)[0]
    assert record.delta_ci95_low is not None and record.delta_ci95_high is not None
    assert 0.35 < record.delta_ci95_low < 0.5 < record.delta_ci95_high < 0.65 and record.verdict == "yes"
    ours = evaluate(pretrained)
    theirs = EvalResult({"top1": 0.5}, 10, 200, predictions=[0] * 200, references=[1] * 200)
    assert paired_interval(scorer, ours, theirs, seed=0) is None


def test_same_seed_same_baseline(image_encoder_factory, image_splits) -> None:
    """A real probe, twice: the random-init side is rebuilt under the seed, so the records agree."""
    cfg = LinearProbeConfig(epochs=10, lr=0.05, batch_size=0, weight_decays=(0.0,), n_train=64, n_valid=None)
    evaluate = partial(linear_probe, splits=image_splits, cfg=cfg, pooling="mean", n_test=32, seed=0)

    def fresh() -> StandInEncoder:  # no seeding inside: compare_with_random_init seeds before calling it
        return StandInEncoder(PatchEmbed(1, 16, 4), dim=16, depth=2)

    first = compare_with_random_init("linear_probe", "top1", evaluate, image_encoder_factory(5), fresh, seed=3)[0]
    second = compare_with_random_init("linear_probe", "top1", evaluate, image_encoder_factory(5), fresh, seed=3)[0]
    assert (first.pretrained, first.random_init, first.delta) == (second.pretrained, second.random_init, second.delta)


def test_missing_metric_is_a_clear_error() -> None:
    with pytest.raises(D2VError, match="no metric 'f1'"):
        compare_with_random_init("t", "f1", fake_evaluate, torch.nn.Linear(2, 2), lambda: torch.nn.Linear(2, 2), seed=0)


def test_metrics_file_and_confusion_csv(tmp_path) -> None:
    pretrained = torch.nn.Linear(2, 2)
    pretrained.pretrained = True
    record = compare_with_random_init("linear_probe", "top1", fake_evaluate, pretrained, lambda: torch.nn.Linear(2, 2), seed=0)[0]
    path = write_eval_metrics(tmp_path / "metrics" / "eval" / "image.json", [record])
    written = json.loads(path.read_text())
    assert list(written) == ["linear_probe"] and set(written["linear_probe"]) == JSON_KEYS
    assert written["linear_probe"]["beats_input_baseline"] is None  # no input baseline was run
    assert written["linear_probe"]["delta"] == pytest.approx(0.3)
    assert not list(path.parent.glob(".*tmp"))  # the temporary file was renamed away

    csv_path = write_confusion_csv(tmp_path / "image_confusion.csv", [0, 1, 2], [0, 2, 2], ["shirt", "bag", "boot"])
    rows = list(csv.DictReader(csv_path.open()))
    assert rows == [{"actual": "shirt", "predicted": "shirt"}, {"actual": "bag", "predicted": "boot"}, {"actual": "boot", "predicted": "boot"}]

    with pytest.raises(D2VError, match="no evaluation records"):
        write_eval_metrics(tmp_path / "empty.json", [])
    with pytest.raises(D2VError, match="duplicate task"):
        write_eval_metrics(tmp_path / "dup.json", [record, record])
    with pytest.raises(D2VError, match="label 3 has no class name"):
        write_confusion_csv(tmp_path / "bad.csv", [3], [0], ["a", "b"])


class InputStandIn(torch.nn.Linear):
    """Marks the input-baseline run for `evaluate_three`."""

    baseline_name = "raw pixels"


def evaluate_three(input_right: int) -> Callable[[torch.nn.Module], EvalResult]:
    """Per-example predictions on 200 examples: pretrained 90 % right, random init 60 %, the input
    baseline `input_right` examples right."""
    labels = [i % 2 for i in range(200)]

    def evaluate(encoder: torch.nn.Module) -> EvalResult:
        right = 180 if getattr(encoder, "pretrained", False) else input_right if isinstance(encoder, InputStandIn) else 120
        predictions = [y if i < right else 1 - y for i, y in enumerate(labels)]
        return EvalResult({"top1": right / 200}, 10, 200, predictions=predictions, references=labels)

    return evaluate


@pytest.mark.parametrize(("input_right", "beats"), [(190, False), (182, False), (140, True)])
def test_the_input_baseline_is_a_third_run_with_its_own_interval(input_right: int, beats: bool, tmp_path) -> None:
    pretrained = torch.nn.Linear(2, 2)
    pretrained.pretrained = True
    scorer = lambda result: accuracy_scorer(result.predictions, result.references)  # noqa: E731
    comparison = compare_with_random_init(
        "probe", "top1", evaluate_three(input_right), pretrained, lambda: torch.nn.Linear(2, 2), 0, scorer,
        input_baseline=InputStandIn(2, 2),
    )
    record = comparison.record
    assert comparison.input_baseline is not None and comparison.input_baseline.metrics["top1"] == input_right / 200
    assert (record.input_baseline_name, record.input_baseline) == ("raw pixels", input_right / 200)
    assert record.input_baseline_delta == pytest.approx(0.9 - input_right / 200)
    assert record.input_baseline_delta_ci95_low <= record.input_baseline_delta <= record.input_baseline_delta_ci95_high  # type: ignore[operator]
    assert record.beats_input_baseline is beats
    assert record.verdict == "yes"  # beating random init is a separate question
    written = json.loads(write_eval_metrics(tmp_path / "image.json", [record]).read_text())["probe"]
    assert written["beats_input_baseline"] is beats and written["input_baseline_name"] == "raw pixels"


def test_an_input_baseline_on_other_data_is_refused() -> None:
    ours = EvalResult({"top1": 0.9}, 10, 5)
    record = make_record("probe", "top1", ours, EvalResult({"top1": 0.5}, 10, 5), 0.0)
    with pytest.raises(D2VError, match="pretrained and input-baseline runs saw different data"):
        with_input_baseline(record, ours, EvalResult({"top1": 0.8}, 12, 5), "raw pixels", None, seed=0)
