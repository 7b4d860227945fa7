"""The comparison record of one evaluation task (pretrained vs random init vs the input) and the
files it is written to. Free of torch, so the report stage reads records without importing it.

The record (one per task), as written to `metrics/eval/<modality>.json` under the task's name:

    task              name of the evaluation, e.g. "linear_probe", "finetune", "sst2", "ctc"
    metric            the metric compared, e.g. "top1", "score", "wer"
    higher_is_better  false for error rates (WER, CER): then a negative delta is the gain
    pretrained        the metric from the pretrained encoder
    random_init       the metric from a freshly initialised encoder of the same architecture
    delta             pretrained - random_init
    n_train, n_test   examples used for training and scoring
    wall_time_s       seconds for all runs together (pretrained, random init, input baseline)
    delta_ci95_low, delta_ci95_high
                      95 % paired-bootstrap interval of delta over the test examples
                      (d2v.eval.significance); null when not computed (no per-example outputs kept)
    pretrained_output_ratio, random_init_output_ratio
                      speech: characters emitted / reference characters on the scored split, per
                      run; null for other tasks. Below MIN_OUTPUT_RATIO the run's transcripts are
                      near-empty, and a win by that run is "inconclusive"
    pretrained_final_train_loss, random_init_final_train_loss, input_baseline_final_train_loss
                      each run's mean training loss over its last updates
                      (d2v.eval.baseline.FINAL_LOSS_WINDOW): shows whether the probe or fine-tuning
                      converged; null where a run kept no losses
    pretrained_weight_decay, random_init_weight_decay, input_baseline_weight_decay
                      the linear probe's weight decay, picked per run on the valid split (see
                      d2v.eval.linear_probe); null for tasks that pick nothing
    input_baseline_name
                      the non-learned input baseline run with the same procedure, budget, data and
                      seed (d2v.eval.input_features): "raw pixels", "bag of words", "log-mel frames"
    input_baseline    its metric; input_baseline_delta = pretrained - input_baseline, with its 95 %
                      paired-bootstrap interval input_baseline_delta_ci95_low / _high and, for
                      speech, input_baseline_output_ratio
    beats_input_baseline
                      written with the record (a property here): true only when the pretrained run
                      beats the input baseline conclusively (interval clear of 0 in its favour);
                      null without an input baseline. The input_baseline* keys are null in files
                      written before input baselines existed.

`metrics/eval/image_confusion.csv` (columns actual,predicted; one row per test image) feeds the
confusion-matrix template of `dvc plots`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from d2v.atomic import atomic_write_json, atomic_write_text
from d2v.errors import D2VError

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
    input_baseline_name: str | None = None
    input_baseline: float | None = None
    input_baseline_delta: float | None = None  # pretrained - input_baseline
    input_baseline_delta_ci95_low: float | None = None
    input_baseline_delta_ci95_high: float | None = None
    input_baseline_output_ratio: float | None = None
    pretrained_final_train_loss: float | None = None
    random_init_final_train_loss: float | None = None
    input_baseline_final_train_loss: float | None = None
    pretrained_weight_decay: float | None = None
    random_init_weight_decay: float | None = None
    input_baseline_weight_decay: float | None = None

    @property
    def inconclusive_reason(self) -> str | None:
        """Why the sign of delta means nothing, or None (see `inconclusive_reason`)."""
        return inconclusive_reason(
            self.metric, self.pretrained, self.random_init, self.pretrained_output_ratio, self.random_init_output_ratio
        )

    @property
    def beats_input_baseline(self) -> bool | None:
        """None without an input baseline. Otherwise true only when the pretrained run is better and
        it shows: the comparison is conclusive (as for random init: not both error rates >= 100 %, no
        win by near-empty transcripts) and the 95 % interval of pretrained - input baseline is clear
        of 0 in the pretrained run's favour (by the sign alone where no interval could be paired)."""
        if self.input_baseline is None or self.input_baseline_delta is None:
            return None
        reason = inconclusive_reason(
            self.metric, self.pretrained, self.input_baseline, self.pretrained_output_ratio,
            self.input_baseline_output_ratio,
        )
        if reason is not None:
            return False
        low, high = self.input_baseline_delta_ci95_low, self.input_baseline_delta_ci95_high
        if low is None or high is None:
            return self.input_baseline_delta > 0 if self.higher_is_better else self.input_baseline_delta < 0
        return low > 0 if self.higher_is_better else high < 0

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


def inconclusive_reason(
    metric: str, ours: float, theirs: float, our_ratio: float | None, their_ratio: float | None
) -> str | None:
    """Why the sign of ours - theirs means nothing, or None. Error rates only: when both runs score
    100 % or more (an empty transcript scores exactly 100 %, so neither recognises anything), or
    when the better run's transcripts are near-empty (it wins by deleting, not recognising)."""
    if not is_error_rate(metric):
        return None
    if min(ours, theirs) >= 1.0:
        return "both >= 100 %"
    winner_ratio = our_ratio if ours < theirs else their_ratio
    if ours != theirs and winner_ratio is not None and winner_ratio < MIN_OUTPUT_RATIO:
        return f"the better run's transcripts are near-empty: {winner_ratio:.0%} of the reference length"
    return None


def write_eval_metrics(path: str | Path, records: Sequence[BaselineRecord]) -> Path:
    """`metrics/eval/<modality>.json`: {task: record}; the first task is the modality's main task."""
    if not records:
        raise D2VError(f"{path}: no evaluation records to write")
    names = [r.task for r in records]
    if len(set(names)) != len(names):
        raise D2VError(f"{path}: duplicate task names {names}")
    return atomic_write_json(path, {r.task: record_json(r) for r in records}, sort_keys=False)


def record_json(record: BaselineRecord) -> dict:
    """The record's fields plus the verdict against the input baseline (a derived value)."""
    return {**asdict(record), "beats_input_baseline": record.beats_input_baseline}


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
