"""The report's result sections: summary, pretraining, downstream, paper reference, throughput, validation.

Every number is formatted with a fixed precision so identical metrics give identical text. A
modality without files says "not run" wherever it would appear.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from d2v.config import Params
from d2v.report.document import Block, Figure, Links, Note, Paragraph, Section, Subheading, Table
from d2v.layout import REPORTS_DIR, data_docs_dir
from d2v.report.inputs import EvalRecord, ModalityInputs
from d2v.report.plots import confusion_matrix, pretraining_curves
from d2v.report.reference import PAPER_NUMBERS, our_comparison

NOT_RUN = "not run"
# Metrics that are fractions in the files and read as percentages (the paper's unit).
PERCENT_METRICS = frozenset({"top1", "top5", "accuracy", "score", "wer", "cer", "f1", "mcc", "pearson", "spearman"})
# Summary keys of d2v/train shown first, in this order; any other key follows alphabetically.
PRETRAIN_KEYS = ("steps", "first_loss", "final_loss", "final_loss_avg", "nonfinite_skipped", "train_time_s",
                 "samples_per_s", "effective_batch_size", "world_size", "device")


@dataclass(frozen=True)
class ReportContext:
    modalities: tuple[ModalityInputs, ...]
    params: Params
    metrics_dir: Path
    validation_dir: Path
    report_dir: Path = REPORTS_DIR  # where the report is written: links to files beside it are relative to it


def fmt(value: Any, decimals: int | None = None) -> str:
    """Numbers to fixed-format text (6 significant digits, or `decimals` places); None/NaN to an em dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (bool, str, int)):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{decimals}f}" if decimals is not None else f"{value:.6g}"
    return str(value)


def is_percent(metric: str) -> bool:
    return metric.rsplit("_", 1)[-1] in PERCENT_METRICS


def metric_value(record: EvalRecord, value: float, signed: bool = False) -> str:
    shown = value * 100 if is_percent(record.metric) else value
    return f"{shown:+.2f}" if signed else f"{shown:.2f}"


def metric_label(record: EvalRecord) -> str:
    unit = " (%)" if is_percent(record.metric) else ""
    direction = "higher is better" if record.higher_is_better else "lower is better"
    return f"{record.metric}{unit}, {direction}"


def task_label(modality: str, record: EvalRecord) -> str:
    return "GLUE-style average" if modality == "text" and record.task == "average" else record.task


def _verdict(record: EvalRecord) -> str:
    return record.verdict + input_baseline_caveat(record)


def _model_words(params: Params, modality: str) -> str:
    choice = getattr(params.model, modality)
    return f"data2vec {choice.version}.0, preset {choice.preset}"


# ---------------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------------


def _validation_words(m: ModalityInputs) -> str:
    if m.validation is None:
        return NOT_RUN
    passed = m.validation.n_expectations - m.validation.n_failed
    state = "passed" if m.validation.success else "FAILED"
    return f"{state} ({passed}/{m.validation.n_expectations})"


def _pretrain_words(m: ModalityInputs) -> str:
    if m.pretrain is None:
        return NOT_RUN
    s = m.pretrain.summary
    return f"{fmt(s.get('steps'))} steps, loss {fmt(s.get('first_loss'))} → {fmt(s.get('final_loss'))}"


def summary_section(ctx: ReportContext) -> Section:
    rows = []
    for m in ctx.modalities:
        main = m.evaluation[0] if m.evaluation else None
        evaluation = (
            (f"{task_label(m.modality, main)} — {metric_label(main)}", metric_value(main, main.pretrained),
             metric_value(main, main.random_init), metric_value(main, main.delta, signed=True), _verdict(main))
            if main else (NOT_RUN, "—", "—", "—", "—")
        )
        rows.append((m.modality, _model_words(ctx.params, m.modality), _validation_words(m), _pretrain_words(m),
                     *evaluation))
    blocks: list[Block] = [
        Note("Scale: these numbers come from the profile in params.yaml (on the embedded default: tiny models, "
             "small real data, minutes of CPU). The paper's numbers in 'Paper reference numbers' come from "
             "models 100-1000x larger trained for days on 16 GPUs on the full benchmarks. They are context, "
             "not a reproduction target; compare each pretrained number with its random-init baseline and "
             "its input baseline."),
        Table(("modality", "model", "data validation", "pretraining", "main task", "pretrained", "random init",
               "Δ", "pretraining helps"), tuple(rows)),
        *summary_input_baseline_blocks(ctx),
    ]
    return Section("Summary", tuple(blocks))


# ---------------------------------------------------------------------------------------------------
# Pretraining
# ---------------------------------------------------------------------------------------------------


