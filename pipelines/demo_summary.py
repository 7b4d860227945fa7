"""Printed at the end of `make demo`: the headline numbers and where every output is."""

from __future__ import annotations

import json
import math
from pathlib import Path

from d2v.layout import MODALITIES, Layout
from d2v.report.health import learned_nothing
from d2v.report.inputs import EvalRecord, read_eval

# Shown beside a main task: near 100 % WER, fewer words wrong can just mean fewer words emitted
# (an almost empty transcript beats one full of insertions), so speech's WER comes with its CER.
COMPANIONS = {"ctc": "ctc_cer"}


def headline_rows(layout: Layout) -> list[str]:
    """Per modality: its main task (plus its companion), pretrained vs random init, and the verdict."""
    rows = []
    for modality in MODALITIES:
        records = read_eval(layout.eval_metrics(modality))
        if not records:
            rows.append(f"  {modality:<7} not run")
            continue
        shown = [records[0]] + [r for r in records[1:] if r.task == COMPANIONS.get(records[0].task)]
        for r in shown:
            rows.append(
                f"  {modality:<7} {r.task:<13} {r.metric:<6} pretrained {r.pretrained:.4f}"
                f"  random init {r.random_init:.4f}  delta {r.delta:+.4f}  pretraining helps: {r.verdict}"
            )
            if r.input_baseline is not None:
                rows.append(input_baseline_row(r))
    return rows


def health_rows(layout: Layout) -> list[str]:
    """Per modality: the relative loss (1 - R^2) first -> final, flagged when the run learned nothing."""
    rows = []
    for modality in MODALITIES:
        path = layout.pretrain_summary(modality)
        summary = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        flag = None if summary is None else learned_nothing(summary)
        if flag is None:
            rows.append(f"  {modality:<7} {'not run' if summary is None else 'relative loss not logged'}")
            continue
        first = summary.get("first_rel_loss")
        start = f"{first:.3f}" if isinstance(first, (int, float)) and math.isfinite(first) else "-"
        rows.append(f"  {modality:<7} relative loss {start} -> {summary['final_rel_loss']:.3f}"
                    + ("  LEARNED NOTHING (relative loss >= 1)" if flag else ""))
    return rows


def input_baseline_row(r: EvalRecord) -> str:
    """The line under a main result: its non-learned input baseline and whether pretraining beats it."""
    beats = "yes" if r.beats_input_baseline else "no: not yet a result"
    return (f"  {'':<7} {'':<13} {'':<6} input baseline ({r.input_baseline_name}) {r.input_baseline:.4f}"
            f"  pretrained - baseline {r.input_baseline_delta:+.4f}  beats the input baseline: {beats}")


def output_files(layout: Layout) -> list[Path]:
    """Every metrics file of the pipeline that exists: summaries, evaluations, validation reports."""
    candidates = [path for m in MODALITIES for path in
                  (layout.pretrain_summary(m), layout.eval_metrics(m), layout.validation_report(m))]
    return sorted(p for p in candidates if p.is_file())


def main() -> None:
    layout = Layout.from_params()
    print("d2v demo: main downstream task per modality")
    for row in headline_rows(layout):
        print(row)
    print("d2v demo: pretraining health (relative loss 1 - R^2 at masked positions; 1.0 = learned nothing)")
    for row in health_rows(layout):
        print(row)
    print("metrics: " + ", ".join(str(p) for p in output_files(layout)))
    if layout.report_html.is_file():
        print(f"report:  {layout.report_html.resolve()}  (and {layout.report_markdown})")


if __name__ == "__main__":
    main()
