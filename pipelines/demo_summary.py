"""Printed at the end of `make demo`: the headline numbers and where every output is."""

from __future__ import annotations

from pathlib import Path

from d2v import MODALITIES
from d2v.report.inputs import read_eval

REPORT = Path("reports/benchmark.html")
# Shown beside a main task: near 100 % WER, fewer words wrong can just mean fewer words emitted
# (an almost empty transcript beats one full of insertions), so speech's WER comes with its CER.
COMPANIONS = {"ctc": "ctc_cer"}


def headline_rows(metrics_dir: Path = Path("metrics/eval")) -> list[str]:
    """Per modality: its main task (plus its companion), pretrained vs random init, and the verdict."""
    rows = []
    for modality in MODALITIES:
        records = read_eval(metrics_dir / f"{modality}.json")
        if not records:
            rows.append(f"  {modality:<7} not run")
            continue
        shown = [records[0]] + [r for r in records[1:] if r.task == COMPANIONS.get(records[0].task)]
        for r in shown:
            rows.append(
                f"  {modality:<7} {r.task:<13} {r.metric:<6} pretrained {r.pretrained:.4f}"
                f"  random init {r.random_init:.4f}  delta {r.delta:+.4f}  pretraining helps: {r.verdict}"
            )
    return rows


def main() -> None:
    print("d2v demo: main downstream task per modality")
    for row in headline_rows():
        print(row)
    outputs = sorted(p for pattern in ("metrics/*/*.json", "reports/validation/*.json") for p in Path(".").glob(pattern))
    print("metrics: " + ", ".join(str(p) for p in outputs))
    if REPORT.is_file():
        print(f"report:  {REPORT.resolve()}  (and {REPORT.with_suffix('.md')})")


if __name__ == "__main__":
    main()