def pretraining_section(ctx: ReportContext) -> Section:
    ran = [m for m in ctx.modalities if m.pretrain is not None]
    keys = list(PRETRAIN_KEYS)
    # DVCLive adds each per-step metric's last value (and its `step`) to the summary: the curves
    # show those, so the table keeps the run's own summary keys.
    logged = {k for m in ran for k in m.pretrain.steps} | {"step"}  # type: ignore[union-attr]
    keys += sorted({k for m in ran for k in m.pretrain.summary} - set(keys) - logged - {"modality"})  # type: ignore[union-attr]
    columns = tuple(m.modality for m in ctx.modalities)
    rows = tuple(
        (key, *(fmt(m.pretrain.summary.get(key)) if m.pretrain else NOT_RUN for m in ctx.modalities))
        for key in keys
    )
    blocks: list[Block] = [Table(("summary", *columns), rows, caption="metrics/pretrain/<modality>/metrics.json")]
    for m in ctx.modalities:
        blocks.append(Subheading(f"{m.modality} pretraining curves"))
        if m.pretrain is None:
            blocks.append(Paragraph(f"{m.modality}: {NOT_RUN} (no {ctx.metrics_dir / 'pretrain' / m.modality / 'metrics.json'})."))
        elif not m.pretrain.steps:
            blocks.append(Paragraph(f"{m.modality}: no per-step log next to the summary; no curves."))
        else:
            png = pretraining_curves(m.modality, m.pretrain.steps)
            blocks.append(Figure(f"pretrain_{m.modality}.png", png,
                                 f"{m.modality}: loss, target/prediction variance, learning rate and EMA tau per step"))
    return Section("Pretraining", tuple(blocks))


# ---------------------------------------------------------------------------------------------------
# Downstream evaluation
# ---------------------------------------------------------------------------------------------------


def _interval(r: EvalRecord) -> str:
    if r.delta_ci95_low is None or r.delta_ci95_high is None:
        return "—"
    return f"{metric_value(r, r.delta_ci95_low, signed=True)} … {metric_value(r, r.delta_ci95_high, signed=True)}"


def _record_row(modality: str, r: EvalRecord) -> tuple[str, ...]:
    return (task_label(modality, r), metric_label(r), str(r.n_train), str(r.n_test), metric_value(r, r.pretrained),
            metric_value(r, r.random_init), metric_value(r, r.delta, signed=True), _interval(r), _verdict(r),
            fmt(r.wall_time_s, 1))


def downstream_section(ctx: ReportContext) -> Section:
    header = ("task", "metric", "n_train", "n_test", "pretrained", "random init", "Δ", "Δ 95 % interval",
              "pretraining helps", "wall time (s)")
    blocks: list[Block] = [Paragraph(
        "Every task is run twice with the same data, budget and seed: from the pretrained encoder and from a "
        "randomly initialised one of the same architecture. Δ = pretrained − random init (for error rates a "
        "negative Δ is the gain). The Δ 95 % interval is a paired bootstrap over the test examples (1000 "
        "resamples, both runs scored on each); when it contains 0 the test set cannot tell the two runs apart "
        "and the verdict is 'within noise'. It covers test-set sampling only, not the fine-tuning seed."),
        input_baseline_paragraph()]
    for m in ctx.modalities:
        blocks.append(Subheading(m.modality))
        if not m.evaluation:
            blocks.append(Paragraph(f"{m.modality}: {NOT_RUN} (no {ctx.metrics_dir / 'eval' / m.modality}.json)."))
            continue
        caption = "the GLUE-style average is the unweighted mean of the task scores" if m.modality == "text" else ""
        blocks.append(Table(header, tuple(_record_row(m.modality, r) for r in m.evaluation), caption=caption))
        blocks.extend(input_baseline_blocks(m))
        blocks.extend(train_loss_blocks(m))
        if m.confusion is not None:
            png = confusion_matrix(m.confusion, f"{m.modality}: confusion matrix of the pretrained model")
            blocks.append(Figure(f"confusion_{m.modality}.png", png,
                                 f"{m.modality}: test predictions of the pretrained model, rows = true class"))
    return Section("Downstream evaluation", tuple(blocks))


# ---------------------------------------------------------------------------------------------------
# Input baselines: a caveat on every verdict, and tables of their own (a laptop-wide page has no room
# for more columns beside the random-init ones)
# ---------------------------------------------------------------------------------------------------

NOT_YET_A_RESULT = "not yet a result: does not beat the input baseline"
INPUT_BASELINE_HEADER = ("task", "pretrained", "input baseline", "pretrained − input baseline", "95 % interval",
                         "beats input baseline")


def input_baseline_caveat(r: EvalRecord) -> str:
    """Appended to the random-init verdict of a record that does not beat its input baseline."""
    return f"; {NOT_YET_A_RESULT}" if r.beats_input_baseline is False else ""


def beats_input_words(r: EvalRecord) -> str:
    if r.beats_input_baseline is None:
        return "—"
    return "yes" if r.beats_input_baseline else NOT_YET_A_RESULT


def input_baseline_row(label: str, r: EvalRecord) -> tuple[str, ...]:
    """Label, pretrained, the baseline's score (and which one), pretrained − baseline, its interval,
    the verdict; dashes for a record written before input baselines existed."""
    if r.input_baseline is None or r.input_baseline_delta is None:
        return (label, metric_value(r, r.pretrained), "—", "—", "—", "—")
    low, high = r.input_baseline_delta_ci95_low, r.input_baseline_delta_ci95_high
    interval = "—" if low is None or high is None else (
        f"{metric_value(r, low, signed=True)} … {metric_value(r, high, signed=True)}")
    return (label, metric_value(r, r.pretrained), f"{metric_value(r, r.input_baseline)} ({r.input_baseline_name})",
            metric_value(r, r.input_baseline_delta, signed=True), interval, beats_input_words(r))


def input_baseline_blocks(m: ModalityInputs) -> list[Block]:
    """Under a modality's downstream table: every task against its input baseline."""
    if all(r.input_baseline is None for r in m.evaluation):
        return []
    rows = tuple(input_baseline_row(task_label(m.modality, r), r) for r in m.evaluation)
    return [Table(INPUT_BASELINE_HEADER, rows, caption=f"{m.modality}: pretrained vs the input baseline")]


def train_loss_blocks(m: ModalityInputs) -> list[Block]:
    """Each run's final training loss: a probe or fine-tuning run that has not converged says so here."""
    runs = [(r, (r.pretrained_final_train_loss, r.random_init_final_train_loss, r.input_baseline_final_train_loss))
            for r in m.evaluation]
    rows = tuple((task_label(m.modality, r), *("—" if v is None else fmt(v, 4) for v in losses))
                 for r, losses in runs if any(v is not None for v in losses))
    if not rows:
        return []
    return [Table(("task", "pretrained", "random init", "input baseline"), rows,
                  caption=f"{m.modality}: final training loss of each run (mean of its last 10 updates)")]


def summary_input_baseline_blocks(ctx: ReportContext) -> list[Block]:
    """The main task of each modality that has one against its input baseline."""
    rows = tuple(input_baseline_row(f"{m.modality}: {task_label(m.modality, m.evaluation[0])}", m.evaluation[0])
                 for m in ctx.modalities if m.evaluation and m.evaluation[0].input_baseline is not None)
    if not rows:
        return []
    return [Table(("modality: main task", *INPUT_BASELINE_HEADER[1:]), rows,
                  caption="main tasks vs their input baselines (the same procedure on non-learned features)")]


def input_baseline_paragraph() -> Paragraph:
    return Paragraph(
        "Beating random init is a low bar, so every task also runs a third time, on a non-learned input "
        "baseline under the same code, budget, data and seed: raw pixels for images (the probe's standardise + "
        "linear classifier; for fine-tuning a LayerNorm + linear head on the pixels, trained with the "
        "fine-tuning recipe), bag-of-words features (log-scaled counts of the tokenizer's pieces plus the "
        "length; pairs as [a, b, |a − b|, a · b]) through the text fine-tuning head and recipe, and 80 log-mel "
        "bands on the model's 20 ms frame grid under a linear CTC head trained with the CTC recipe. A task "
        "whose pretrained score is not better than its input baseline with the 95 % interval of the "
        f"difference clear of 0 is '{NOT_YET_A_RESULT}', whatever it gains over random init.")


# ---------------------------------------------------------------------------------------------------
# Paper reference numbers
# ---------------------------------------------------------------------------------------------------


def _find(m: ModalityInputs | None, task: str) -> EvalRecord | None:
    if m is None or not m.evaluation:
        return None
    return next((r for r in m.evaluation if r.task == task), m.evaluation[0])


def reference_section(ctx: ReportContext) -> Section:
    by_name = {m.modality: m for m in ctx.modalities}
    rows = []
    for ref in PAPER_NUMBERS:
        m = by_name.get(ref.modality)
        task, words = our_comparison(ref, ctx.params.data)  # like with like (LibriSpeech: test-other)
        ours = _find(m, task)
        steps = m.pretrain.summary.get("steps") if m and m.pretrain else None
        our_scale = (f"{words}. Scale: {_model_words(ctx.params, ref.modality)}, "
                     f"{fmt(steps)} pretraining steps")
        our_value = (f"{task_label(ref.modality, ours)}, {ours.metric}{' %' if is_percent(ours.metric) else ''}: "
                     f"{metric_value(ours, ours.pretrained)}" if ours else NOT_RUN)
        paper = ", ".join(f"{setting}: {value:.1f}" for setting, value in ref.values)
        rows.append((ref.modality, f"{ref.benchmark}. Scale: {ref.scale}", f"{ref.metric} — {paper}",
                     our_scale, our_value))
    return Section("Paper reference numbers", (
        Note("Paper numbers (left) are from the data2vec 1.0 paper at full scale. Ours (right) are from this "
             "run's profile and data: a different model size, dataset, budget and protocol. They sit side by "
             "side for orientation only; this report is not a reproduction of the paper."),
        Table(("modality", "paper benchmark and scale", "paper", "this run: data and scale", "this run"),
              tuple(rows)),
    ))


# ---------------------------------------------------------------------------------------------------
# Throughput and wall time
# ---------------------------------------------------------------------------------------------------


def distinct_runs(records: Sequence[EvalRecord]) -> list[EvalRecord]:
    """Records with their own training runs: not the text average, not re-scorings ("ctc_cer" of "ctc")."""
    tasks = {r.task for r in records}
    return [r for r in records if r.task != "average" and not any(r.task.startswith(f"{t}_") for t in tasks)]


def throughput_section(ctx: ReportContext) -> Section:
    rows = []
    total = 0.0
    for m in ctx.modalities:
        if m.pretrain is None:
            rows.append((f"pretrain@{m.modality}", NOT_RUN, "—", "—"))
        else:
            s = m.pretrain.summary
            total += float(s.get("train_time_s") or 0.0)
            rows.append((f"pretrain@{m.modality}", fmt(s.get("samples_per_s"), 2), fmt(s.get("train_time_s"), 1),
                         f"{fmt(s.get('steps'))} steps of batch {fmt(s.get('effective_batch_size'))} on {fmt(s.get('device'))}"))
    for m in ctx.modalities:
        runs = distinct_runs(m.evaluation)
        if not runs:
            rows.append((f"evaluate@{m.modality}", NOT_RUN, "—", "—"))
        for r in runs:
            total += r.wall_time_s
            n_runs = 2 if r.input_baseline is None else 3
            rate = n_runs * (r.n_train + r.n_test) / r.wall_time_s if r.wall_time_s > 0 else math.nan
            which = "pretrained + random init" + ("" if r.input_baseline is None else f" + {r.input_baseline_name}")
            rows.append((f"evaluate@{m.modality}: {r.task}", fmt(rate, 2), fmt(r.wall_time_s, 1),
                         f"{which}, {r.n_train} train / {r.n_test} test examples each"))
    caption = ("pretraining: training samples per second of training time; evaluation: "
               "runs (2, or 3 with the input baseline) × (n_train + n_test) / wall time, a lower bound "
               "whatever the epochs")
    return Section("Throughput and wall time per stage", (
        Table(("stage", "samples/s", "wall time (s)", "note"), tuple(rows), caption=caption),
        Paragraph(f"Recorded wall time, pretraining + evaluation: {total:.1f} s. Data stages record no times."),
    ))


# ---------------------------------------------------------------------------------------------------
# Data validation
# ---------------------------------------------------------------------------------------------------


def validation_section(ctx: ReportContext) -> Section:
    rows = []
    for m in ctx.modalities:
        v = m.validation
        if v is None:
            rows.append((m.modality, NOT_RUN, "—", "—", "—"))
        else:
            rows.append((m.modality, "passed" if v.success else "FAILED", str(v.n_expectations), str(v.n_failed),
                         fmt(v.rows) if not isinstance(v.rows, dict) else ", ".join(f"{k}: {fmt(n)}" for k, n in v.rows.items())))
    blocks: list[Block] = [Table(("modality", "result", "expectations", "failed", "rows checked"), tuple(rows),
                                 caption=f"{ctx.validation_dir}/<modality>.json")]
    docs = [(f"{m.modality}: Great Expectations Data Docs", _data_docs_link(ctx, m.modality))
            for m in ctx.modalities if m.validation is not None and m.validation.data_docs]  # fmt: skip
    if docs:
        blocks += [Paragraph("Every expectation, its suite and the values that failed it:"), Links(tuple(docs))]
    return Section("Data validation", tuple(blocks))


def _data_docs_link(ctx: ReportContext, modality: str) -> str:
    index = data_docs_dir(ctx.validation_dir, modality) / "index.html"
    return Path(os.path.relpath(index, ctx.report_dir)).as_posix()
